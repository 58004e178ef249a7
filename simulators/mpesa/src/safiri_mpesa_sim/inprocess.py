"""Run the simulator inside a test's own event loop, on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from safiri_telemetry import Telemetry

from .app import create_app
from .appkeys import FAULTS, LEDGER, NOTIFIER
from .callbacks import RetryPolicy
from .faults import FaultState
from .ledger import Ledger
from .notifier import ResultNotifier
from .settings import Settings

__all__ = ["RunningSimulator", "run_in_process"]


@dataclass(frozen=True)
class RunningSimulator:
    base_url: str
    app: web.Application

    @property
    def ledger(self) -> Ledger:
        return self.app[LEDGER]

    @property
    def notifier(self) -> ResultNotifier:
        return self.app[NOTIFIER]

    @property
    def faults(self) -> FaultState:
        return self.app[FAULTS]


@asynccontextmanager
async def run_in_process(
    settings: Settings,
    telemetry: Telemetry,
    *,
    retry: RetryPolicy | None = None,
    faults: FaultState | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Serve ``create_app(settings, telemetry)`` on 127.0.0.1 (port 0: the OS picks one).

    ``settings.host`` and ``settings.port`` are ignored so parallel test runs never collide.
    On exit the app's cleanup runs, so no callback task outlives the block.
    """
    app = create_app(settings, telemetry, retry=retry, faults=faults)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield RunningSimulator(f"http://{host}:{port}", app)
    finally:
        await runner.cleanup()
