"""What every service serves and owns for operators: health, metrics, a flushed shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web

from safiri_telemetry import Telemetry

from .health import ReadinessCheck, add_health_routes

__all__ = ["add_operations_routes", "telemetry_lifetime"]


def add_operations_routes(
    app: web.Application, telemetry: Telemetry, checks: Mapping[str, ReadinessCheck]
) -> None:
    """``/healthz``, ``/readyz`` (running ``checks``) and ``/metrics``."""
    add_health_routes(app, checks)
    app.router.add_get("/metrics", telemetry.metrics_handler)


def telemetry_lifetime(
    telemetry: Telemetry,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that flushes telemetry on shutdown; put it first, so it runs last."""

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        yield
        await telemetry.shutdown()

    return lifetime
