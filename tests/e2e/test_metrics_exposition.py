"""Every service's /metrics is valid Prometheus text that promtool accepts."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE, STDOUT

import pytest

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

    promtool = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    output, _ = await asyncio.wait_for(promtool.communicate(text.encode()), 30)

    assert promtool.returncode == 0, output.decode()
    assert "http_server_request_duration_seconds_bucket" in text
