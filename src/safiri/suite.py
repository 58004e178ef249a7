"""Start, watch and stop Safiri's four processes: gateway, ticketing, payment, simulator.

``make up``, ``make demo`` and the end-to-end tests all run the suite through this module, so
what the tests prove is what a user starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import asyncpg

__all__ = ["Suite", "SuiteConfig", "SuiteError", "drop_databases", "ensure_databases"]

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
        self._logs: dict[str, IO[bytes]] = {}
        self._envs: dict[str, dict[str, str]] = {}  # each service's environment, for a restart

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
        log = self._logs.pop(service, None)
        if log is not None:
            log.close()
        return proc.returncode

    async def kill_service(self, service: str) -> int:
        """SIGKILL ``service``, as a crash or the OOM killer would: no shutdown, no flush, no
        goodbye to the broker or the database. Returns its exit status (-9)."""
        proc = self.processes.get(service)
        if proc is None or proc.returncode is not None:
            raise SuiteError(f"{service} is not running")
        # Its own session (start_new_session): the whole process group goes, children too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        code = await proc.wait()
        log = self._logs.pop(service, None)
        if log is not None:
            log.close()
        return code

    async def restart_service(self, service: str, timeout: float = 45.0) -> None:
        """Start ``service`` again, on its port with the settings it had, until it is ready.

        A running service is stopped first (SIGTERM); a killed one is simply started.
        """
        proc = self.processes.get(service)
        if proc is not None and proc.returncode is None:
            await self.stop_service(service)
        await self.start_service(service, self._envs.get(service) or self.config.env())
        await self.wait_ready(timeout, services=[service])

    async def stop(self) -> None:
        await asyncio.gather(*(self.stop_service(s) for s in list(self.processes)))
