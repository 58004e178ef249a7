"""``safiri ps``: every process ``safiri up`` runs, with its pid, port, restarts and readiness.

The supervisor writes what it runs to its state file (``var/suite.json``) whenever a process
starts or dies; ``ps`` reads that file and asks each process, there and then, whether it is
alive and ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["add_ps_command", "read_processes"]


def add_ps_command(subparsers: Any, default_state: Path) -> None:
    ps = subparsers.add_parser(
        "ps", help="the processes `safiri up` runs, and whether each is ready"
    )
    ps.add_argument("--json", action="store_true", help="a JSON list, one object per process")
    ps.add_argument("--state", type=Path, default=default_state, help="the supervisor's state file")
    ps.set_defaults(func=_ps)


def read_processes(state_path: Path, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The state file's processes, each with ``alive`` and ``ready`` asked of it now."""
    processes: list[dict[str, Any]] = json.loads(state_path.read_text())["processes"]
    return asyncio.run(_asked(processes, timeout))


async def _asked(processes: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:

        async def ready(entry: dict[str, Any]) -> bool:
            if not entry["alive"]:
                return False
            if not entry["health"]:  # not HTTP (Redis): alive is all there is to ask
                return True
            try:
                url = f"http://127.0.0.1:{entry['port']}{entry['health']}"
                async with http.get(url) as response:
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        for entry in processes:
            entry["alive"] = _alive(entry.get("pid"))
        answers = await asyncio.gather(*(ready(e) for e in processes))
    for entry, answer in zip(processes, answers, strict=True):
        entry["ready"] = answer
    return processes


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ps(args: argparse.Namespace) -> int:
    if not args.state.exists():
        print(f"safiri ps: nothing runs ({args.state} is absent: start `make up`)", file=sys.stderr)
        return 1
    processes = read_processes(args.state)
    if args.json:
        print(json.dumps(processes, indent=2))
        return 0
    print(f"{'ROLE':<16} {'REPLICA':>7} {'PID':>8} {'PORT':>6} {'RESTARTS':>8}  READY")
    for p in processes:
        pid = str(p["pid"]) if p["alive"] else "-"
        ready = "ready" if p["ready"] else "NOT READY"
        print(
            f"{p['role']:<16} {p['replica']:>7} {pid:>8} {p['port']:>6} {p['restarts']:>8}  {ready}"
        )
    return 0 if all(p["ready"] for p in processes) else 1
