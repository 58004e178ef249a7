"""libs/web's problem middleware: every error is problem+json, and a 405 still says Allow."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from safiri_web import problem_middleware

pytestmark = pytest.mark.unit


async def test_a_wrong_method_is_a_405_problem_that_names_the_allowed_methods() -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/things", hello)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answer = await client.post("/things")
        assert answer.status == 405
        assert answer.content_type == "application/problem+json"
        assert answer.headers["Allow"] == "GET, HEAD"
        assert (await answer.json())["status"] == 405
