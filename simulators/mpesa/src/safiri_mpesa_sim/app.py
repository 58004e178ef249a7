"""The app factory: wires the ledger, tokens, faults, routes and the background callback tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from safiri_telemetry import Telemetry
from safiri_web import add_health_routes, problem_middleware

from .appkeys import FAULTS, LEDGER, METRICS, NOTIFIER, SETTINGS, TOKENS
from .callbacks import RetryPolicy
from .entrypoints import admin, oauth, pull, stk
from .entrypoints.daraja_faults import daraja_faults
from .faults import FaultState
from .ledger import Ledger
from .metrics import simulator_metrics
from .notifier import ResultNotifier
from .settings import Settings
from .tokens import AccessTokens

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    telemetry: Telemetry,
    *,
    retry: RetryPolicy | None = None,
    faults: FaultState | None = None,
) -> web.Application:
    """The simulator as an aiohttp application; the caller owns (and shuts down) ``telemetry``.

    ``faults`` starts healthy; tests pass their own to control the clock a flap is timed by.
    """
    # Faults go innermost so a faulted Daraja answer is still traced, measured and logged.
    app = web.Application(middlewares=[telemetry.middleware, problem_middleware, daraja_faults])
    app[SETTINGS] = settings
    app[LEDGER] = Ledger(settings.ledger_path)
    app[TOKENS] = AccessTokens()
    app[METRICS] = simulator_metrics(telemetry.registry)
    app[FAULTS] = faults if faults is not None else FaultState()
    app[METRICS].show_faults(app[FAULTS].current)
    app.cleanup_ctx.append(partial(_callback_tasks, telemetry, retry or RetryPolicy()))
    app.router.add_routes(oauth.routes)
    app.router.add_routes(stk.routes)
    app.router.add_routes(pull.routes)
    app.router.add_routes(admin.routes)
    app.router.add_get("/metrics", telemetry.metrics_handler)
    # The simulator depends on nothing, so it is ready whenever it is alive.
    add_health_routes(app, {})
    return app


async def _callback_tasks(
    telemetry: Telemetry, retry: RetryPolicy, app: web.Application
) -> AsyncIterator[None]:
    async with telemetry.client_session() as session:
        notifier = ResultNotifier(
            app[LEDGER], session, app[METRICS], app[SETTINGS].callback_delay, retry
        )
        app[NOTIFIER] = notifier
        yield
        # Tasks go first: a task still delivering needs the session it is about to lose.
        await notifier.aclose()
        app[LEDGER].close()
