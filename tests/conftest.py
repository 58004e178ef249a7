"""Fixtures shared by every tier: isolated broker vhosts and databases, free ports, deadlines."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_flags import DEFAULT_FLAGS_FILE, Flags
from safiri_suite.ports import free_port as free_port  # re-exported for the tests

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@asynccontextmanager
async def serving(app: web.Application, *, port: int = 0, **options: Any) -> AsyncIterator[str]:
    """``app`` served on a loopback port for the block; yields its base URL.

    The port is one the kernel picks, bound at once, unless ``port`` names one chosen ahead
    (a ``free_port()`` another process was told about). ``options`` go to
    ``web.AppRunner`` (``auto_decompress=False``, ...); the app's startup and cleanup run.
    """
    runner = web.AppRunner(app, **{"access_log": None, **options})
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something other than None/False, or fail at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last is not None and last is not False:
            return last
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last={last!r}")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def own_vhost(name: str) -> Iterator[str]:
    """A RabbitMQ vhost created for the caller and deleted afterwards; yields its AMQP URL."""
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="session")
def amqp_url(run_id: str) -> Iterator[str]:
    """A RabbitMQ vhost of this test run's own, deleted afterwards."""
    with own_vhost(f"safiri-test-{run_id}") as url:
        yield url


@pytest_asyncio.fixture(scope="session")
async def make_database(run_id: str) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Creates databases named for this run; drops every one of them at the end."""
    created: list[str] = []

    async def make(purpose: str) -> str:
        name = f"safiri_test_{run_id}_{purpose}"
        conn = await asyncpg.connect(f"{POSTGRES}/postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return f"{POSTGRES}/{name}"

    yield make
    conn = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        for name in created:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    """A copy of the repository's flag file (deploy/flags/flags.json) the test may edit."""
    path = tmp_path / "flags.json"
    shutil.copy(ROOT / DEFAULT_FLAGS_FILE, path)
    return path


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def flags(flag_file: Path, registry: CollectorRegistry) -> Iterator[Flags]:
    """safiri_flags on ``flag_file``, polling it every 0.1 s, its metrics in ``registry``."""
    started = Flags.start(flag_file, service="test", registry=registry, poll_seconds=0.1)
    yield started
    started.shutdown()


@pytest.fixture(scope="session")
def _span_exporter_installed() -> InMemorySpanExporter:
    """One SDK tracer provider per test process (OpenTelemetry allows one), recording in memory."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "safiri-tests"}))
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_span_exporter_installed: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The spans finished during this test."""
    _span_exporter_installed.clear()
    yield _span_exporter_installed
    _span_exporter_installed.clear()


# PRODUCT.md fixes the name `active_buses_count` (a gauge), and the OpenTelemetry conventions
# name the pool gauge `db.client.connection.count` (`db_client_connection_count` in
# Prometheus); promtool's lint reserves the `_count` suffix for histograms and summaries. The
# public contract and the conventions win; nothing else may.
CONTRACT_LINT_EXCEPTIONS = (
    'active_buses_count non-histogram and non-summary metrics should not have "_count" suffix',
    'db_client_connection_count non-histogram and non-summary metrics should not have "_count"'
    " suffix",
)


def promtool_check_metrics(text: str) -> list[str]:
    """What ``promtool check metrics`` finds wrong with ``text``, less the contract's exception."""
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    found = [ln.strip() for ln in (checked.stdout + checked.stderr).splitlines() if ln.strip()]
    return [ln for ln in found if ln not in CONTRACT_LINT_EXCEPTIONS]


def load_script(path: Path) -> ModuleType:
    """A script of the repository (bench/, scripts/: directories of scripts, not packages) as
    a module, importable by the tests."""
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module
