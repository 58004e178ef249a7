"""The trace store's settings, read once from ``SAFIRI_TRACE_STORE_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from safiri_web import EnvReader

__all__ = ["DEFAULT_PATH", "StoreSettings"]

DEFAULT_PATH = Path("var/traces.sqlite3")


@dataclass(frozen=True)
class StoreSettings:
    host: str = "127.0.0.1"
    port: int = 4318  # OTLP/HTTP's standard port
    path: Path = DEFAULT_PATH  # relative paths are relative to the working directory
    retention_hours: float = 24.0
    max_spans: int = 1_000_000  # also the bound on stored log lines
    prune_interval_s: float = 60.0

    @property
    def retention_s(self) -> float:
        return self.retention_hours * 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreSettings:
        """Every bad value is named in one ``ConfigError``."""
        read = EnvReader(env)
        settings = cls(
            host=read.text("SAFIRI_TRACE_STORE_HOST", cls.host),
            port=read.port("SAFIRI_TRACE_STORE_PORT", cls.port),
            path=Path(read.text("SAFIRI_TRACE_STORE_PATH", str(DEFAULT_PATH))),
            retention_hours=read.number(
                "SAFIRI_TRACE_STORE_RETENTION_HOURS", cls.retention_hours, low=0.001, high=8760
            ),
            max_spans=read.integer(
                "SAFIRI_TRACE_STORE_MAX_SPANS", cls.max_spans, low=1, high=10**9
            ),
            prune_interval_s=read.number(
                "SAFIRI_TRACE_STORE_PRUNE_INTERVAL_SECONDS", cls.prune_interval_s, low=0.01
            ),
        )
        read.check()
        return settings
