"""The rolling restart waits for HAProxy to count a restarted replica UP before stopping the
next: a real HAProxy in front of one replica that answers and one that does not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from safiri.chaos.infrastructure import _balanced
from safiri.cluster import HAProxyBackend, running_haproxy
from safiri.ports import free_port


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_replica_counts_as_back_only_once_the_balancer_has_it_up(tmp_path: Path) -> None:
    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ready")

    app = web.Application()
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app)
    await runner.setup()
    up, down, listen, stats = free_port(), free_port(), free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", up).start()
    state = tmp_path / "suite.json"
    state.write_text(json.dumps({"processes": [{"role": "haproxy", "replica": 0, "port": stats}]}))
    try:
        backend = HAProxyBackend("gateway", listen, (up, down))
        async with running_haproxy([backend], tmp_path / "haproxy", stats):
            assert await _until(lambda: _balanced(state, "gateway", 0)), (
                "the answering replica never UP"
            )
            # The one that does not answer falls out of rotation (after its failed checks):
            # then it is not back, whatever its own /readyz would say.
            assert await _until(lambda: not _balanced(state, "gateway", 1)), (
                "a dead replica counted UP"
            )
            assert await asyncio.to_thread(_balanced, state, "gateway", 0)
            # A service this balancer does not front has no rotation to wait for.
            assert await asyncio.to_thread(_balanced, state, "ticketing", 0)
    finally:
        await runner.cleanup()
    # With HAProxy gone nothing tells that the replica is in rotation, so it is not taken as back.
    assert not _balanced(state, "gateway", 0)


def test_without_a_load_balancer_ready_is_enough(tmp_path: Path) -> None:
    state = tmp_path / "suite.json"
    state.write_text(json.dumps({"processes": [{"role": "gateway", "replica": 0, "port": 1}]}))
    assert _balanced(state, "gateway", 0)
