"""``python -m safiri_mpesa_sim``: serve the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import version

from aiohttp import web
from loguru import logger

from safiri_telemetry import ConfigError, Telemetry
from safiri_web import exit_on_bad_settings, log_level, run_service

from .app import create_app
from .settings import Settings

SERVICE_NAME = "mpesa-simulator"


def main() -> None:
    try:
        settings = Settings.from_env()
        telemetry = Telemetry.setup(
            SERVICE_NAME, service_version=version("safiri-mpesa-sim"), log_level=log_level()
        )
    except ConfigError as error:
        exit_on_bad_settings(error)
        return

    async def own_telemetry(app: web.Application) -> AsyncIterator[None]:
        yield
        await telemetry.shutdown()

    async def build() -> web.Application:
        app = create_app(settings, telemetry)
        # Registered first so it runs last: spans from the final callbacks still get flushed.
        app.cleanup_ctx.insert(0, own_telemetry)
        logger.bind(host=settings.host, port=settings.port).info("mpesa simulator starting")
        return app

    run_service(build, settings.host, settings.port)


if __name__ == "__main__":
    main()
