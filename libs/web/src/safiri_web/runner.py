"""Run one service until SIGINT/SIGTERM, exiting 2 with a clear message on bad settings."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from safiri_telemetry import ConfigError

__all__ = ["run_service"]


def run_service(build: Callable[[], Awaitable[web.Application]], host: str, port: int) -> None:
    """Serve the app built by ``build``; aiohttp's own handling shuts it down cleanly."""
    web.run_app(
        build(),
        host=host,
        port=port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
        handle_signals=True,
    )


def exit_on_bad_settings(error: ConfigError | ValueError) -> None:
    print(f"safiri: {error}", file=sys.stderr)
    raise SystemExit(2)
