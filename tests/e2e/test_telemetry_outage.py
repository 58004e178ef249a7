"""With the trace collector down, the suite still sells tickets, counts what it could not export,
says so in a few log lines, and stops promptly."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from safiri.otlp import SpanStore
from safiri.suite import SERVICES, Suite, SuiteConfig, drop_databases
from tests.conftest import eventually, free_port

from .conftest import Running

pytestmark = pytest.mark.e2e

MAX_EXPORT_WARNINGS = 3
FAILURES = "telemetry_export_failures_total"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def outage_amqp_url(run_id: str) -> Iterator[str]:
    """A vhost of this module's own: the suite's queue names would collide in the shared one."""
    vhost = f"safiri-test-{run_id}-outage"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest_asyncio.fixture(scope="module")
async def outage(
    run_id: str, outage_amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    """The four processes exporting to a port where nothing listens."""
    api_key = secrets.token_urlsafe(16)
    config = SuiteConfig(
        api_keys=[api_key],
        gateway_port=free_port(),
        ticketing_port=free_port(),
        payment_port=free_port(),
        mpesa_port=free_port(),
        database_prefix=f"safiri_test_{run_id}_outage",
        amqp_url=outage_amqp_url,
        otlp_endpoint=f"http://127.0.0.1:{free_port()}",  # bound, then closed: refused
        log_dir=tmp_path_factory.mktemp("outage-logs"),
        extra_env={"SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0.1", "SAFIRI_SEED_DAYS": "3"},
    )
    try:
        async with Suite(config) as suite, aiohttp.ClientSession() as http:
            yield Running(suite, SpanStore(), api_key, http)
    finally:
        await drop_databases(config)


def export_warnings(running: Running, service: str) -> list[dict[str, Any]]:
    return [
        line
        for line in running.log_lines(service)
        if line["level"] in {"WARNING", "ERROR", "CRITICAL"}
        and (
            "export" in str(line["message"]).lower()
            or str(line.get("logger", "")).startswith(("opentelemetry", "urllib3"))
        )
    ]


async def test_a_purchase_is_confirmed_while_the_collector_is_down(outage: Running) -> None:
    trip = await outage.next_trip()
    status, body, headers = await outage.place_order(trip["trip_id"], seat_count=2)

    assert status == 202, body
    assert headers["X-Trace-Id"]  # traced as usual, only not exported
    order = await outage.final_order(body["order_id"])
    assert order["status"] == "CONFIRMED", order


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_counts_the_spans_it_could_not_export(
    outage: Running, service: str
) -> None:
    async def counted() -> float | None:
        value = await outage.metric(service, FAILURES, signal="traces")
        return value if value > 0 else None

    failed = await eventually(counted, timeout=20, what=f"{service} to count export failures")
    print(f"\n{service}: {failed:.0f} spans not exported")


@pytest.mark.parametrize("service", SERVICES)
async def test_export_failures_are_reported_in_a_few_warnings_not_one_per_batch(
    outage: Running, service: str
) -> None:
    found = export_warnings(outage, service)
    assert found, f"{service} never said that spans are being dropped"
    assert len(found) <= MAX_EXPORT_WARNINGS, found
    assert all("dropped_spans" in line for line in found), found


async def test_the_suite_stops_promptly_with_the_collector_down(outage: Running) -> None:
    processes = dict(outage.suite.processes)
    started = time.perf_counter()
    await asyncio.wait_for(outage.suite.stop(), 30)
    stopped = time.perf_counter() - started
    print(f"\nthe suite stopped in {stopped:.1f} s with the collector down")

    # Killed after the 15 s grace would show as -9; a clean exit is 0.
    assert {name: p.returncode for name, p in processes.items()} == dict.fromkeys(SERVICES, 0)
    assert stopped < 10
    for service in SERVICES:
        found = export_warnings(outage, service)
        assert len(found) <= MAX_EXPORT_WARNINGS, found
