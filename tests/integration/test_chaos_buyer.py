"""The chaos buyer classifies every answer the way the history needs, including the ones that
are not the gateway's JSON (a proxy's error page): the status and a readable error are kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from safiri_chaos.gateway import Buyer
from safiri_chaos.history import HistoryRecorder
from tests.conftest import serving

BAD_GATEWAY_PAGE = "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n"  # noqa: E501
ANSWERS = {
    "accepted": (202, '{"order_id": "o-1", "status": "PENDING"}', "application/json"),
    "proxy-502": (502, BAD_GATEWAY_PAGE, "text/html"),
    "refused": (409, '{"title": "Seats unavailable", "status": 409}', "application/problem+json"),
    "accepted-blank": (202, "", "application/json"),
    "key-in-flight": (
        409,
        '{"type": "https://safiri.dev/problems/idempotency-key-in-flight",'
        ' "title": "Request in progress", "status": 409}',
        "application/problem+json",
    ),
}


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[str]:
    async def orders(request: web.Request) -> web.Response:
        status, text, content_type = ANSWERS[request.headers["X-Answer"]]
        return web.Response(status=status, text=text, content_type=content_type)

    app = web.Application()
    app.router.add_post("/api/v1/orders", orders)
    async with serving(app) as base:
        yield base


@pytest.mark.parametrize(
    ("answer", "op_type", "status", "error"),
    [
        ("accepted", "ok", None, None),
        ("proxy-502", "unknown", 502, "<html><body><h1>502 Bad Gateway</h1> The server"),
        ("refused", "fail", 409, "Seats unavailable"),
        ("accepted-blank", "unknown", 202, ""),
        ("key-in-flight", "unknown", 409, "Request in progress"),
    ],
)
async def test_each_answer_is_recorded_with_its_status(
    gateway: str, tmp_path: Path, answer: str, op_type: str, status: int | None, error: str | None
) -> None:
    history = HistoryRecorder(tmp_path / "history.jsonl")
    async with aiohttp.ClientSession(headers={"X-Answer": answer}) as http:
        op = await Buyer(http, gateway, "key", history).purchase("p0", "trip-1")
    assert (op.type, op.status) == (op_type, status)
    if error is None:
        assert op.order_id == "o-1"
    else:
        assert (op.error or "").startswith(error)
