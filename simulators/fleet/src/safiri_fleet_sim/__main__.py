"""``python -m safiri_fleet_sim``: report the fleet's positions until SIGINT or SIGTERM."""

from __future__ import annotations

from importlib.metadata import version

from aiohttp import web
from loguru import logger

from safiri_telemetry import ConfigError, Telemetry
from safiri_web import exit_on_bad_settings, log_level, run_service

from .app import create_app
from .settings import Settings

SERVICE_NAME = "fleet-simulator"


def main() -> None:
    try:
        settings = Settings.from_env()
        telemetry = Telemetry.setup(
            SERVICE_NAME, service_version=version("safiri-fleet-sim"), log_level=log_level()
        )
    except ConfigError as error:
        exit_on_bad_settings(error)
        return

    async def build() -> web.Application:
        app = create_app(settings, telemetry)
        logger.bind(host=settings.host, port=settings.port).info("fleet simulator starting")
        return app

    run_service(build, settings.host, settings.port)


if __name__ == "__main__":
    main()
