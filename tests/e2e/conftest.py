"""The whole suite as four real processes on loopback ports, exporting to a real OTLP receiver."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from safiri.otlp import SpanStore, running_receiver
from safiri_suite.suite import Suite, SuiteConfig, drop_databases, isolated_config
from tests.conftest import eventually, own_vhost

FINAL = {"CONFIRMED", "PAYMENT_FAILED", "EXPIRED"}
HOLD_TTL_SECONDS = 8


@dataclass
class Running:
    suite: Suite
    spans: SpanStore
    api_key: str
    http: aiohttp.ClientSession

    @property
    def config(self) -> SuiteConfig:
        return self.suite.config

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.config.port(service)}{path}"

    @property
    def ports(self) -> dict[str, int]:
        """Each of the four processes' port, by name."""
        return {
            s: self.config.port(s) for s in ("gateway", "ticketing", "payment", "mpesa-simulator")
        }

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    async def search(self, origin: str, destination: str, day: str) -> list[dict[str, Any]]:
        async with self.http.get(
            self.url("gateway", "/api/v1/trips"),
            headers=self.auth,
            params={"origin": origin, "destination": destination, "date": day},
        ) as response:
            assert response.status == 200, await response.text()
            trips: list[dict[str, Any]] = (await response.json())["trips"]
            return trips

    async def next_trip(
        self, origin: str = "Nairobi", destination: str = "Mombasa"
    ) -> dict[str, Any]:
        """A trip the day after tomorrow, with the search that finds it again."""
        day = (date.today() + timedelta(days=2)).isoformat()
        trip = (await self.search(origin, destination, day))[0]
        return {**trip, "_search": (origin, destination, day)}

    async def seats_available(self, trip: dict[str, Any]) -> int:
        for found in await self.search(*trip["_search"]):
            if found["trip_id"] == trip["trip_id"]:
                return int(found["seats_available"])
        raise AssertionError(f"trip {trip['trip_id']} no longer listed")

    async def place_order(
        self,
        trip_id: str,
        phone: str = "254712345678",
        seat_count: int = 1,
        key: str | None = None,
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        headers = {**self.auth, "Idempotency-Key": key or str(uuid.uuid4())}
        body = {"trip_id": trip_id, "seat_count": seat_count, "phone": phone}
        async with self.http.post(
            self.url("gateway", "/api/v1/orders"), json=body, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None), response.headers

    async def order(self, order_id: str) -> dict[str, Any]:
        async with self.http.get(
            self.url("gateway", f"/api/v1/orders/{order_id}"), headers=self.auth
        ) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def final_order(self, order_id: str, timeout: float = 20.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            body = await self.order(order_id)
            return body if body["status"] in FINAL else None

        return await eventually(probe, timeout=timeout, what=f"order {order_id} to be final")

    async def metric(self, service: str, name: str, **labels: str) -> float:
        async with self.http.get(self.url(service, "/metrics")) as response:
            return sample_sum(await response.text(), name, **labels)

    async def add_trip(self, seats: int) -> str:
        """A trip of its own with ``seats`` seats, written straight into ticketing's database."""
        trip_id = str(uuid.uuid4())
        conn = await asyncpg.connect(self.config.database_url("ticketing"))
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO trips (trip_id, origin, destination, departs_at, arrives_at,"
                    " bus_id, fare, seats_total) VALUES ($1::uuid, 'Nairobi', 'Test-' || $2,"
                    " now() + interval '3 days', now() + interval '3 days 5 hours', 'KTEST01',"
                    " 700, $3)",
                    trip_id,
                    trip_id[:8],
                    seats,
                )
                await conn.execute(
                    "INSERT INTO seats (trip_id, seat_no) SELECT $1::uuid, g"
                    " FROM generate_series(1, $2) g",
                    trip_id,
                    seats,
                )
        finally:
            await conn.close()
        return trip_id

    def log_size(self, service: str) -> int:
        """How many bytes ``service`` has logged so far (for ``log_lines(since=...)``)."""
        path = self.suite.log_path(service)
        assert path is not None
        return path.stat().st_size

    def log_lines(self, service: str, since: int = 0) -> list[dict[str, Any]]:
        """``service``'s JSON log lines, from byte ``since`` of its log on."""
        path = self.suite.log_path(service)
        assert path is not None
        lines = []
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode()
        for raw in text.splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                pytest.fail(f"{service} wrote a line that is not JSON: {raw[:200]}")
        return lines


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with ``labels`` in a Prometheus exposition.

    A labelled child not created yet reads 0 (prometheus_client creates them on first use);
    a metric the exposition does not declare at all fails: renamed, or never exported, it must
    not pass for "still 0".
    """
    total = 0.0
    declared = False
    for family in text_string_to_metric_families(text):
        if name in (family.name, f"{family.name}_total"):
            declared = True
        for sample in family.samples:
            if sample.name == name:
                declared = True
                if all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
    assert declared, f"{name} is not in the exposition at all (renamed, or never exported?)"
    return total


@asynccontextmanager
async def suite_running(
    name: str,
    amqp_url: str,
    log_dir: Path,
    otlp_endpoint: str,
    *,
    replicas: int = 1,
    rabbitmq_nodes: int = 1,
    backup_provider: bool = False,
    **extra_env: str,
) -> AsyncIterator[Running]:
    """The four processes on free ports with databases named ``name``, dropped afterwards
    (``replicas`` of each service behind HAProxy, ``rabbitmq_nodes`` of its own: cluster
    mode, with ``amqp_url`` empty)."""
    api_key = secrets.token_urlsafe(16)
    config = isolated_config(
        api_key=api_key,
        database_prefix=name,
        amqp_url=amqp_url,
        otlp_endpoint=otlp_endpoint,
        log_dir=log_dir,
        extra_env={
            "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0.1",
            "SAFIRI_HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),
            "SAFIRI_SWEEP_INTERVAL_SECONDS": "0.5",
            "SAFIRI_SEED_DAYS": "3",
            "SAFIRI_PROVIDER_BREAKER_RESET_SECONDS": "1",
            "SAFIRI_RECONCILE_AFTER_SECONDS": "1",
            "SAFIRI_RECONCILE_INTERVAL_SECONDS": "0.5",
            **extra_env,
        },
        backup_provider=backup_provider,  # a second simulator: the backup payment route
    )
    config.replicas, config.rabbitmq_nodes = replicas, rabbitmq_nodes
    config.state_path = log_dir / "suite-state.json"
    try:
        async with Suite(config) as suite, aiohttp.ClientSession() as http:
            yield Running(suite, SpanStore(), api_key, http)
    finally:
        await drop_databases(config)


@asynccontextmanager
async def suite_of_its_own(
    run_id: str, purpose: str, log_dir: Path, **extra_env: str
) -> AsyncIterator[Running]:
    """A suite with a vhost, databases and an OTLP receiver of its own (``.spans``): in the
    session's vhost the session's suite would consume its messages."""
    with own_vhost(f"safiri-test-{run_id}-{purpose}") as amqp_url:
        async with (
            running_receiver() as (spans, otlp_url),
            suite_running(
                f"safiri_test_{run_id}_{purpose}", amqp_url, log_dir, otlp_url, **extra_env
            ) as running,
        ):
            running.spans = spans
            yield running


@pytest_asyncio.fixture(scope="session")
async def running(
    run_id: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    async with (
        running_receiver() as (spans, otlp_url),
        suite_running(
            f"safiri_test_{run_id}_e2e",
            amqp_url,
            tmp_path_factory.mktemp("suite-logs"),
            otlp_url,
        ) as suite,
    ):
        suite.spans = spans
        yield suite
