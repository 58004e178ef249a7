"""Plays one activity (probe or action) and returns its run record, as a journal keeps it."""

from __future__ import annotations

import importlib
import inspect
import shlex
import subprocess
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .experiment import substitute

__all__ = ["Run", "execute_activity"]

Run = dict[str, Any]


def execute_activity(
    activity: Mapping[str, Any],
    configuration: Mapping[str, Any],
    secrets: Mapping[str, dict[str, Any]],
) -> Run:
    pauses = activity.get("pauses") or {}
    if pauses.get("before"):
        time.sleep(float(pauses["before"]))
    started = datetime.now(UTC)
    run: Run = {"activity": dict(activity), "output": None}
    try:
        run["output"] = _call(activity["provider"], configuration, secrets)
        run["status"] = "succeeded"
    except Exception as exc:  # any failure of the activity is the activity's result
        run["status"] = "failed"
        run["exception"] = traceback.format_exception_only(type(exc), exc)
    ended = datetime.now(UTC)
    run.update(
        start=started.isoformat(),
        end=ended.isoformat(),
        duration=round((ended - started).total_seconds(), 3),
    )
    if pauses.get("after"):
        time.sleep(float(pauses["after"]))
    return run


def _call(
    provider: Mapping[str, Any],
    configuration: Mapping[str, Any],
    secrets: Mapping[str, dict[str, Any]],
) -> Any:
    arguments = substitute(provider.get("arguments") or {}, configuration, secrets)
    if provider["type"] == "process":
        return _process(provider, arguments)
    func = getattr(importlib.import_module(provider["module"]), provider["func"])
    parameters = inspect.signature(func).parameters
    if "secrets" in provider and "secrets" in parameters:
        arguments["secrets"] = {
            k: v for group in provider["secrets"] for k, v in secrets.get(group, {}).items()
        }
    if "configuration" in parameters:
        arguments["configuration"] = dict(configuration)
    return func(**arguments)


def _process(provider: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    args = shlex.split(arguments) if isinstance(arguments, str) else [str(a) for a in arguments]
    done = subprocess.run(
        [provider["path"], *args], capture_output=True, text=True, timeout=provider.get("timeout")
    )
    return {"status": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
