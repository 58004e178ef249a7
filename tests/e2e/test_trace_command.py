"""`safiri trace ORDER_ID` on a real run: the suite exports to the embedded trace store."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from safiri_tracestore import running_store
from tests.conftest import eventually, own_vhost

from .conftest import Running, suite_running

pytestmark = pytest.mark.e2e

SERVICES = {"gateway", "ticketing", "payment", "mpesa-simulator"}
CAUSES = {
    "254700000001": "ResultCode 1: The balance is insufficient for the transaction.",
    "254700001032": "ResultCode 1032: Request cancelled by user",
    "254700001037": "ResultCode 1037: DS timeout user cannot be reached",
    "254700002001": "ResultCode 2001: The initiator information is invalid.",
}


@pytest_asyncio.fixture(scope="module")
async def stored(
    run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Running, str]]:
    path = tmp_path_factory.mktemp("trace-store") / "traces.sqlite3"
    with own_vhost(f"safiri-test-{run_id}-store") as amqp_url:
        async with (
            running_store(port=0, path=path) as store_url,
            suite_running(
                f"safiri_test_{run_id}_store",
                amqp_url,
                tmp_path_factory.mktemp("store-logs"),
                store_url,
            ) as running,
        ):
            yield running, store_url


async def safiri_trace(store_url: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safiri.cli",
        "trace",
        *args,
        "--store",
        store_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def traced_document(store_url: str, order_id: str, settled: str) -> dict[str, Any]:
    """The order's trace once ``settled`` (a span name) and every service's logs are stored."""

    async def probe() -> dict[str, Any] | None:
        code, out = await safiri_trace(store_url, order_id, "--json")
        if code != 0:
            return None
        doc: dict[str, Any] = json.loads(out)
        spans = {(s["service"], s["name"]) for s in doc["spans"]}
        logged = {line["service"] for line in doc["logs"]}
        done = any(name == settled for _, name in spans)
        return doc if done and {s for s, _ in spans} >= SERVICES and logged >= SERVICES else None

    return await eventually(probe, timeout=30, interval=0.3, what=f"the trace of {order_id}")


@pytest.mark.parametrize(("phone", "cause"), sorted(CAUSES.items()))
async def test_trace_of_a_failed_payment_names_every_service_its_cause_and_their_logs(
    stored: tuple[Running, str], phone: str, cause: str
) -> None:
    running, store_url = stored
    trip = await running.next_trip("Nairobi", "Mombasa")
    status, body, _ = await running.place_order(trip["trip_id"], phone=phone)
    assert status == 202
    assert (await running.final_order(body["order_id"]))["status"] == "PAYMENT_FAILED"

    await traced_document(store_url, body["order_id"], "release_seats")
    code, out = await safiri_trace(store_url, body["order_id"])

    assert code == 0, out
    assert f"root cause: payment → handle_callback: {cause}" in out
    for service in SERVICES:
        assert f"{service}: " in out
    log_section = out.split("logs (", 1)[1]
    for service in SERVICES:
        assert f"  {service} " in log_section, (service, log_section)


async def test_trace_of_an_unanswered_payment_states_the_expired_hold(
    stored: tuple[Running, str],
) -> None:
    running, store_url = stored
    trip = await running.next_trip("Nairobi", "Kisumu")
    status, body, _ = await running.place_order(trip["trip_id"], phone="254700009999")
    assert status == 202
    assert (await running.final_order(body["order_id"], timeout=30))["status"] == "EXPIRED"

    document = await traced_document(store_url, body["order_id"], "expire_hold")
    code, out = await safiri_trace(store_url, body["order_id"])

    assert code == 0, out
    assert "root cause: ticketing → expire_hold" in out
    assert {s["service"] for s in document["spans"]} >= SERVICES


async def test_failed_lists_recent_failed_orders_with_their_traces(
    stored: tuple[Running, str],
) -> None:
    running, store_url = stored
    trip = await running.next_trip("Mombasa", "Malindi")
    status, body, headers = await running.place_order(trip["trip_id"], phone="254700001032")
    assert status == 202
    await running.final_order(body["order_id"])
    await traced_document(store_url, body["order_id"], "release_seats")

    code, out = await safiri_trace(store_url, "--failed", "--since", "10m")

    assert code == 0, out
    assert body["order_id"] in out
    assert headers["X-Trace-Id"] in out


async def test_a_refused_purchase_is_listed_as_refused_and_never_as_failed(
    stored: tuple[Running, str],
) -> None:
    """An unknown trip: ticketing says no (4xx) and so does the gateway. The trace is no
    failed order but a refused one, ``hold_seats`` said no; and no trace without an order
    (the suite's start-up probes) is listed as a failed order."""
    running, store_url = stored
    status, _, headers = await running.place_order(str(uuid.uuid4()))
    assert 400 <= status < 500
    trace_id = headers["X-Trace-Id"]

    async def whole() -> bool:
        async with running.http.get(f"{store_url}/api/traces/{trace_id}") as response:
            names = {s["name"] for s in (await response.json()).get("spans", [])}
        return {"POST /api/v1/orders", "hold_seats"} <= names

    await eventually(whole, timeout=30, interval=0.2, what="the refused purchase's trace")
    code, out = await safiri_trace(store_url, "--failed", "--since", "10m", "--json")
    assert code == 0, out
    failed = json.loads(out)["traces"]
    assert trace_id not in {t["trace_id"] for t in failed}
    assert all(t["purchase"] and t["outcome"] == "failed" for t in failed), failed
    code, out = await safiri_trace(store_url, "--refused", "--since", "10m", "--json")
    assert code == 0, out
    (listed,) = [t for t in json.loads(out)["traces"] if t["trace_id"] == trace_id]
    assert (listed["outcome"], listed["root_cause"], listed["purchase"]) == ("refused", None, True)
    assert listed["refusal"]["name"] == "hold_seats"


async def test_a_successful_purchase_is_queryable_soon_and_has_no_orphan_spans(
    stored: tuple[Running, str],
) -> None:
    running, store_url = stored
    trip = await running.next_trip("Nakuru", "Nairobi")
    status, body, _ = await running.place_order(trip["trip_id"])
    answered = time.monotonic()
    assert status == 202

    async def queryable() -> bool:
        code, _ = await safiri_trace(store_url, body["order_id"], "--json")
        return code == 0

    await eventually(queryable, timeout=30, interval=0.1, what="the trace to be queryable")
    first_seen = time.monotonic() - answered
    document = await traced_document(store_url, body["order_id"], "confirm_order")
    complete = time.monotonic() - answered

    ids = {span["span_id"] for span in document["spans"]}
    orphans = [s for s in document["spans"] if s["parent_span_id"] not in (None, "", *ids)]
    assert orphans == []
    roots = [s for s in document["spans"] if not s["parent_span_id"]]
    assert [(r["service"], r["name"]) for r in roots] == [("gateway", "POST /api/v1/orders")]
    print(
        f"\ntrace queryable {first_seen:.2f} s after the gateway answered; "
        f"complete with every service's logs after {complete:.2f} s"
    )
    assert first_seen <= 5.0
