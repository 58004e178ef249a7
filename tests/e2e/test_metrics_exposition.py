"""Every service's /metrics is valid Prometheus text that promtool accepts."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import promtool_check_metrics

from .conftest import Running

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("service", ["gateway", "ticketing", "payment", "mpesa-simulator"])
async def test_metrics_pass_promtool_check_metrics(running: Running, service: str) -> None:
    trip = await running.next_trip("Nairobi", "Kisumu")
    status, body, _ = await running.place_order(trip["trip_id"])
    assert status == 202
    await running.final_order(body["order_id"])
    async with running.http.get(running.url(service, "/metrics")) as response:
        assert response.status == 200
        text = await response.text()

    assert await asyncio.to_thread(promtool_check_metrics, text) == []
    assert "http_server_request_duration_seconds_bucket" in text
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text
