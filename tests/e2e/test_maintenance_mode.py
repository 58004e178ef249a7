"""Maintenance mode, end to end: the suite's own flag file edited as an operator would.

On the session's suite (its own copy of the flag file, ``running.config.flags_file``): within
5 s of the edit a new order is 503 problem+json of the maintenance type with Retry-After, while
searches and order reads answer 200, an order placed before completes, and its retry gets its
stored 202; the POST's gateway server span carries the flag's evaluation with variant "on", and
the gateway's /metrics count it and say maintenance is on; within 5 s of the flag off, orders
are accepted again. The file is put back whatever happens, so the suite's other tests see
maintenance off.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from safiri.otlp import ReceivedSpan
from safiri_chaos.flagfile import set_default_variant
from tests.conftest import eventually

from .conftest import Running

pytestmark = pytest.mark.e2e

SWITCH_SECONDS = 5.0  # PRODUCT.md: an edit of the flag file takes effect within 5 s
SERVER = 2  # OTLP SpanKind SERVER
MAINTENANCE = "https://safiri.dev/problems/maintenance"


def write_maintenance(path: Path, on: bool) -> None:
    """The operator's edit: only maintenance-mode's defaultVariant, the file replaced whole."""
    set_default_variant(path, "maintenance-mode", "on" if on else "off")


async def maintenance_gauge(running: Running) -> float:
    return await running.metric("gateway", "safiri_maintenance_mode")


async def switch(running: Running, on: bool) -> float:
    """Edit the flag file; the seconds until the gateway reports the new state."""
    flags_file = running.config.flags_file
    assert flags_file is not None, "the suite runs without a flag file of its own"
    loop = asyncio.get_running_loop()
    started = loop.time()
    write_maintenance(flags_file, on)

    async def seen() -> bool:
        return await maintenance_gauge(running) == (1.0 if on else 0.0)

    await eventually(seen, timeout=SWITCH_SECONDS, what=f"maintenance {'on' if on else 'off'}")
    return loop.time() - started


@pytest_asyncio.fixture
async def restored(running: Running) -> AsyncIterator[None]:
    """Whatever the test does, the suite's flag file is as it was, and the gateway knows it."""
    flags_file = running.config.flags_file
    assert flags_file is not None
    original = flags_file.read_text()
    yield
    if flags_file.read_text() != original:
        tmp = flags_file.with_name(f".{flags_file.name}.restore")
        tmp.write_text(original)
        os.replace(tmp, flags_file)
        await switch(running, on=False)


async def _post(running: Running, trip_id: str, key: str) -> tuple[int, Any, Any]:
    return await running.place_order(trip_id, key=key)


def _evaluations(span: ReceivedSpan) -> list[dict[str, Any]]:
    return [attrs for name, attrs in span.events if name == "feature_flag.evaluation"]


async def test_maintenance_mode_refuses_new_orders_only_and_shows_on_spans_and_metrics(
    running: Running, restored: None
) -> None:
    trip = await running.next_trip()
    before_key = str(uuid.uuid4())
    status, placed, _ = await _post(running, trip["trip_id"], before_key)
    assert status == 202, placed
    counted_before = await running.metric(
        "gateway",
        "feature_flag_evaluation_success_total",
        feature_flag_key="maintenance-mode",
        feature_flag_result_variant="on",
    )

    took = await switch(running, on=True)
    status, problem, headers = await _post(running, trip["trip_id"], str(uuid.uuid4()))

    assert took < SWITCH_SECONDS
    assert status == 503, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["type"] == MAINTENANCE
    assert problem["trace_id"] == headers["X-Trace-Id"]
    assert int(headers["Retry-After"]) >= 1
    # Reads go on, an order placed before completes, and its retry is not a new order.
    assert await running.seats_available(trip) >= 0  # GET /trips answered 200
    assert (await running.order(placed["order_id"]))["order_id"] == placed["order_id"]
    retry_status, retried, retry_headers = await _post(running, trip["trip_id"], before_key)
    assert (retry_status, retried["order_id"]) == (202, placed["order_id"])
    assert retry_headers["Idempotent-Replayed"] == "true"
    final = await running.final_order(placed["order_id"])
    assert final["status"] == "CONFIRMED", final

    # The variant on the POST's gateway server span ...
    trace_id = headers["X-Trace-Id"]

    async def server_span() -> ReceivedSpan | None:
        found = [
            s
            for s in running.spans.trace(trace_id)
            if s.service == "gateway" and s.kind == SERVER and s.parent_span_id is None
        ]
        return found[0] if found else None

    span = await eventually(server_span, timeout=10.0, what="the refused POST's server span")
    assert span.name == "POST /api/v1/orders"
    evaluations = _evaluations(span)
    assert [e.get("feature_flag.key") for e in evaluations] == ["maintenance-mode"]
    assert evaluations[0].get("feature_flag.result.variant") == "on"
    # ... and in the gateway's metrics.
    counted = await running.metric(
        "gateway",
        "feature_flag_evaluation_success_total",
        feature_flag_key="maintenance-mode",
        feature_flag_result_variant="on",
    )
    assert counted >= counted_before + 1
    assert await maintenance_gauge(running) == 1.0

    took = await switch(running, on=False)
    status, accepted, _ = await _post(running, trip["trip_id"], str(uuid.uuid4()))

    assert took < SWITCH_SECONDS
    assert status == 202, accepted
