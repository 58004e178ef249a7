"""``python -m safiri_tracestore``: run the embedded trace store until SIGINT or SIGTERM."""

from __future__ import annotations

import os

from aiohttp import web
from loguru import logger

from safiri_telemetry import ConfigError, Telemetry
from safiri_web import exit_on_bad_settings, log_level

from .app import create_app
from .settings import StoreSettings


def main() -> None:
    try:
        settings = StoreSettings.from_env()
        # JSON logs like every Safiri process, but no tracing: the store's own spans would
        # be exported to itself, one export per export.
        Telemetry.setup(
            "trace-store",
            env={**os.environ, "OTEL_SDK_DISABLED": "true"},
            install_global=False,
            log_level=log_level(),
        )
    except ConfigError as exc:
        exit_on_bad_settings(exc)
        return
    logger.bind(path=str(settings.path.resolve()), port=settings.port).info("trace store starting")
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        auto_decompress=False,  # the receiver inflates gzip itself, with a bound
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
