"""Start, watch and stop Safiri's four processes: gateway, ticketing, payment, simulator.

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
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import asyncpg

__all__ = [
    "ProcessEntry",
    "Suite",
    "SuiteConfig",
    "SuiteError",
    "drop_databases",
    "ensure_databases",
]

SERVICES = ("mpesa-simulator", "payment", "ticketing", "gateway")
_MODULES = {
    "gateway": "safiri_gateway",
    "ticketing": "safiri_ticketing",
    "payment": "safiri_payment",
    "mpesa-simulator": "safiri_mpesa_sim",
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

    def database_url(self, service: str) -> str:
        return f"{self.postgres_url}/{self.database_prefix}_{service}"

    @property
    def databases(self) -> list[str]:
        return [f"{self.database_prefix}_{s}" for s in ("gateway", "ticketing", "payment")]

    def port(self, service: str) -> int:
        return {
            "gateway": self.gateway_port,
            "ticketing": self.ticketing_port,
            "payment": self.payment_port,
            "mpesa-simulator": self.mpesa_port,
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
                "SAFIRI_TICKETING_URL": f"http://127.0.0.1:{self.ticketing_port}",
                "SAFIRI_MPESA_URL": f"http://127.0.0.1:{self.mpesa_port}",
                "SAFIRI_GATEWAY_DATABASE_URL": self.database_url("gateway"),
                "SAFIRI_TICKETING_DATABASE_URL": self.database_url("ticketing"),
                "SAFIRI_PAYMENT_DATABASE_URL": self.database_url("payment"),
                "SAFIRI_AMQP_URL": self.amqp_url,
            }
        )
        if self.otlp_endpoint is not None:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        if self.ledger_path is not None:
            env["SAFIRI_MPESA_SIM_LEDGER_PATH"] = str(self.ledger_path)
        env.update(self.extra_env)
        return env


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
) -> SuiteConfig:
    """The four processes on free loopback ports, with databases of their own."""
    return SuiteConfig(
        api_keys=[api_key],
        gateway_port=free_port(),
        ticketing_port=free_port(),
        payment_port=free_port(),
        mpesa_port=free_port(),
        database_prefix=database_prefix,
        amqp_url=amqp_url,
        otlp_endpoint=otlp_endpoint,
        log_dir=log_dir,
        extra_env=extra_env,
        service_env=service_env or {},
        ledger_path=log_dir / "mpesa-ledger.jsonl",
    )


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
    """The four processes of one configuration; ``async with Suite(config):`` runs them."""

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.restarts: dict[str, int] = dict.fromkeys(SERVICES, 0)
        self.others: list[ProcessEntry] = []  # Prometheus, the trace store, ...: for `ps`
        self._logs: dict[str, IO[bytes]] = {}
        self._envs: dict[str, dict[str, str]] = {}  # each service's environment, for a restart
        self._started_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def log_path(self, service: str) -> Path | None:
        return self.config.log_dir / f"{service}.log" if self.config.log_dir else None

    async def __aenter__(self) -> Suite:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 45.0) -> None:
        await ensure_databases(self.config)
        env = self.config.env()
        for service in SERVICES:
            await self.start_service(service, env)
        try:
            await self.wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise
        for service in SERVICES:
            self._watch(service)
        self.write_state()

    async def start_service(self, service: str, env: dict[str, str] | None = None) -> None:
        env = dict(env or self.config.env())
        env.update(self.config.service_env.get(service, {}))
        env["OTEL_SERVICE_NAME"] = service
        self._envs[service] = env
        stdout: int | IO[bytes] | None = None
        path = self.log_path(service)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._logs[service] = stdout = path.open("ab")
        self.processes[service] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            _MODULES[service],
            env=env,
            stdout=stdout,
            stderr=asyncio.subprocess.STDOUT if stdout else None,
            start_new_session=True,
        )
        self._started_at[service] = time.time()

    async def wait_ready(self, timeout: float, services: Iterable[str] = SERVICES) -> None:
        """Until every one of ``services`` answers ``/readyz`` with 200 (or ``SuiteError``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        pending = set(services)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while pending:
                for service in sorted(pending):
                    proc = self.processes[service]
                    if proc.returncode is not None:
                        raise SuiteError(
                            f"{service} exited with {proc.returncode}{self._tail(service)}"
                        )
                    url = f"http://127.0.0.1:{self.config.port(service)}/readyz"
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(url) as response:
                            if response.status == 200:
                                pending.discard(service)
                if pending and asyncio.get_running_loop().time() > deadline:
                    raise SuiteError(f"not ready after {timeout:.0f} s: {sorted(pending)}")
                if pending:
                    await asyncio.sleep(0.1)

    def _tail(self, service: str) -> str:
        path = self.log_path(service)
        if path is None or not path.exists():
            return ""
        return ":\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])

    def _watch(self, service: str) -> None:
        watcher = self._watchers.get(service)
        if watcher is None or watcher.done():
            self._watchers[service] = asyncio.ensure_future(self._supervise(service))

    async def _supervise(self, service: str) -> None:
        """Start ``service`` again whenever it dies, until the suite stops or ``stop_service``."""
        while not self._stopping:
            proc = self.processes.get(service)
            if proc is None:
                return
            code = await proc.wait()
            if self._stopping or self.processes.get(service) is not proc:
                return  # stopped on purpose, or already replaced by restart_service
            up_for = time.time() - self._started_at.get(service, 0.0)
            delay = self._next_backoff(service, up_for)
            self.restarts[service] += 1
            print(
                f"safiri: {service} (pid {proc.pid}) exited with {code} after {up_for:.1f} s;"
                f" restarting in {delay:.1f} s (restart {self.restarts[service]})",
                file=sys.stderr,
                flush=True,
            )
            self._close_log(service)
            self.write_state()
            await asyncio.sleep(delay)
            if self._stopping or self.processes.get(service) is not proc:
                return
            await self.start_service(service, self._envs.get(service))
            self.write_state()

    def _next_backoff(self, service: str, up_for: float) -> float:
        """The base wait after a process that ran a while; doubled after each quick death."""
        c = self.config
        previous = self._backoff.get(service)
        if previous is not None and up_for < 30.0:
            delay = min(previous * 2, c.restart_backoff_max_seconds)
        else:
            delay = c.restart_backoff_seconds
        self._backoff[service] = delay
        return delay

    def entries(self) -> list[ProcessEntry]:
        """Every process the suite runs, as ``safiri ps`` lists them."""
        listed = [
            ProcessEntry(
                role=service,
                replica=0,
                pid=proc.pid if proc.returncode is None else None,
                port=self.config.port(service),
                health="/readyz",
                restarts=self.restarts[service],
                started_at=self._started_at.get(service),
            )
            for service, proc in sorted(self.processes.items())
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
            "processes": [asdict(e) for e in self.entries()],
        }
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(path)  # readers never see half a file

    def _close_log(self, service: str) -> None:
        log = self._logs.pop(service, None)
        if log is not None:
            log.close()

    async def stop_service(self, service: str, grace: float = 15.0) -> int | None:
        proc = self.processes.pop(service, None)
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
        self._close_log(service)
        return proc.returncode

    async def restart_service(self, service: str, timeout: float = 45.0) -> None:
        """Start ``service`` again, on its port with the settings it had, until it is ready.

        A running service is stopped first (SIGTERM); a killed one is simply started.
        """
        proc = self.processes.get(service)
        if proc is not None and proc.returncode is None:
            await self.stop_service(service)
        await self.start_service(service, self._envs.get(service) or self.config.env())
        await self.wait_ready(timeout, services=[service])
        self._watch(service)
        self.write_state()

    async def stop(self) -> None:
        self._stopping = True
        for watcher in self._watchers.values():
            watcher.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        await asyncio.gather(*(self.stop_service(s) for s in list(self.processes)))
        if self.config.state_path is not None:
            self.config.state_path.unlink(missing_ok=True)


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
