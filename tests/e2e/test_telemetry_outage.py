"""With the trace collector down, the suite still sells tickets, counts what it could not export,
says so in a few log lines, and stops promptly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from safiri_suite.suite import SERVICES
from tests.conftest import eventually, free_port, own_vhost

from .conftest import Running, suite_running

pytestmark = pytest.mark.e2e

MAX_EXPORT_WARNINGS = 3
FAILURES = "telemetry_export_failures_total"


@pytest_asyncio.fixture(scope="module")
async def outage(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """The four processes exporting to a port where nothing listens (bound, then closed)."""
    # A vhost of this module's own: the suite's queue names would collide in the shared one.
    with own_vhost(f"safiri-test-{run_id}-outage") as amqp_url:
        async with suite_running(
            f"safiri_test_{run_id}_outage",
            amqp_url,
            tmp_path_factory.mktemp("outage-logs"),
            f"http://127.0.0.1:{free_port()}",
        ) as running:
            yield running


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
