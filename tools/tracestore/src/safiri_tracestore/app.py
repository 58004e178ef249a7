"""The trace store process: OTLP/HTTP in, SQLite underneath, a query API and pages on top."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from loguru import logger

from safiri_web import add_health_routes

from .api import api_routes
from .ingest import ingest_routes
from .pages import page_routes
from .repository import TraceRepository
from .settings import DEFAULT_PATH, StoreSettings

__all__ = ["create_app", "running_store"]


async def _prune_forever(repository: TraceRepository, settings: StoreSettings) -> None:
    while True:
        try:
            removed = await repository.prune(settings.retention_s, settings.max_spans)
            if removed:
                logger.bind(removed=removed).info("trace store pruned old spans and logs")
        except Exception:
            logger.exception("trace store pruning failed; retrying at the next interval")
        await asyncio.sleep(settings.prune_interval_s)


def create_app(settings: StoreSettings) -> web.Application:
    """The store's app. Serve it with ``auto_decompress=False`` (``running_store`` does): the
    receiver inflates gzip bodies itself, with a bound against zip bombs."""
    repository = TraceRepository(settings.path)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await repository.open()
        pruning = asyncio.create_task(_prune_forever(repository, settings))
        try:
            yield
        finally:
            pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruning
            await repository.close()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.add_routes(ingest_routes(repository) + api_routes(repository) + page_routes(repository))
    add_health_routes(app, {"sqlite": repository.ping})
    return app


@asynccontextmanager
async def running_store(
    host: str = "127.0.0.1",
    port: int = 0,
    path: Path | str = DEFAULT_PATH,
    *,
    retention_hours: float = 24.0,
    max_spans: int = 1_000_000,
    prune_interval_s: float = 60.0,
) -> AsyncIterator[str]:
    """Serve a store on ``host:port`` (0: any free port) backed by ``path``; yields its URL."""
    settings = StoreSettings(host, port, Path(path), retention_hours, max_spans, prune_interval_s)
    runner = web.AppRunner(create_app(settings), auto_decompress=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
