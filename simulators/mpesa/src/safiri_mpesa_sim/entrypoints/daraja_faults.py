"""Applies latency, outages and failed pushes to the Daraja endpoints (and nothing else).

The admin, health and metrics endpoints stay out of reach of every fault so an experiment can
always be watched and stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import trace

from ..appkeys import FAULTS, METRICS
from ..faults import Outage
from .daraja_protocol import SERVICE_UNAVAILABLE, service_unavailable
from .stk import STK_PUSH_PATH

__all__ = ["DARAJA_PATH_PREFIXES", "daraja_faults"]

DARAJA_PATH_PREFIXES = ("/oauth/", "/mpesa/", "/pulltransactions/")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Requests still being worked on after their client went away; held so none is collected.
_UNFINISHED: set[asyncio.Task[web.StreamResponse]] = set()


@web.middleware
async def daraja_faults(request: web.Request, handler: _Handler) -> web.StreamResponse:
    if not request.path.startswith(DARAJA_PATH_PREFIXES):
        return await handler(request)
    # A provider finishes what it was sent even when the client stops waiting (its timeout is
    # shorter than the latency): the push is taken, charged and called back all the same. The
    # work runs in its own task, so the client's disconnect cancels only the wait for it; the
    # body is read first (aiohttp keeps it), as it cannot be read once the client has gone.
    await request.read()
    work = asyncio.create_task(_with_faults(request, handler))
    _UNFINISHED.add(work)
    work.add_done_callback(_UNFINISHED.discard)
    return await asyncio.shield(work)


async def _with_faults(request: web.Request, handler: _Handler) -> web.StreamResponse:
    state = request.app[FAULTS]
    span = trace.get_current_span()
    latency = state.current.latency_seconds
    if latency > 0:
        span.set_attribute("safiri.mpesa_sim.fault.latency_seconds", latency)
        await asyncio.sleep(latency)
    # Read after the pause: the answer reflects the faults in force when it is given.
    outage = state.outage_now()
    if outage is Outage.REFUSE:
        span.set_attribute("safiri.mpesa_sim.fault", "refuse")
        return _drop_connection(request)
    if outage is Outage.HTTP_503:
        span.set_attribute("safiri.mpesa_sim.fault", "outage")
        return _unavailable(request)
    if request.path == STK_PUSH_PATH and state.push_fails():
        span.set_attribute("safiri.mpesa_sim.fault", "failure_ratio")
        return _unavailable(request)
    return await handler(request)


def _unavailable(request: web.Request) -> web.Response:
    if request.path == STK_PUSH_PATH:
        request.app[METRICS].stk_requests.labels(SERVICE_UNAVAILABLE).inc()
    return service_unavailable()


def _drop_connection(request: web.Request) -> web.Response:
    """Close the connection so the client gets no HTTP answer at all.

    The listening socket stays open (admin, health and metrics share it), so a client sees the
    server disconnect mid-request rather than "connection refused".
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    # aiohttp fails to write this to the closed transport and drops it quietly; it is returned
    # only so the server span, log line and HTTP metrics above still record the request.
    return web.Response(status=503)
