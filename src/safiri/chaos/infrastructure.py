"""Chaos Toolkit actions for faults outside the simulator: the broker stopped, the database
restarted, a service killed with SIGKILL (again each time it comes back) until healed.

Each records the fault in the run's timeline (``fault_injected`` / ``fault_healed``) as the
simulator faults do, so ``hold_fault``, the symptom probes, the invariant checker's settle
bound and the report read them the same way. Every "bring it back" action is also the
experiment's rollback: it is harmless when nothing is down, and it waits (polling against a
deadline) until the broker or the database accepts connections again.

The broker and the database are the machine's (a self-contained run has its own vhost and
databases on them, but stopping RabbitMQ or PostgreSQL stops them for everyone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from .events import FAULT_HEALED, FAULT_INJECTED
from .target import Target

__all__ = [
    "crash_loop",
    "end_crash_loop",
    "service_recovers",
    "start_broker",
    "start_database",
    "stop_broker",
    "stop_database",
]

Config = Mapping[str, Any]
POLL = 0.25
SERVICES = ("gateway", "ticketing", "payment")


# ---- RabbitMQ ---------------------------------------------------------------------------------


def stop_broker(configuration: Config, delay_seconds: float | str = 0) -> dict[str, Any]:
    """After ``delay_seconds`` of healthy load, ``rabbitmqctl stop_app``: the node stays up,
    every connection is closed and nothing is accepted until ``start_app``."""
    target = Target.from_config(configuration)
    time.sleep(float(delay_seconds))
    _run(["rabbitmqctl", "-q", "stop_app"], timeout=120)
    target.events.record(FAULT_INJECTED, faults={"rabbitmq": "stop_app"})
    return {"rabbitmq": "stopped"}


def start_broker(configuration: Config, timeout_seconds: float | str = 120) -> dict[str, Any]:
    """``rabbitmqctl start_app`` (a no-op when it runs), then wait until the run's vhost
    accepts an AMQP connection; returns how long that took."""
    target = Target.from_config(configuration)
    started = time.monotonic()
    _run(["rabbitmqctl", "-q", "start_app"], timeout=float(timeout_seconds))
    asyncio.run(_until(_amqp_answers(target.amqp_url), float(timeout_seconds), "RabbitMQ"))
    target.events.record(FAULT_HEALED, rabbitmq="started")
    return {"rabbitmq": "accepting", "after_s": round(time.monotonic() - started, 1)}


def _amqp_answers(url: str) -> Any:
    async def attempt() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    return attempt


# ---- PostgreSQL -------------------------------------------------------------------------------


def stop_database(configuration: Config, delay_seconds: float | str = 0) -> dict[str, Any]:
    """After ``delay_seconds`` of healthy load, stop the PostgreSQL cluster (fast shutdown:
    every session is disconnected, transactions in flight are rolled back)."""
    target = Target.from_config(configuration)
    cluster = _cluster(configuration)
    time.sleep(float(delay_seconds))
    _run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "stop", "-m", "fast"], 120)
    target.events.record(FAULT_INJECTED, faults={"postgresql": "stopped", "cluster": cluster})
    return {"postgresql": "stopped", "cluster": "/".join(cluster)}


def start_database(configuration: Config, timeout_seconds: float | str = 120) -> dict[str, Any]:
    """Start the PostgreSQL cluster if it is down, then wait until it accepts connections."""
    target = Target.from_config(configuration)
    cluster = _cluster(configuration)
    started = time.monotonic()
    status = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "status"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if status.returncode != 0:  # 3: not running
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "start"], 120)
    url = _maintenance_url(target.ticketing_database_url)
    asyncio.run(_until(_postgres_answers(url), float(timeout_seconds), "PostgreSQL"))
    target.events.record(FAULT_HEALED, postgresql="started")
    return {"postgresql": "accepting", "after_s": round(time.monotonic() - started, 1)}


def _cluster(configuration: Config) -> list[str]:
    """``[version, name]``: the ``postgres_cluster`` entry (``15/main``), or the one cluster
    in /etc/postgresql."""
    named = str(configuration.get("postgres_cluster") or "")
    if named:
        version, _, name = named.partition("/")
        return [version, name or "main"]
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if len(versions) != 1:
        raise RuntimeError(
            f"cannot tell which PostgreSQL cluster to restart ({versions or 'none'} in"
            " /etc/postgresql): set the configuration entry postgres_cluster, e.g. 15/main"
        )
    return [versions[0], "main"]


def _maintenance_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/postgres"))


def _postgres_answers(url: str) -> Any:
    async def attempt() -> None:
        connection = await asyncpg.connect(url, timeout=5)
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close()

    return attempt


# ---- the services -----------------------------------------------------------------------------


def crash_loop(
    service: str, configuration: Config, delay_seconds: float | str = 0
) -> dict[str, Any]:
    """After ``delay_seconds`` of healthy load, SIGKILL ``service``, and every process the
    supervisor starts in its place, until ``end_crash_loop`` (a background activity).

    The processes are found in the supervisor's state file (``suite_state``: ``make up``'s
    ``var/suite.json``, or a self-contained run's own), so this works against any suite that
    ``safiri`` supervises. The supervisor restarts each with a growing back-off, as a
    Kubernetes pod in CrashLoopBackOff; the service is down for the fault's whole length.
    """
    target = Target.from_config(configuration)
    state = _state_path(configuration)
    if service not in SERVICES:
        raise ValueError(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
    time.sleep(float(delay_seconds))
    pids = _kill(state, service)
    if not pids:
        raise RuntimeError(f"no running {service} in {state}")
    injected = target.events.record(FAULT_INJECTED, faults={"kill -9": service}, pids=pids).at
    killed = list(pids)
    while target.events.first(FAULT_HEALED, after=injected) is None:
        killed += _kill(state, service)
        time.sleep(POLL / 5)
    unique = list(dict.fromkeys(killed))
    return {"killed": service, "processes_killed": len(unique), "pids": unique}


def end_crash_loop(service: str, configuration: Config) -> dict[str, Any]:
    """Stop killing ``service`` (also the rollback: harmless when nothing is being killed)."""
    Target.from_config(configuration).events.record(FAULT_HEALED, stopped_killing=service)
    return {"service": service, "killing": False}


def service_recovers(
    service: str, configuration: Config, timeout_seconds: float | str = 60
) -> dict[str, Any]:
    """Wait until the supervisor has ``service`` running again and its ``/readyz`` is 200."""
    state = _state_path(configuration)
    started = time.monotonic()
    deadline = started + float(timeout_seconds)
    while True:
        entry = _entry(state, service)
        if entry is not None and entry.get("pid") and _ready(int(entry["port"])):
            return {
                "service": service,
                "pid": entry["pid"],
                "restarts": entry.get("restarts"),
                "ready_after_s": round(time.monotonic() - started, 1),
            }
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service} not running and ready within {timeout_seconds} s")
        time.sleep(POLL)


def _state_path(configuration: Config) -> Path:
    path = Path(str(configuration.get("suite_state") or "var/suite.json"))
    if not path.exists():
        raise RuntimeError(
            f"no supervisor state at {path}: killing a service needs a suite that `safiri up`"
            " (make up) or `safiri chaos run --self-contained` supervises"
        )
    return path


def _entry(state: Path, service: str) -> dict[str, Any] | None:
    processes = json.loads(state.read_text())["processes"]
    return next((p for p in processes if p["role"] == service), None)


def _kill(state: Path, service: str) -> list[int]:
    """SIGKILL the live ``service`` process(es) in ``state``, each with its process group."""
    killed = []
    for entry in json.loads(state.read_text())["processes"]:
        pid = entry.get("pid")
        if entry["role"] != service or not pid:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # its own session: children go too
            killed.append(pid)
    return killed


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


# ---- helpers ----------------------------------------------------------------------------------


def _run(command: list[str], timeout: float) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )


async def _until(attempt: Any, timeout: float, what: str) -> None:
    """``attempt()`` until it succeeds; ``RuntimeError`` with the last error at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await attempt()
            return
        except Exception as exc:  # refused, reset, starting up: all mean "not yet"
            if loop.time() > deadline:
                raise RuntimeError(
                    f"{what} did not accept connections within {timeout:g} s: {exc!r}"
                ) from exc
        await asyncio.sleep(POLL)
