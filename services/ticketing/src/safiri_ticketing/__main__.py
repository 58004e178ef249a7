"""``python -m safiri_ticketing``: serve until SIGINT or SIGTERM."""

from __future__ import annotations

from safiri_telemetry import ConfigError, Telemetry
from safiri_web import exit_on_bad_settings, log_level, run_service

from .bootstrap import create_app
from .settings import Settings


def main() -> None:
    try:
        settings = Settings.from_env()
        telemetry = Telemetry.setup("ticketing", log_level=log_level())
    except ConfigError as error:
        exit_on_bad_settings(error)
        return

    async def build():  # type: ignore[no-untyped-def]
        return create_app(settings, telemetry)

    run_service(build, settings.host, settings.port)


if __name__ == "__main__":
    main()
