"""The fleet simulator's settings, read once at start-up from ``SAFIRI_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from safiri_web import EnvReader

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8091
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Where it learns which bus runs which trip now (ticketing's internal API).
    ticketing_url: str = "http://127.0.0.1:8081"
    # Each bus on the road reports every this many seconds: a few fixes a minute.
    fix_interval_seconds: float = 15.0
    # How often it asks ticketing again which trips are under way.
    trips_refresh_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        r = EnvReader(env)
        ticketing_port = r.port("SAFIRI_TICKETING_PORT", 8081)
        settings = cls(
            host=r.text("SAFIRI_FLEET_SIM_HOST", cls.host),
            port=r.port("SAFIRI_FLEET_SIM_PORT", cls.port),
            amqp_url=r.url("SAFIRI_AMQP_URL", cls.amqp_url, ("amqp", "amqps")),
            ticketing_url=r.url(
                "SAFIRI_TICKETING_URL", f"http://127.0.0.1:{ticketing_port}", ("http", "https")
            ),
            fix_interval_seconds=r.number(
                "SAFIRI_FLEET_SIM_FIX_INTERVAL_SECONDS",
                cls.fix_interval_seconds,
                low=0.05,
                high=3600.0,
            ),
            trips_refresh_seconds=r.number(
                "SAFIRI_FLEET_SIM_TRIPS_REFRESH_SECONDS",
                cls.trips_refresh_seconds,
                low=0.1,
                high=86400.0,
            ),
        )
        r.check()
        return settings
