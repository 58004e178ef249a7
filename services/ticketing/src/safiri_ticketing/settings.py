"""Ticketing's settings, read once at start-up from ``SAFIRI_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from safiri_web import EnvReader

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    database_url: str
    amqp_url: str
    hold_ttl_seconds: float
    sweep_interval_seconds: float
    seed_days: int
    prefetch: int
    db_pool_max: int
    queue_poll_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        r = EnvReader(env)
        settings = cls(
            host=r.text("SAFIRI_TICKETING_HOST", "127.0.0.1"),
            port=r.port("SAFIRI_TICKETING_PORT", 8081),
            database_url=r.url(
                "SAFIRI_TICKETING_DATABASE_URL",
                "postgresql://postgres@127.0.0.1:5432/safiri_ticketing",
                ("postgresql", "postgres"),
            ),
            amqp_url=r.url("SAFIRI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", ("amqp",)),
            hold_ttl_seconds=r.number("SAFIRI_HOLD_TTL_SECONDS", 300.0, low=1.0, high=86400.0),
            sweep_interval_seconds=r.number(
                "SAFIRI_SWEEP_INTERVAL_SECONDS", 5.0, low=0.1, high=3600.0
            ),
            seed_days=r.integer("SAFIRI_SEED_DAYS", 14, low=0, high=366),
            prefetch=r.integer("SAFIRI_TICKETING_PREFETCH", 32, low=1, high=1000),
            db_pool_max=r.integer("SAFIRI_TICKETING_DB_POOL_MAX", 10, low=2, high=200),
            queue_poll_seconds=r.number("SAFIRI_QUEUE_POLL_SECONDS", 5.0, low=0.05, high=3600.0),
        )
        r.check()
        return settings
