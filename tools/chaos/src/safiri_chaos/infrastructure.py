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
import csv
import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from safiri_suite.cluster import rabbitmqctl_command

from .events import FAULT_HEALED, FAULT_INJECTED
from .target import Target

__all__ = [
    "crash_loop",
    "end_crash_loop",
    "rolling_restart",
    "service_recovers",
    "start_broker",
    "start_database",
    "start_rabbitmq_node",
    "stop_broker",
    "stop_database",
    "stop_rabbitmq_node",
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
    service: str,
    configuration: Config,
    delay_seconds: float | str = 0,
    replica: int | str | None = None,
) -> dict[str, Any]:
    """After ``delay_seconds`` of healthy load, SIGKILL ``service``, and every process the
    supervisor starts in its place, until ``end_crash_loop`` (a background activity).

    The processes are found in the supervisor's state file (``suite_state``: ``make up``'s
    ``var/suite.json``, or a self-contained run's own), so this works against any suite that
    ``safiri`` supervises. The supervisor restarts each with a growing back-off, as a
    Kubernetes pod in CrashLoopBackOff; the service is down for the fault's whole length.
    With ``replica`` only that replica is killed (the others carry the load).
    """
    target = Target.from_config(configuration)
    state = _state_path(configuration)
    if service not in SERVICES:
        raise ValueError(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
    time.sleep(float(delay_seconds))
    which = None if replica is None else int(replica)
    pids = _kill(state, service, which)
    if not pids:
        raise RuntimeError(f"no running {service} in {state}")
    label = service if which is None else f"{service}-{which}"
    injected = target.events.record(FAULT_INJECTED, faults={"kill -9": label}, pids=pids).at
    killed = list(pids)
    while target.events.first(FAULT_HEALED, after=injected) is None:
        killed += _kill(state, service, which)
        time.sleep(POLL / 5)
    unique = list(dict.fromkeys(killed))
    return {"killed": service, "processes_killed": len(unique), "pids": unique}


def end_crash_loop(service: str, configuration: Config) -> dict[str, Any]:
    """Stop killing (also the rollback: harmless when nothing is being killed); every crash
    loop of the run stops, whichever service it kills."""
    Target.from_config(configuration).events.record(FAULT_HEALED, stopped_killing=service)
    return {"service": service, "killing": False}


def service_recovers(
    service: str, configuration: Config, timeout_seconds: float | str = 60
) -> dict[str, Any]:
    """Wait until every replica of ``service`` runs again and answers ``/readyz`` with 200."""
    state = _state_path(configuration)
    started = time.monotonic()
    deadline = started + float(timeout_seconds)
    while True:
        entries = _entries(state, service)
        if entries and all(e.get("pid") and _ready(int(e["port"])) for e in entries):
            return {
                "service": service,
                "replicas": len(entries),
                "pids": [e["pid"] for e in entries],
                "restarts": sum(int(e.get("restarts") or 0) for e in entries),
                "ready_after_s": round(time.monotonic() - started, 1),
            }
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service} not running and ready within {timeout_seconds} s")
        time.sleep(POLL)


def unclean_exit(entry: dict[str, Any], pid: int) -> str | None:
    """What went wrong with the restart of ``entry`` (a replica in the supervisor's state)
    whose process ``pid`` got SIGTERM: it exited other than 0, or a start after it failed
    before one came up (each with what it wrote last: its traceback). None if neither."""
    name = f"{entry['role']}-{entry['replica']}"
    exits: list[dict[str, Any]] = entry.get("exits") or []
    mine = next((i for i, e in enumerate(exits) if e.get("pid") == pid), None)
    if mine is None:
        return f"{name}: no record of how pid {pid} ended"

    def words(ended: dict[str, Any]) -> str:
        said = ended.get("last_words")
        return f"; its last words:\n{said}" if said else ""

    ended = exits[mine]
    if ended.get("code") != 0:
        return f"{name} exited {ended.get('code')} on SIGTERM (a clean shutdown exits 0)" + words(
            ended
        )
    later = exits[mine + 1 :]  # every exit after it is a start that failed
    if not later:
        return None
    failed = later[0]
    return (
        f"{name} stopped cleanly on SIGTERM, but the start after it failed: pid"
        f" {failed.get('pid')} exited {failed.get('code')} after {failed.get('after_s')} s"
        + words(failed)
    )


def rolling_restart(
    services: list[str],
    configuration: Config,
    delay_seconds: float | str = 0,
    timeout_seconds: float | str = 60,
) -> dict[str, Any]:
    """SIGTERM one replica at a time, as a Kubernetes rolling update does: each must exit by
    itself (finishing its requests and messages) and be back and ready before the next goes --
    ready in its own ``/readyz`` and, where a load balancer fronts the service, back in its
    rotation (as a rolling update waits for the pod to be among the endpoints again): stopping
    the next replica while the balancer still counts the last one out leaves it nowhere to
    send requests.

    Fails when a replica exits other than cleanly (its exit code), or is not back in time.
    """
    target = Target.from_config(configuration)
    state = _state_path(configuration)
    time.sleep(float(delay_seconds))
    target.events.record(FAULT_INJECTED, faults={"rolling restart": services})
    restarted = []
    for service in services:
        for entry in sorted(_entries(state, service), key=lambda e: int(e["replica"])):
            started = time.monotonic()
            os.kill(int(entry["pid"]), signal.SIGTERM)
            deadline = started + float(timeout_seconds)
            while True:
                now = _replica(state, service, int(entry["replica"]))
                if (
                    now
                    and now.get("pid") not in (None, entry["pid"])
                    and _ready(int(now["port"]))
                    and _balanced(state, service, int(entry["replica"]))
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service}-{entry['replica']} not back within the deadline")
                time.sleep(POLL / 2)
            unclean = unclean_exit(now, int(entry["pid"]))
            if unclean:
                raise RuntimeError(unclean)
            restarted.append(
                {
                    "replica": f"{service}-{entry['replica']}",
                    "back_after_s": round(time.monotonic() - started, 1),
                }
            )
    target.events.record(FAULT_HEALED, rolling_restart="done")
    return {"restarted": restarted}


# ---- the suite's own RabbitMQ nodes (cluster mode) ---------------------------------------------


def stop_rabbitmq_node(
    configuration: Config, node: int | str = 1, delay_seconds: float | str = 0
) -> dict[str, Any]:
    """After ``delay_seconds``, ``rabbitmqctl stop_app`` on the suite's node ``node`` (0-based):
    its queues' quorum goes on with the other nodes; its clients reconnect through HAProxy."""
    target = Target.from_config(configuration)
    entry = _rabbit(configuration, int(node))
    time.sleep(float(delay_seconds))
    # The fault begins as the node starts to stop. stop_app returns seconds later (its queues'
    # leaders move first); it runs on in a thread, so the symptom probes that follow watch the
    # alert from the start (pending included), and start_rabbitmq_node waits for it.
    name = str(entry["name"])
    target.events.record(FAULT_INJECTED, faults={"rabbitmq node": name})
    stopping = threading.Thread(target=_rabbitmqctl, args=(name, "stop_app"), daemon=True)
    _STOPPING[name] = stopping
    stopping.start()
    return {"stopping": name}


def start_rabbitmq_node(
    configuration: Config, node: int | str = 1, timeout_seconds: float | str = 120
) -> dict[str, Any]:
    """``rabbitmqctl start_app`` on node ``node`` (harmless when it runs); until it is back in
    the cluster (its Prometheus endpoint answers)."""
    target = Target.from_config(configuration)
    entry = _rabbit(configuration, int(node))
    started = time.monotonic()
    stopping = _STOPPING.pop(str(entry["name"]), None)
    if stopping is not None:
        stopping.join(float(timeout_seconds))
    _rabbitmqctl(str(entry["name"]), "start_app", timeout=float(timeout_seconds))
    deadline = started + float(timeout_seconds)
    while not _ready(int(entry["port"]), "/metrics"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{entry['name']} not back within {timeout_seconds} s")
        time.sleep(POLL)
    target.events.record(FAULT_HEALED, rabbitmq_node=entry["name"])
    return {"started": entry["name"], "after_s": round(time.monotonic() - started, 1)}


_STOPPING: dict[str, threading.Thread] = {}  # node name -> its stop_app, still running


def _rabbit(configuration: Config, node: int) -> dict[str, Any]:
    found = _replica(_state_path(configuration), "rabbitmq", node)
    if found is None or not found.get("name"):
        raise RuntimeError(
            f"no RabbitMQ node {node} of the suite's own: this needs cluster mode"
            " (safiri up --rabbitmq-nodes 3, or a self-contained run of a cluster experiment)"
        )
    return found


def _rabbitmqctl(node: str, command: str, timeout: float = 120) -> None:
    argv, env = rabbitmqctl_command(node, command)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl -n {node} {command}: {(done.stderr or done.stdout).strip()}"
        )


def _state_path(configuration: Config) -> Path:
    path = Path(str(configuration.get("suite_state") or "var/suite.json"))
    if not path.exists():
        raise RuntimeError(
            f"no supervisor state at {path}: killing a service needs a suite that `safiri up`"
            " (make up) or `safiri chaos run --self-contained` supervises"
        )
    return path


def _entries(state: Path, service: str) -> list[dict[str, Any]]:
    processes: list[dict[str, Any]] = json.loads(state.read_text())["processes"]
    return [p for p in processes if p["role"] == service]


def _replica(state: Path, service: str, replica: int) -> dict[str, Any] | None:
    return next((p for p in _entries(state, service) if int(p["replica"]) == replica), None)


def _kill(state: Path, service: str, replica: int | None = None) -> list[int]:
    """SIGKILL the live ``service`` process(es) in ``state`` (only ``replica`` if given),
    each with its process group."""
    killed = []
    for entry in _entries(state, service):
        pid = entry.get("pid")
        if not pid or (replica is not None and int(entry["replica"]) != replica):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # its own session: children go too
            killed.append(pid)
    return killed


def _ready(port: int, path: str = "/readyz") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def _balanced(state: Path, service: str, replica: int) -> bool:
    """Whether the suite's HAProxy (if it runs one) counts replica ``replica`` of ``service``
    as UP (its server ``<service>-<replica>`` in backend ``<service>_replicas``)."""
    haproxy = next(iter(_entries(state, "haproxy")), None)
    if haproxy is None:
        return True
    try:
        url = f"http://127.0.0.1:{haproxy['port']}/stats;csv"
        with urllib.request.urlopen(url, timeout=2) as answer:
            text = answer.read().decode()
    except (OSError, ValueError):
        return False
    backend = f"{service}_replicas"
    rows = [
        r for r in csv.DictReader(io.StringIO(text.removeprefix("# "))) if r["pxname"] == backend
    ]
    if not rows:
        return True  # a service the balancer does not front is in no rotation to wait for
    mine = [r for r in rows if r["svname"] == f"{service}-{replica}"]
    return bool(mine) and mine[0]["status"].startswith("UP")


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
