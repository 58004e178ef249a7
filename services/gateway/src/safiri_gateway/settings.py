"""The gateway's settings, read once at start-up from ``SAFIRI_*`` variables."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from safiri_flags import DEFAULT_FLAGS_FILE, flag_file_problem
from safiri_web import EnvReader, Secret

__all__ = [
    "DEFAULT_MAINTENANCE_RETRY_AFTER_SECONDS",
    "DEFAULT_METRICS_NETWORKS",
    "IDEMPOTENCY_LOCK_SECONDS",
    "Settings",
]

# How long a request may hold its Idempotency-Key before another may take it over.
IDEMPOTENCY_LOCK_SECONDS = 30.0
# What a refused order's Retry-After says while maintenance mode is on (a provider outage's
# maintenance lasts minutes); at most a day.
DEFAULT_MAINTENANCE_RETRY_AFTER_SECONDS = 120

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Loopback and the private ranges: Prometheus on the machine, in the cluster, on compose's network.
DEFAULT_METRICS_NETWORKS = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


def _networks(raw: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    ticketing_url: str
    database_url: str
    api_keys: tuple[Secret, ...]
    upstream_timeout: float
    rate_limit_per_second: float = 200.0
    rate_limit_burst: int = 400
    # Where the limits are counted: in the process, or shared by every replica in Redis.
    rate_limit_storage: str = "async+memory://"
    # Who may read /metrics on the public port (CIDRs); everyone else gets 403.
    metrics_allowed_networks: tuple[Network, ...] = _networks(DEFAULT_METRICS_NETWORKS)
    # The feature-flag file in flagd's format (re-read within seconds of an edit).
    flags_file: str = DEFAULT_FLAGS_FILE
    # Retry-After of the 503 new orders get while the maintenance-mode flag is on.
    maintenance_retry_after_seconds: int = DEFAULT_MAINTENANCE_RETRY_AFTER_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        r = EnvReader(env)
        ticketing_port = r.port("SAFIRI_TICKETING_PORT", 8081)
        settings = cls(
            host=r.text("SAFIRI_GATEWAY_HOST", "127.0.0.1"),
            port=r.port("SAFIRI_GATEWAY_PORT", 8080),
            ticketing_url=r.url(
                "SAFIRI_TICKETING_URL", f"http://127.0.0.1:{ticketing_port}", ("http", "https")
            ),
            database_url=r.url(
                "SAFIRI_GATEWAY_DATABASE_URL",
                "postgresql://postgres@127.0.0.1:5432/safiri_gateway",
                ("postgresql", "postgres"),
            ),
            api_keys=_api_keys(r),
            # Kept well under the idempotency lock, so a key is never taken over while the
            # request holding it is still waiting for ticketing.
            upstream_timeout=r.number(
                "SAFIRI_GATEWAY_UPSTREAM_TIMEOUT",
                3.0,
                low=0.05,
                high=IDEMPOTENCY_LOCK_SECONDS / 2,
            ),
            # Per API key; 0 turns the limit off.
            rate_limit_per_second=r.number(
                "SAFIRI_RATE_LIMIT_PER_SECOND", 200.0, low=0.0, high=1_000_000.0
            ),
            rate_limit_burst=r.integer("SAFIRI_RATE_LIMIT_BURST", 400, low=1, high=1_000_000),
            rate_limit_storage=r.text("SAFIRI_RATE_LIMIT_STORAGE", "async+memory://"),
            metrics_allowed_networks=_metrics_networks(r),
            flags_file=r.text("SAFIRI_FLAGS_FILE", DEFAULT_FLAGS_FILE),
            maintenance_retry_after_seconds=r.integer(
                "SAFIRI_MAINTENANCE_RETRY_AFTER_SECONDS",
                DEFAULT_MAINTENANCE_RETRY_AFTER_SECONDS,
                low=1,
                high=86_400,
            ),
        )
        if problem := flag_file_problem(settings.flags_file):
            r.errors.append(f"SAFIRI_FLAGS_FILE: {problem}")
        if not settings.rate_limit_storage.startswith(("async+memory://", "async+redis")):
            r.errors.append(
                f"SAFIRI_RATE_LIMIT_STORAGE={settings.rate_limit_storage!r} is not"
                " async+memory:// or an async+redis://host:port URI"
            )
        r.check()
        return settings


def _metrics_networks(r: EnvReader) -> tuple[Network, ...]:
    raw = r.text("SAFIRI_METRICS_ALLOWED_NETWORKS", DEFAULT_METRICS_NETWORKS)
    try:
        return _networks(raw)
    except ValueError as exc:
        r.errors.append(f"SAFIRI_METRICS_ALLOWED_NETWORKS={raw!r} is not a list of CIDRs ({exc})")
        return ()


def _api_keys(r: EnvReader) -> tuple[Secret, ...]:
    raw = r.env.get("SAFIRI_API_KEYS", "")
    keys = tuple(Secret(key.strip()) for key in raw.split(",") if key.strip())
    if not keys:
        r.errors.append("SAFIRI_API_KEYS is not set: give the accepted API keys, comma-separated")
    # Keys travel in an HTTP header; anything else could never be presented, so it is a typo.
    for position, key in enumerate(keys, start=1):
        if not key.value.isascii() or not key.value.isprintable() or " " in key.value:
            r.errors.append(f"SAFIRI_API_KEYS key #{position} has spaces or non-ASCII characters")
    return keys
