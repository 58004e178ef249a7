#!/usr/bin/env bash
# The interpreter for the project's virtual environment: the newest CPython on this machine
# that every locked dependency supports, found without downloading one -- pyenv's
# interpreters first (these machines carry 3.11, 3.12 and 3.13 there), then python3.N on the
# PATH, then python3. Raise SUPPORTED when the lock's packages support a newer CPython.
# `scripts/python.sh 3.11` finds that version only (bench/python_versions.py), or fails.
set -euo pipefail
SUPPORTED="${1:-3.13 3.12 3.11}"
root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
works() { [ -x "$1" ] && "$1" -c 'import sys' >/dev/null 2>&1; }
for v in $SUPPORTED; do
  found=""
  for candidate in "$root"/versions/"$v".*/bin/python"$v"; do
    works "$candidate" && found="$candidate"   # the glob sorts: the last is the newest patch
  done
  if [ -n "$found" ]; then echo "$found"; exit 0; fi
  candidate="$(command -v "python$v" 2>/dev/null || true)"
  if [ -n "$candidate" ] && works "$candidate"; then echo "$candidate"; exit 0; fi
done
if [ -n "${1:-}" ]; then echo "no CPython $1 on this machine" >&2; exit 1; fi
command -v python3
