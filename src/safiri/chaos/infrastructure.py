"""Chaos Toolkit actions for faults outside the simulator: the broker stopped, the database
restarted, a service killed with SIGKILL and started again.

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
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from .events import FAULT_HEALED, FAULT_INJECTED
from .selfcontained import running_suite
from .target import Target

__all__ = [
    "kill_service",
    "restart_service",
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


def kill_service(
    service: str, configuration: Config, delay_seconds: float | str = 0
) -> dict[str, Any]:
    """After ``delay_seconds`` of healthy load, SIGKILL ``service`` of the run's own suite."""
    target = Target.from_config(configuration)
    suite, loop = running_suite(str(configuration.get("suite_id") or ""))
    if service not in SERVICES:
        raise ValueError(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
    time.sleep(float(delay_seconds))
    pid = suite.processes[service].pid
    status = asyncio.run_coroutine_threadsafe(suite.kill_service(service), loop).result(30)
    target.events.record(FAULT_INJECTED, faults={"kill -9": service}, pid=pid, status=status)
    return {"killed": service, "pid": pid, "exit_status": status}


def restart_service(
    service: str,
    configuration: Config,
    timeout_seconds: float | str = 60,
    only_if_down: bool = False,
) -> dict[str, Any]:
    """Start ``service`` again on its port with its settings and wait until ``/readyz`` is 200.

    ``only_if_down`` (the rollback): leave a service that runs alone.
    """
    target = Target.from_config(configuration)
    suite, loop = running_suite(str(configuration.get("suite_id") or ""))
    process = suite.processes.get(service)
    if only_if_down and process is not None and process.returncode is None:
        return {"service": service, "running": True, "pid": process.pid}
    started = time.monotonic()
    timeout = float(timeout_seconds)
    restart = suite.restart_service(service, timeout)
    asyncio.run_coroutine_threadsafe(restart, loop).result(timeout + 30)
    target.events.record(FAULT_HEALED, restarted=service)
    return {
        "service": service,
        "pid": suite.processes[service].pid,
        "ready_after_s": round(time.monotonic() - started, 1),
    }


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
