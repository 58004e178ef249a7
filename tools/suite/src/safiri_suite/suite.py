"""Start, watch and stop Safiri's processes: gateway, ticketing, payment and the two simulators
(M-Pesa, and the fleet reporting its buses' positions).

``make up``, ``make demo`` and the end-to-end tests all run the suite through this module, so
what the tests prove is what a user starts. Once the suite is ready, a process that dies is
started again on its port with its settings, after a back-off that grows while it keeps
dying (as Kubernetes restarts a crashed container); each restart is logged, counted and
written to the state file that ``safiri ps`` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg

from .cluster import (
    HAProxyBackend,
    RunningNode,
    rabbitmq_cluster,
    running_haproxy,
    running_redis,
)
from .logship import LogShipper
from .ports import free_port

__all__ = [
    "ProcessEntry",
    "Suite",
    "SuiteConfig",
    "SuiteError",
    "drop_databases",
    "ensure_databases",
    "last_words",
]

# The backup payment route's provider: a second M-Pesa simulator with an account of its own
# (shortcode, credentials, ledger, faults), standing for a backup paybill or another
# mobile-money provider. Run when SuiteConfig.backup_port is set; payment is pointed at it.
BACKUP_SIMULATOR = "backup-simulator"
BACKUP_ACCOUNT = {
    "shortcode": "600100",
    "consumer_key": "safiri-backup-consumer-key",
    "consumer_secret": "safiri-backup-consumer-secret",
    "passkey": "safiri-backup-passkey",
}

SERVICES = ("mpesa-simulator", "payment", "ticketing", "gateway", "fleet-simulator")
# The M-Pesa simulator stands for one provider, the fleet simulator for the one fleet.
REPLICATED = ("payment", "ticketing", "gateway")
_PORT_VARIABLES = {
    "gateway": "SAFIRI_GATEWAY_PORT",
    "ticketing": "SAFIRI_TICKETING_PORT",
    "payment": "SAFIRI_PAYMENT_PORT",
    "mpesa-simulator": "SAFIRI_MPESA_SIM_PORT",
    BACKUP_SIMULATOR: "SAFIRI_MPESA_SIM_PORT",
    "fleet-simulator": "SAFIRI_FLEET_SIM_PORT",
}
_MODULES = {
    "gateway": "safiri_gateway",
    "ticketing": "safiri_ticketing",
    "payment": "safiri_payment",
    "mpesa-simulator": "safiri_mpesa_sim",
    BACKUP_SIMULATOR: "safiri_mpesa_sim",
    "fleet-simulator": "safiri_fleet_sim",
}


class SuiteError(RuntimeError):
    pass


@dataclass
class SuiteConfig:
    api_keys: list[str]
    gateway_port: int = 8080
    ticketing_port: int = 8081
    payment_port: int = 8082
    mpesa_port: int = 8090
    fleet_port: int = 8091
    database_prefix: str = "safiri"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    otlp_endpoint: str | None = None
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Per process, on top of extra_env (e.g. the simulator's telemetry held constant in a
    # benchmark that switches the services' telemetry off).
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Where the supervisor writes what it runs (``safiri ps`` reads it); None: nowhere.
    state_path: Path | None = None
    # The first restart waits this long; each quick death after it doubles the wait.
    restart_backoff_seconds: float = 0.5
    restart_backoff_max_seconds: float = 10.0
    # The simulator's ledger journal: its charges outlive a restart (None: memory only).
    ledger_path: Path | None = None
    # Cluster mode: replicas of gateway, ticketing and payment behind HAProxy, and RabbitMQ
    # nodes of the suite's own (1: the broker at amqp_url).
    replicas: int = 1
    rabbitmq_nodes: int = 1
    # The services' feature-flag file (SAFIRI_FLAGS_FILE); None: their default,
    # deploy/flags/flags.json under the directory they run in.
    flags_file: Path | None = None
    # The backup route's simulator (BACKUP_SIMULATOR) on this port, with its own ledger
    # journal; None: not run, and payment has no backup route.
    backup_port: int | None = None
    backup_ledger_path: Path | None = None
    # With log files (log_dir) and an OTLP endpoint, the services only print their log lines
    # (OTEL_LOGS_EXPORTER=none) and the supervisor ships them from the files as OTLP log
    # records (safiri_suite.logship): the services' CPU per purchase is 8 % lower
    # (bench/results/log_export_ab.json). False: each service exports its own.
    ship_logs: bool = True

    @property
    def ships_logs(self) -> bool:
        return self.ship_logs and self.log_dir is not None and self.otlp_endpoint is not None

    def database_url(self, service: str) -> str:
        return f"{self.postgres_url}/{self.database_prefix}_{service}"

    @property
    def databases(self) -> list[str]:
        return [f"{self.database_prefix}_{s}" for s in ("gateway", "ticketing", "payment")]

    def port(self, service: str) -> int:
        if service == BACKUP_SIMULATOR and self.backup_port is not None:
            return self.backup_port
        return {
            "gateway": self.gateway_port,
            "ticketing": self.ticketing_port,
            "payment": self.payment_port,
            "mpesa-simulator": self.mpesa_port,
            "fleet-simulator": self.fleet_port,
        }[service]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SAFIRI_API_KEYS": ",".join(self.api_keys),
                "SAFIRI_GATEWAY_PORT": str(self.gateway_port),
                "SAFIRI_TICKETING_PORT": str(self.ticketing_port),
                "SAFIRI_PAYMENT_PORT": str(self.payment_port),
                "SAFIRI_MPESA_SIM_PORT": str(self.mpesa_port),
                "SAFIRI_FLEET_SIM_PORT": str(self.fleet_port),
                "SAFIRI_TICKETING_URL": f"http://127.0.0.1:{self.ticketing_port}",
                "SAFIRI_MPESA_URL": f"http://127.0.0.1:{self.mpesa_port}",
                "SAFIRI_GATEWAY_DATABASE_URL": self.database_url("gateway"),
                "SAFIRI_TICKETING_DATABASE_URL": self.database_url("ticketing"),
                "SAFIRI_PAYMENT_DATABASE_URL": self.database_url("payment"),
                "SAFIRI_AMQP_URL": self.amqp_url,
                # The provider calls back through the payment service's own port, whichever
                # replica (or HAProxy) serves it.
                "SAFIRI_PAYMENT_CALLBACK_BASE_URL": f"http://127.0.0.1:{self.payment_port}",
            }
        )
        if self.otlp_endpoint is not None:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        if self.ships_logs:
            env["OTEL_LOGS_EXPORTER"] = "none"  # printed, shipped by the supervisor
        if self.ledger_path is not None:
            env["SAFIRI_MPESA_SIM_LEDGER_PATH"] = str(self.ledger_path)
        if self.flags_file is not None:
            env["SAFIRI_FLAGS_FILE"] = str(self.flags_file)
        if self.backup_port is not None:
            a = BACKUP_ACCOUNT
            env.update(
                {
                    "SAFIRI_BACKUP_PROVIDER_URL": f"http://127.0.0.1:{self.backup_port}",
                    "SAFIRI_BACKUP_SHORTCODE": a["shortcode"],
                    "SAFIRI_BACKUP_CONSUMER_KEY": a["consumer_key"],
                    "SAFIRI_BACKUP_CONSUMER_SECRET": a["consumer_secret"],
                    "SAFIRI_BACKUP_PASSKEY": a["passkey"],
                }
            )
        env.update(self.extra_env)
        return env

    def role_env(self, role: str) -> dict[str, str]:
        """What one role's processes get on top of ``env()``: the backup simulator runs the
        backup account (and never shares the M-Pesa simulator's ledger journal)."""
        if role != BACKUP_SIMULATOR:
            return {}
        a = BACKUP_ACCOUNT
        return {
            "SAFIRI_MPESA_SHORTCODE": a["shortcode"],
            "SAFIRI_MPESA_CONSUMER_KEY": a["consumer_key"],
            "SAFIRI_MPESA_CONSUMER_SECRET": a["consumer_secret"],
            "SAFIRI_MPESA_PASSKEY": a["passkey"],
            "SAFIRI_MPESA_SIM_LEDGER_PATH": str(self.backup_ledger_path or ""),
        }


async def _rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    if process.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {(err or out).decode().strip()}")


@contextlib.asynccontextmanager
async def own_vhost(name: str) -> AsyncIterator[str]:
    """A RabbitMQ vhost of the run's own (guest may use it), deleted afterwards; its URL."""
    await _rabbitmqctl("add_vhost", name)
    try:
        await _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        await _rabbitmqctl("delete_vhost", name)


def isolated_config(
    *,
    api_key: str,
    database_prefix: str,
    amqp_url: str,
    log_dir: Path,
    extra_env: dict[str, str],
    otlp_endpoint: str | None = None,
    service_env: dict[str, dict[str, str]] | None = None,
    backup_provider: bool = False,
) -> SuiteConfig:
    """The four processes on free loopback ports, with databases of their own."""
    return SuiteConfig(
        api_keys=[api_key],
        gateway_port=free_port(),
        ticketing_port=free_port(),
        payment_port=free_port(),
        mpesa_port=free_port(),
        fleet_port=free_port(),
        database_prefix=database_prefix,
        amqp_url=amqp_url,
        otlp_endpoint=otlp_endpoint,
        log_dir=log_dir,
        extra_env=extra_env,
        service_env=service_env or {},
        ledger_path=log_dir / "mpesa-ledger.jsonl",
        flags_file=_own_flags_file(log_dir),
        backup_port=free_port() if backup_provider else None,
        backup_ledger_path=log_dir / "backup-ledger.jsonl" if backup_provider else None,
    )


def _own_flags_file(log_dir: Path) -> Path | None:
    """A copy of the repository's flag file for this run, which its tests may edit."""
    source = Path.cwd() / "deploy" / "flags" / "flags.json"  # safiri_flags.DEFAULT_FLAGS_FILE
    if not source.is_file():
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    own = log_dir / "flags.json"
    shutil.copyfile(source, own)
    return own


async def ensure_databases(config: SuiteConfig) -> None:
    conn = await asyncpg.connect(f"{config.postgres_url}/postgres")
    try:
        for name in config.databases:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_databases(config: SuiteConfig) -> None:
    conn = await asyncpg.connect(f"{config.postgres_url}/postgres")
    try:
        for name in config.databases:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Suite:
    """The processes of one configuration; ``async with Suite(config):`` runs them.

    With ``config.replicas`` > 1 each of the gateway, ticketing and payment runs that many
    times, each replica on a port of its own, behind one HAProxy that keeps the usual ports;
    with ``config.rabbitmq_nodes`` > 1 the suite runs its own RabbitMQ cluster too and its
    services reach it through HAProxy's AMQP front.
    """

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.slots: dict[str, Slot] = {}
        self.restarts: dict[str, int] = {}
        self.others: list[ProcessEntry] = []  # Prometheus, the trace store, ...: for `ps`
        self.rabbit_nodes: list[RunningNode] = []
        self._logs: dict[str, IO[bytes]] = {}
        self._envs: dict[str, dict[str, str]] = {}  # each process's environment, for a restart
        self._started_at: dict[str, float] = {}
        self._log_from: dict[str, int] = {}  # where the current process's output begins
        self._exits: dict[str, list[dict[str, Any]]] = {}  # each slot's last few, newest last
        self._backoff: dict[str, float] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._stack = contextlib.AsyncExitStack()
        self._haproxy: asyncio.subprocess.Process | None = None
        self._shared_env: dict[str, str] = {}  # what cluster mode adds (the limits' Redis)
        self._stopping = False
        self.log_shipper: LogShipper | None = None

    def log_path(self, name: str) -> Path | None:
        return self.config.log_dir / f"{name}.log" if self.config.log_dir else None

    async def __aenter__(self) -> Suite:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def replicas_of(self, role: str) -> list[Slot]:
        return [slot for slot in self.slots.values() if slot.role == role]

    async def start(self, timeout: float = 45.0) -> None:
        try:
            await self._start(timeout)
        except BaseException:
            await self.stop()
            raise
        for name in self.slots:
            self._watch(name)
        self.write_state()

    async def _start(self, timeout: float) -> None:
        c = self.config
        self.slots = plan_slots(c)
        self.restarts = dict.fromkeys(self.slots, 0)
        backends = self._service_backends()
        if c.rabbitmq_nodes > 1:
            # The rabbitmq user must reach the nodes' directories: not under a private tmp.
            base = Path(tempfile.mkdtemp(prefix="safiri-rabbitmq-"))
            run_id = uuid.uuid4().hex[:8]
            self.rabbit_nodes = await self._stack.enter_async_context(
                rabbitmq_cluster(c.rabbitmq_nodes, run_id, base)
            )
            amqp_port = free_port()
            ports = tuple(r.node.amqp_port for r in self.rabbit_nodes)
            backends.append(HAProxyBackend("amqp", amqp_port, ports, mode="tcp"))
            c.amqp_url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
        await ensure_databases(c)
        if c.replicas > 1:
            workdir = (c.log_dir or Path(tempfile.mkdtemp(prefix="safiri-redis-"))) / "redis"
            redis, redis_port = await self._stack.enter_async_context(running_redis(workdir))
            self._shared_env["SAFIRI_RATE_LIMIT_STORAGE"] = f"async+redis://127.0.0.1:{redis_port}"
            self.others.append(ProcessEntry("redis", 0, redis.pid, redis_port, ""))
        if backends:
            stats = free_port()
            workdir = c.log_dir or Path(tempfile.mkdtemp(prefix="safiri-haproxy-"))
            self._haproxy = await self._stack.enter_async_context(
                running_haproxy(backends, workdir / "haproxy", stats)
            )
            self.others.append(ProcessEntry("haproxy", 0, self._haproxy.pid, stats, "/healthz"))
        for node in self.rabbit_nodes:
            n = node.node
            self.others.append(
                ProcessEntry(
                    "rabbitmq",
                    int(n.short.rsplit("-", 1)[1]) - 1,
                    node.process.pid,
                    n.prometheus_port,
                    "/metrics",
                    name=n.name,
                )
            )
        env = {**c.env(), **self._shared_env}
        for name in self.slots:
            await self.start_service(name, env)
        await self.wait_ready(timeout)
        if backends:
            await self._wait_balanced(timeout)

    async def _wait_balanced(self, timeout: float) -> None:
        """Until HAProxy routes to the replicas (its health checks have seen them up)."""
        paths = {"gateway": "/api/v1/openapi.json", "ticketing": "/readyz", "payment": "/readyz"}
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for role, path in paths.items():
                url = f"http://127.0.0.1:{self.config.port(role)}{path}"
                while True:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(url) as response:
                            if response.status == 200:
                                break
                    if asyncio.get_running_loop().time() > deadline:
                        raise SuiteError(f"HAProxy does not route to {role} after {timeout:.0f} s")
                    await asyncio.sleep(0.1)

    def _service_backends(self) -> list[HAProxyBackend]:
        if self.config.replicas <= 1:
            return []
        return [
            HAProxyBackend(
                role,
                self.config.port(role),
                tuple(s.port for s in self.replicas_of(role)),
                public_prefix="/api/v1" if role == "gateway" else None,
            )
            for role in REPLICATED
        ]

    async def start_service(self, name: str, env: dict[str, str] | None = None) -> None:
        slot = self.slots[name]
        env = dict(env or self.config.env())
        env.update(self.config.role_env(slot.role))
        env.update(self.config.service_env.get(slot.role, {}))
        env[_PORT_VARIABLES[slot.role]] = str(slot.port)
        env["OTEL_SERVICE_NAME"] = slot.role
        named = f"service.instance.id={name}"
        given = env.get("OTEL_RESOURCE_ATTRIBUTES", "")
        env["OTEL_RESOURCE_ATTRIBUTES"] = f"{given},{named}" if given else named
        self._envs[name] = env
        stdout: int | IO[bytes] | None = None
        path = self.log_path(name)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._logs[name] = stdout = path.open("ab")
            self._log_from[name] = stdout.tell()
            if self.config.ships_logs and env.get("OTEL_LOGS_EXPORTER") == "none":
                if self.log_shipper is None:
                    assert self.config.otlp_endpoint is not None
                    self.log_shipper = LogShipper(self.config.otlp_endpoint)
                    self.log_shipper.start()
                self.log_shipper.follow(name, path, env)
        self.processes[name] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            _MODULES[slot.role],
            env=env,
            stdout=stdout,
            stderr=asyncio.subprocess.STDOUT if stdout else None,
            start_new_session=True,
        )
        self._started_at[name] = time.time()

    async def wait_ready(self, timeout: float, services: Iterable[str] | None = None) -> None:
        """Until every one of ``services`` (process names; all by default) answers ``/readyz``
        with 200 (or ``SuiteError``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        pending = set(self.slots if services is None else services)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while pending:
                for name in sorted(pending):
                    proc = self.processes[name]
                    if proc.returncode is not None:
                        raise SuiteError(f"{name} exited with {proc.returncode}{self._tail(name)}")
                    url = f"http://127.0.0.1:{self.slots[name].port}/readyz"
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(url) as response:
                            if response.status == 200:
                                pending.discard(name)
                if pending and asyncio.get_running_loop().time() > deadline:
                    raise SuiteError(f"not ready after {timeout:.0f} s: {sorted(pending)}")
                if pending:
                    await asyncio.sleep(0.1)

    def _tail(self, name: str) -> str:
        path = self.log_path(name)
        if path is None or not path.exists():
            return ""
        return ":\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])

    def _watch(self, name: str) -> None:
        watcher = self._watchers.get(name)
        if watcher is None or watcher.done():
            self._watchers[name] = asyncio.ensure_future(self._supervise(name))

    async def _supervise(self, name: str) -> None:
        """Start ``name`` again whenever it dies, until the suite stops or ``stop_service``."""
        while not self._stopping:
            proc = self.processes.get(name)
            if proc is None:
                return
            code = await proc.wait()
            if self._stopping or self.processes.get(name) is not proc:
                return  # stopped on purpose, or already replaced by restart_service
            up_for = time.time() - self._started_at.get(name, 0.0)
            delay = self._next_backoff(name, up_for)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            # A process that failed says why: its last words (a traceback is not a log record).
            path = self.log_path(name)
            why = last_words(path, self._log_from.get(name, 0)) if code and path else ""
            ended: dict[str, Any] = {"pid": proc.pid, "code": code, "after_s": round(up_for, 1)}
            self._exits[name] = [*self._exits.get(name, [])[-(EXITS_KEPT - 1) :], ended]
            if why:
                ended["last_words"] = why
            print(
                f"safiri: {name} (pid {proc.pid}) exited with {code} after {up_for:.1f} s;"
                f" restarting in {delay:.1f} s (restart {self.restarts[name]})"
                + (f"; its last words:\n{why}" if why else ""),
                file=sys.stderr,
                flush=True,
            )
            self._close_log(name)
            self.write_state()
            await asyncio.sleep(delay)
            if self._stopping or self.processes.get(name) is not proc:
                return
            await self.start_service(name, self._envs.get(name))
            self.write_state()

    def _next_backoff(self, name: str, up_for: float) -> float:
        """The base wait after a process that ran a while; doubled after each quick death."""
        c = self.config
        previous = self._backoff.get(name)
        if previous is not None and up_for < 30.0:
            delay = min(previous * 2, c.restart_backoff_max_seconds)
        else:
            delay = c.restart_backoff_seconds
        self._backoff[name] = delay
        return delay

    def entries(self) -> list[ProcessEntry]:
        """Every process the suite runs, as ``safiri ps`` lists them."""
        listed = [
            ProcessEntry(
                role=slot.role,
                replica=slot.replica,
                pid=proc.pid
                if (proc := self.processes.get(name)) and proc.returncode is None
                else None,
                port=slot.port,
                health="/readyz",
                restarts=self.restarts.get(name, 0),
                started_at=self._started_at.get(name),
                last_exit=int(exits[-1]["code"]) if (exits := self._exits.get(name)) else None,
                exits=list(exits or []),
            )
            for name, slot in sorted(self.slots.items())
        ]
        return [*listed, *self.others]

    def write_state(self) -> None:
        path = self.config.state_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor_pid": os.getpid(),
            "gateway_url": f"http://127.0.0.1:{self.config.gateway_port}",
            "amqp_url": self.config.amqp_url,
            "processes": [asdict(e) for e in self.entries()],
        }
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(path)  # readers never see half a file

    def scrape_targets(self) -> dict[str, list[str]]:
        """Prometheus jobs: one target per replica (its own ``instance``), and the nodes."""
        jobs: dict[str, list[str]] = {}
        for slot in sorted(self.slots.values(), key=lambda s: (s.role, s.replica)):
            jobs.setdefault(slot.role, []).append(f"127.0.0.1:{slot.port}")
        if self.rabbit_nodes:
            jobs["rabbitmq"] = [f"127.0.0.1:{r.node.prometheus_port}" for r in self.rabbit_nodes]
        return jobs

    def _close_log(self, name: str) -> None:
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    async def stop_service(self, name: str, grace: float = 15.0) -> int | None:
        proc = self.processes.pop(name, None)
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._close_log(name)
        return proc.returncode

    async def restart_service(self, name: str, timeout: float = 45.0) -> None:
        """Start ``name`` again, on its port with the settings it had, until it is ready.

        A running process is stopped first (SIGTERM); a killed one is simply started.
        """
        proc = self.processes.get(name)
        if proc is not None and proc.returncode is None:
            await self.stop_service(name)
        await self.start_service(name, self._envs.get(name) or self.config.env())
        await self.wait_ready(timeout, services=[name])
        self._watch(name)
        self.write_state()

    async def stop(self) -> None:
        self._stopping = True
        for watcher in self._watchers.values():
            watcher.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        await asyncio.gather(*(self.stop_service(s) for s in list(self.processes)))
        if self.log_shipper is not None:  # the last lines, then no more
            await self.log_shipper.stop()
            self.log_shipper = None
        await self._stack.aclose()  # HAProxy, then the RabbitMQ nodes
        if self.config.state_path is not None:
            self.config.state_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Slot:
    """One process of the suite: ``role`` (gateway, ...), its ``replica`` index, its port."""

    role: str
    replica: int
    port: int


def plan_slots(config: SuiteConfig) -> dict[str, Slot]:
    """Process name → slot, in start order. One replica keeps the service's own name and
    port; several are ``<role>-<i>`` on free ports behind HAProxy on the service's port."""
    slots: dict[str, Slot] = {}
    for role in SERVICES:
        count = config.replicas if role in REPLICATED else 1
        if count <= 1:
            slots[role] = Slot(role, 0, config.port(role))
        else:
            for i in range(count):
                slots[f"{role}-{i}"] = Slot(role, i, free_port())
    if config.backup_port is not None:
        slots[BACKUP_SIMULATOR] = Slot(BACKUP_SIMULATOR, 0, config.backup_port)
    return slots


EXITS_KEPT = 5


def last_words(log: Path, since: int = 0, lines: int = 25, window: int = 64 * 1024) -> str:
    """What a process wrote at the end of ``log`` (from byte ``since``, where its life began)
    that is not a JSON log record: the traceback of an exception nothing caught, a warning
    Python printed at exit. Empty when its end holds records only."""
    try:
        with log.open("rb") as f:
            f.seek(max(since, f.seek(0, os.SEEK_END) - window))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    words = [line for line in tail if line.strip() and not line.startswith("{")]
    return "\n".join(words[-lines:])


@dataclass(frozen=True)
class ProcessEntry:
    """One process in ``safiri ps``: what it is, where it listens, how to ask if it is ready."""

    role: str
    replica: int
    pid: int | None  # None: dead, waiting to be started again
    port: int
    health: str  # the path answering 200 when ready
    restarts: int = 0
    started_at: float | None = None
    last_exit: int | None = None  # how the previous process of this slot ended
    name: str | None = None  # a RabbitMQ node's name (rabbitmqctl -n)
    # How its last few processes ended, oldest first: pid, code, after_s (how long it ran) and,
    # for a failure, last_words (what it wrote last that was not a log record: a traceback).
    exits: list[dict[str, Any]] = field(default_factory=list)
