"""Run one service until SIGINT/SIGTERM, exiting 2 with a clear message on bad settings."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from loguru import logger

from safiri_telemetry import ConfigError

__all__ = ["DEFAULT_EVENT_LOOP", "EVENT_LOOPS", "event_loop", "run_service"]

# uvloop by default: the same purchases cost the services less CPU on it than on asyncio's own
# loop (bench/results/uvloop_ab.json, bench/results/levers.md). SAFIRI_EVENT_LOOP=asyncio is
# the way back, e.g. to rule the loop out while chasing a bug.
EVENT_LOOPS = ("asyncio", "uvloop")
DEFAULT_EVENT_LOOP = "uvloop"


def event_loop(
    env: Mapping[str, str] | None = None,
) -> tuple[str, asyncio.AbstractEventLoop]:
    """A new loop of the kind ``SAFIRI_EVENT_LOOP`` names (default uvloop), and its name."""
    raw = (os.environ if env is None else env).get("SAFIRI_EVENT_LOOP", "")
    name = raw.strip().lower() or DEFAULT_EVENT_LOOP
    if name not in EVENT_LOOPS:
        raise ConfigError(f"SAFIRI_EVENT_LOOP={raw!r} is not one of {', '.join(EVENT_LOOPS)}")
    if name == "uvloop":
        import uvloop

        return name, uvloop.new_event_loop()
    return name, asyncio.new_event_loop()


def _running_loop_name() -> str:
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"


def run_service(build: Callable[[], Awaitable[web.Application]], host: str, port: int) -> None:
    """Serve the app built by ``build`` on the loop SAFIRI_EVENT_LOOP names; aiohttp's own
    handling shuts it down cleanly. Exits 2 on a bad SAFIRI_EVENT_LOOP."""
    try:
        _, loop = event_loop()
    except ConfigError as error:
        exit_on_bad_settings(error)
        return

    async def started() -> web.Application:
        app = await build()
        # Said from inside the loop that serves: the loop asked for is the loop in use.
        logger.bind(event_loop=_running_loop_name(), host=host, port=port).info("service starting")
        return app

    web.run_app(
        started(),
        host=host,
        port=port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
        handle_signals=True,
        loop=loop,
    )


def exit_on_bad_settings(error: ConfigError | ValueError) -> None:
    print(f"safiri: {error}", file=sys.stderr)
    raise SystemExit(2)
