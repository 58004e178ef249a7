"""What every benchmark result file records about its own run, so that each figure in a
write-up can be traced to the exact variant, code and environment that produced it.

``run_metadata(variant)`` is spread into the report each bench/*.py script writes:

- ``when``: the run's date and time (UTC);
- ``command``: the command line, the script's path relative to the repository; ``argv`` as given;
- ``variant``: what was compared (environment variables, commits, interpreters, topologies);
- ``git``: the commit checked out, whether tracked files differed from it (``dirty``) and which;
- ``machine``: OS and kernel (``platform.platform()``), architecture, CPU count and model,
  Python implementation and version. No host name, user name or address is recorded.

Standard library only: bench/render.py and the unit tests import it without the suite.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["REPO", "command_line", "cpu_model", "git_state", "machine", "run_metadata"]

REPO = Path(__file__).resolve().parents[1]
UNKNOWN = "unknown"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows, else unknown."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
            return " ".join(value.split())
    return platform.processor() or UNKNOWN


def machine() -> dict[str, Any]:
    """The environment a run had, without anything that names the host."""
    return {
        "platform": platform.platform(),
        "architecture": platform.machine() or UNKNOWN,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """The commit checked out in ``repo`` and the tracked files that differ from it.

    Untracked files are not counted (result files and logs are written beside the code).
    Outside a git checkout, or without git, both are ``"unknown"``.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": UNKNOWN, "dirty": UNKNOWN}
    paths = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"commit": commit, "dirty": bool(paths), "dirty_paths": paths}


def command_line(argv: Sequence[str] | None = None, repo: Path = REPO) -> str:
    """``argv`` as one shell-quoted line, the script named relative to the repository."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return ""
    script = Path(args[0])
    try:
        shown = script.resolve().relative_to(repo).as_posix()
    except (OSError, ValueError):
        shown = args[0]
    return shlex.join([shown, *args[1:]])


def run_metadata(
    variant: Any,
    *,
    argv: Sequence[str] | None = None,
    when: datetime | None = None,
    repo: Path = REPO,
) -> dict[str, Any]:
    """The fields a result file records about its run (see the module's docstring)."""
    args = list(sys.argv if argv is None else argv)
    return {
        "when": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "command": command_line(args, repo),
        "argv": args,
        "variant": variant,
        "git": git_state(repo),
        "machine": machine(),
    }
