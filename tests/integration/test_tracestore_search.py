"""The trace UI's search on a real store: spans from the SDK's OTLP exporter, a SQLite file.

One failed purchase, one refused purchase and one failing /readyz probe are exported; the
index finds each by id, attribute, service, outcome, duration and time window.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from safiri_tracestore import running_store
from safiri_tracestore.database import Database
from safiri_tracestore.database import Search as Narrowing
from safiri_tracestore.schema import connect
from tests.conftest import eventually
from tests.integration.test_tracestore_database import query_plans, row
from tests.integration.test_tracestore_scenario import (
    FAILURE,
    Purchase,
    export_failed_purchase,
    export_readyz_probe,
    export_refused_purchase,
)

pytestmark = pytest.mark.integration

EVIL = '<script>alert("x")</script>'


@dataclass(frozen=True)
class Store:
    url: str
    http: aiohttp.ClientSession
    purchase: Purchase
    refused: str
    probe: str
    started_ns: int

    async def index(self, **params: str) -> str:
        async with self.http.get(f"{self.url}/", params=params) as response:
            assert response.status == 200, await response.text()
            return await response.text()

    async def listed(self, **params: str) -> set[str]:
        html = await self.index(**params)
        return {t for t in (self.purchase.trace_id, self.refused, self.probe) if t in html}

    async def redirect(self, path: str, **params: str) -> str:
        async with self.http.get(
            f"{self.url}{path}", params=params, allow_redirects=False
        ) as response:
            assert response.status == 302, (response.status, await response.text())
            return response.headers["Location"]


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    started = time.time_ns()
    async with running_store(path=tmp_path / "t.sqlite3") as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)
        refused = await export_refused_purchase(url)
        probe = await export_readyz_probe(url)

        async def stored() -> bool:
            async with http.get(f"{url}/api/traces", params={"limit": "10"}) as response:
                listed = {t["trace_id"]: t["span_count"] for t in (await response.json())["traces"]}
            return listed.get(purchase.trace_id) == 15 and refused in listed and probe in listed

        await eventually(stored, timeout=10, what="three traces stored")
        yield Store(url, http, purchase, refused, probe, started)


async def test_an_order_id_or_a_trace_id_goes_straight_to_the_trace(store: Store) -> None:
    order, trace = store.purchase.order_id, store.purchase.trace_id
    assert await store.redirect("/", order=order) == f"/orders/{order}"
    assert await store.redirect("/", q=f" {order.upper()} ") == f"/orders/{order}"
    assert await store.redirect("/", q=trace) == f"/traces/{trace}"
    assert await store.redirect("/", trace=trace) == f"/traces/{trace}"
    assert await store.redirect(f"/traces/{order}") == f"/orders/{order}"
    async with store.http.get(f"{store.url}/traces/{order}") as response:
        assert response.status == 200 and response.url.path == f"/orders/{order}"
        assert f"root cause: payment → handle_callback: {FAILURE}" in await response.text()


async def test_the_list_links_each_order_to_its_trace(store: Store) -> None:
    order = store.purchase.order_id
    html = await store.index()
    assert f'<a href="/orders/{order}"><code>{order}</code></a>' in html
    async with store.http.get(f"{store.url}/orders/{order}") as response:
        page = await response.text()
    assert "<code>result_code=1037</code>" in page
    assert "<code>phone=&quot;2547****0037&quot;</code>" in page


async def test_any_safiri_attribute_finds_the_traces_whose_spans_carry_it(store: Store) -> None:
    everything = {store.purchase.trace_id, store.refused, store.probe}
    assert await store.listed() == everything
    found = await store.listed(q="safiri.payment.result_code=1037")
    assert found == {store.purchase.trace_id}
    assert await store.listed(q="safiri.payment.result_code=1032") == set()
    both = f"safiri.payment.result_code=1037 safiri.order.id={store.purchase.order_id}"
    assert await store.listed(q=both) == {store.purchase.trace_id}
    async with store.http.get(
        f"{store.url}/api/traces", params={"q": "safiri.seat_count=2"}
    ) as response:
        assert [t["trace_id"] for t in (await response.json())["traces"]] == [store.refused]


async def test_service_outcome_and_duration_filters(store: Store) -> None:
    assert await store.listed(service="mpesa-simulator") == {store.purchase.trace_id}
    assert await store.listed(service="ticketing") == set(await store.listed())
    assert await store.listed(outcome="failed") == {store.purchase.trace_id}
    assert await store.listed(outcome="failed", purchases="false") == {store.probe}
    assert await store.listed(outcome="refused") == {store.refused}
    assert await store.listed(outcome="succeeded", purchases="any") == set()
    assert await store.listed(service="ticketing", outcome="refused") == {store.refused}
    assert await store.listed(min_duration="1h") == set()
    assert await store.listed(min_duration="0ms") == set(await store.listed())
    assert await store.listed(service="gateway", min_duration="1h") == set()


async def test_the_time_window_is_from_to_or_the_last_minutes(store: Store) -> None:
    def iso(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()

    before, after = store.started_ns - 60 * 10**9, time.time_ns() + 60 * 10**9
    assert await store.listed(to=iso(before)) == set()
    assert await store.listed(**{"from": iso(before), "to": iso(after)}) == set(
        await store.listed()
    )
    assert await store.listed(to=iso(before), since="1d") == set()
    assert await store.listed(**{"from": iso(after)}) == set()
    found = await store.listed(q="safiri.payment.result_code=1037", to=iso(before))
    assert found == set()
    html = await store.index(since="30m")
    assert "last 1800 s" in html


async def test_a_bad_search_is_explained_and_echoed_escaped(store: Store) -> None:
    async with store.http.get(f"{store.url}/", params={"q": EVIL, "since": EVIL}) as response:
        assert response.status == 400
        html = await response.text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "is not a duration" in html or "is not an order id" in html
    assert 'name="q"' in html  # the form stays, to be corrected


def test_the_searches_use_the_indexes(tmp_path: Path) -> None:
    db = Database(connect(tmp_path / "t.sqlite3"))
    now = time.time_ns()
    db.add([row("a", "1", now, status=2)], [])
    narrow = Narrowing(now + 1, "payment", (("safiri.order.id", "x"),), 10)
    plans = query_plans(
        db,
        lambda: db.recent_trace_ids(0, 10, search=narrow),
        lambda: db.recent_trace_ids(0, 10, search=Narrowing(service="payment")),
        lambda: db.services(),
    )
    for index in ("span_attributes", "spans_by_service", "sqlite_autoindex_spans_1"):
        assert index in plans, plans
    assert "SCAN spans\n" not in plans + "\n" and "SCAN s\n" not in plans + "\n", plans
    db.close()


def test_a_store_from_before_the_search_is_indexed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    db = Database(connect(path))
    db.add([row("a", "1", time.time_ns())], [])
    with db.conn:  # as the file was before span_attributes existed
        db.conn.execute("DELETE FROM span_attributes")
        db.conn.execute("PRAGMA user_version = 0")
    db.close()
    db = Database(connect(path))
    order = (("safiri.order.id", "56d8b732-1c4e-4f7a-9d1e-0a2b3c4d5e6f"),)
    assert db.recent_trace_ids(0, 10, search=Narrowing(attributes=order)) == ["a" * 32]
    db.prune(time.time_ns(), max_rows=1000)  # the attributes go with their spans
    assert db.conn.execute("SELECT COUNT(*) FROM span_attributes").fetchone() == (0,)
    db.close()
