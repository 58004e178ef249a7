"""``safiri trace --tempo URL`` against Tempo's HTTP API, served from recorded-format fixtures.

No real Tempo is reachable here (see tests/fixtures/tempo/README.md): a real aiohttp server on
loopback answers ``/api/traces/<id>`` and ``/api/search`` with bodies in Tempo's format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from multidict import MultiDict

from tests.conftest import serving
from tests.integration.test_tracestore_cli import safiri

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tempo"
FAILED_TRACE = "0a4c1e8f3b2d4c6e8f1a3b5c7d9e1f20"
FAILED_ORDER = "3f2a9c1e-7b4d-4e8a-9c2f-5d6e7f8a9b0c"
EXPIRED_TRACE = "5e1d9c7b3a2f4e6d8c0b1a2f3e4d5c6b"
EXPIRED_ORDER = "b7e4d2c1-0a9f-4b8e-8d7c-6e5f4a3b2c1d"
CAUSE = "payment → handle_callback: ResultCode 1037: DS timeout user cannot be reached"


class FakeTempo:
    def __init__(self) -> None:
        self.searches: list[MultiDict[str]] = []

    async def trace(self, request: web.Request) -> web.Response:
        path = FIXTURES / f"trace-{request.match_info['trace_id'].lower().zfill(32)}.json"
        if not path.exists():
            return web.Response(status=404, text="trace not found")
        return web.Response(text=path.read_text(), content_type="application/json")

    async def search(self, request: web.Request) -> web.Response:
        self.searches.append(MultiDict(request.query))
        q = request.query.get("q", "")
        name = "search-empty.json"
        if "span.safiri.order.id" in q and FAILED_ORDER in q:
            name = "search-by-order.json"
        elif "status = error" in q:
            name = "search-failed.json"
        return web.Response(text=(FIXTURES / name).read_text(), content_type="application/json")


@pytest_asyncio.fixture
async def tempo() -> AsyncIterator[tuple[str, FakeTempo]]:
    fake = FakeTempo()
    app = web.Application()
    app.router.add_get("/api/traces/{trace_id}", fake.trace)
    app.router.add_get("/api/search", fake.search)
    async with serving(app) as url:
        yield url, fake


async def test_an_order_id_is_found_with_traceql_and_drawn_from_tempo(
    tempo: tuple[str, FakeTempo],
) -> None:
    url, fake = tempo
    code, out, err = await safiri("trace", FAILED_ORDER, "--tempo", url)
    assert code == 0, err
    (search,) = fake.searches
    assert search["q"] == f'{{ span.safiri.order.id = "{FAILED_ORDER}" }}'
    assert int(search["end"]) - int(search["start"]) >= 86400
    lines = out.splitlines()
    assert lines[0].startswith(f"order {FAILED_ORDER} · trace {FAILED_TRACE} · 16 spans")
    assert lines[1].startswith("  gateway: POST /api/v1/orders")  # a mark is a span's own status
    for expected in ("mpesa-simulator: mpesa.deliver_callback", "ticketing: release_seats"):
        assert any(expected in line for line in lines)
    assert f"root cause: {CAUSE}" in lines
    assert f"search your log store for trace_id={FAILED_TRACE}" in out


async def test_a_trace_id_is_read_directly_and_json_parses(tempo: tuple[str, FakeTempo]) -> None:
    url, fake = tempo
    code, out, err = await safiri("trace", EXPIRED_TRACE, "--tempo", url, "--json")
    assert code == 0, err
    assert fake.searches == []
    document = json.loads(out)
    assert document["order_id"] == EXPIRED_ORDER
    assert document["root_cause"]["name"] == "expire_hold"
    assert document["logs"] == []


async def test_failed_lists_tempos_failing_traces_with_orders_and_causes(
    tempo: tuple[str, FakeTempo],
) -> None:
    url, fake = tempo
    code, out, err = await safiri("trace", "--failed", "--since", "30m", "--tempo", url)
    assert code == 0, err
    (search,) = fake.searches
    assert search["q"] == (
        '{ status = error || name = "expire_hold" } && { span.safiri.order.id =~ ".+"'
        ' || span.safiri.trip.id =~ ".+" || name = "POST /api/v1/orders" }'
    )
    assert int(search["end"]) - int(search["start"]) in (1800, 1801)
    assert FAILED_ORDER in out and FAILED_TRACE in out and CAUSE in out
    assert EXPIRED_ORDER in out and "ticketing → expire_hold" in out


async def test_an_order_tempo_does_not_know_is_not_found(tempo: tuple[str, FakeTempo]) -> None:
    url, _ = tempo
    code, _, err = await safiri("trace", EXPIRED_ORDER.replace("b", "c"), "--tempo", url)
    assert code == 1 and "Tempo found no trace" in err
