"""The repository's alert rules on a real Prometheus scraping the running suite.

A provider outage, injected in the M-Pesa simulator, must make SafiriPaymentProviderFailing go
pending, then firing, and resolve once the provider is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from safiri.chaos.prometheus import fast_rules
from tests.conftest import eventually
from tests.deploy.prometheus_server import running_prometheus

from .conftest import Running
from .live_prometheus import alerts, scrape_config, write_fast_rules

pytestmark = pytest.mark.e2e

ADMIN = {"X-Simulator-Admin-Key": "safiri-sim-admin"}


def test_the_test_copy_only_shortens_time() -> None:
    shipped = "expr: rate(x[5m]) > 0\n        for: 10m\n      - record: y\n        expr: z[1h]"
    assert fast_rules(shipped) == (
        "expr: rate(x[15s]) > 0\n        for: 3s\n      - record: y\n        expr: z[15s]"
    )


@pytest_asyncio.fixture
async def prometheus(running: Running, tmp_path: Path) -> AsyncIterator[str]:
    rules = write_fast_rules(tmp_path)
    async with running_prometheus(scrape_config(running), rules, tmp_path) as url:
        yield url


@contextlib.asynccontextmanager
async def buyers(running: Running, per_second: float = 8) -> AsyncIterator[list[int]]:
    """Steady purchases in the background; yields the list of statuses answered so far."""
    trips = [
        trip["trip_id"]
        for origin, destination in (
            ("Nairobi", "Mombasa"),
            ("Nairobi", "Kisumu"),
            ("Nairobi", "Nakuru"),
            ("Mombasa", "Nairobi"),
        )
        for day in (1, 2)
        for trip in await running.search(origin, destination, _day(day))
    ]
    assert trips, "no trips on sale to buy"
    answered: list[int] = []

    async def buy() -> None:
        for trip_id in itertools.cycle(trips):
            status, _, _ = await running.place_order(trip_id)
            answered.append(status)
            await asyncio.sleep(1 / per_second)

    task = asyncio.create_task(buy())
    try:
        yield answered
        if task.done():
            task.result()  # a buyer that died must fail the test, not stall it
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _day(offset: int) -> str:
    from datetime import date, timedelta

    return (date.today() + timedelta(days=offset)).isoformat()


async def set_faults(http: aiohttp.ClientSession, running: Running, **faults: object) -> None:
    url = running.url("mpesa-simulator", "/simulator/faults")
    if faults:
        async with http.put(url, json=faults, headers=ADMIN) as response:
            assert response.status == 200, await response.text()
    else:
        async with http.delete(url, headers=ADMIN) as response:
            assert response.status == 200, await response.text()


async def test_a_provider_outage_fires_the_provider_alert_which_resolves_after_recovery(
    running: Running, prometheus: str
) -> None:
    name = "SafiriPaymentProviderFailing"
    http = running.http
    states: list[str] = []

    async def state(wanted: str) -> bool:
        found = await alerts(http, prometheus, name)
        current = found[0]["state"] if found else "inactive"
        if not states or states[-1] != current:
            states.append(current)
        return current == wanted

    async with buyers(running) as answered:
        await eventually(lambda: _accepted(answered, 10), what="healthy purchases first")
        assert await alerts(http, prometheus, name) == []
        await set_faults(http, running, outage="http_503")
        try:
            await eventually(
                lambda: state("firing"), timeout=60, interval=0.2, what=f"{name} to fire"
            )
        finally:
            await set_faults(http, running)
        await eventually(
            lambda: state("inactive"), timeout=90, interval=0.5, what=f"{name} to resolve"
        )

    assert states[:3] == ["inactive", "pending", "firing"], states
    assert states[-1] == "inactive"
    print(f"\n{name}: {' → '.join(states)}")


async def _accepted(answered: list[int], n: int) -> bool:
    return answered.count(202) >= n
