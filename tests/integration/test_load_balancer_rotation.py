"""The rolling restart waits for HAProxy to count a restarted replica UP before stopping the
next: a real HAProxy in front of one replica that answers and one that does not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from safiri_chaos.infrastructure import _balanced
from safiri_suite.cluster import HAProxyBackend, running_haproxy
from safiri_suite.ports import free_port
from tests.conftest import eventually, serving

Probe = Callable[[], Awaitable[bool]]


def _in_rotation(state: Path, service: str, replica: int, wanted: bool = True) -> Probe:
    async def probe() -> bool:
        return await asyncio.to_thread(_balanced, state, service, replica) is wanted

    return probe


async def test_a_replica_counts_as_back_only_once_the_balancer_has_it_up(tmp_path: Path) -> None:
    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ready")

    app = web.Application()
    app.router.add_get("/readyz", ready)
    up, down, listen, stats = free_port(), free_port(), free_port(), free_port()
    state = tmp_path / "suite.json"
    state.write_text(json.dumps({"processes": [{"role": "haproxy", "replica": 0, "port": stats}]}))
    async with serving(app, port=up):  # the port HAProxy is told about
        backend = HAProxyBackend("gateway", listen, (up, down))
        async with running_haproxy([backend], tmp_path / "haproxy", stats):
            await eventually(
                _in_rotation(state, "gateway", 0), timeout=10, what="the answering replica UP"
            )
            # The one that does not answer falls out of rotation (after its failed checks):
            # then it is not back, whatever its own /readyz would say.
            await eventually(
                _in_rotation(state, "gateway", 1, wanted=False),
                timeout=10,
                what="the dead replica out of rotation",
            )
            assert await asyncio.to_thread(_balanced, state, "gateway", 0)
            # A service this balancer does not front has no rotation to wait for.
            assert await asyncio.to_thread(_balanced, state, "ticketing", 0)
    # With HAProxy gone nothing tells that the replica is in rotation, so it is not taken as back.
    assert not _balanced(state, "gateway", 0)


def test_without_a_load_balancer_ready_is_enough(tmp_path: Path) -> None:
    state = tmp_path / "suite.json"
    state.write_text(json.dumps({"processes": [{"role": "gateway", "replica": 0, "port": 1}]}))
    assert _balanced(state, "gateway", 0)
