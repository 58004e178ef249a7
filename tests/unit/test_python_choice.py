"""The project's virtual environment runs on the interpreter scripts/python.sh picks: the
newest CPython this machine carries among those every dependency supports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "python.sh"


def _pick(*version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *version], capture_output=True, text=True)


def _version(interpreter: str) -> tuple[int, int]:
    out = subprocess.run([interpreter, "-V"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"(\d+)\.(\d+)", out)
    assert found, out
    return int(found[1]), int(found[2])


def test_the_venv_runs_on_the_newest_supported_cpython_the_machine_has() -> None:
    chosen = _pick().stdout.strip()
    assert _version(chosen) == sys.version_info[:2], (chosen, sys.version)
    supported = re.search(r'SUPPORTED="\$\{1:-([\d. ]+)\}"', SCRIPT.read_text())
    assert supported, "scripts/python.sh lists the versions it supports"
    found = [v for v in supported[1].split() if _pick(v).returncode == 0]
    newest = max(tuple(int(p) for p in v.split(".")) for v in found)
    assert sys.version_info[:2] == newest


def test_asking_for_a_version_the_machine_lacks_fails() -> None:
    done = _pick("3.99")
    assert done.returncode != 0 and "no CPython 3.99" in done.stderr
