"""What every service serves and owns for operators: health, metrics, a flushed shutdown."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from safiri_telemetry import Telemetry

from .health import ReadinessCheck, add_health_routes

__all__ = ["add_operations_routes"]


def add_operations_routes(
    app: web.Application, telemetry: Telemetry, checks: Mapping[str, ReadinessCheck]
) -> None:
    """``/healthz``, ``/readyz`` (running ``checks``), and the telemetry library's own wiring
    (``telemetry.instrument``: its middleware first, ``/metrics``, a flushed shutdown after
    the app's cleanup contexts have closed what they own)."""
    add_health_routes(app, checks)
    telemetry.instrument(app)
