"""Active users: the distinct customers who placed an order in the last 5 minutes.

A customer is the phone that pays (the only identity a buyer has here: API keys are the
partners' apps, not people). It is never stored: the gateway keeps an HMAC-SHA256 of it, keyed
by a secret the database never sees (derived from the gateway's API keys), so the stored value
cannot be turned back into a number by hashing every phone, and each sighting is deleted once
it is older than the window.

The sightings live in the gateway's PostgreSQL, which every replica shares (cluster mode runs
two behind HAProxy): a customer served by both replicas is one customer, and every replica's
``active_users`` gauge reads the same number, so dashboards take ``max``, never ``sum``. A set
in each process would count per replica and double-count across them. Redis is there only in
cluster mode and only for the rate limits; PostgreSQL is always there.

``seen`` runs on the order path, bounded by a short timeout; if the store cannot take the
sighting the order goes on (logged and counted in ``errors``: active users is a dashboard
figure, not worth a failed purchase).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
from aiohttp import web
from loguru import logger
from prometheus_client import CollectorRegistry, Gauge

from safiri_web import Secret, database_pool

__all__ = [
    "ACTIVE_USERS",
    "SCHEMA",
    "WINDOW",
    "ActiveUsers",
    "MemorySightings",
    "PostgresSightings",
    "active_users_context",
    "active_users_gauge",
    "customer_key",
    "secret_from_api_keys",
]

WINDOW = timedelta(minutes=5)
REFRESH_SECONDS = 5.0
SEEN_TIMEOUT_SECONDS = 0.5

SCHEMA = """
CREATE TABLE IF NOT EXISTS customer_sightings (
    customer bytea PRIMARY KEY,
    last_seen timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_sightings_last_seen ON customer_sightings (last_seen);
"""


def customer_key(phone: str, secret: bytes) -> bytes:
    """The customer as stored: HMAC-SHA256 of the phone under ``secret``."""
    return hmac.new(secret, phone.encode(), hashlib.sha256).digest()


def secret_from_api_keys(keys: Iterable[Secret]) -> bytes:
    """The HMAC key: every replica has the same API keys; the database never sees them. A
    change of keys only restarts the 5-minute count."""
    joined = b"\x00".join(sorted(key.value.encode() for key in keys))
    return hashlib.sha256(b"safiri-active-users\x00" + joined).digest()


class SightingStore(Protocol):
    async def record(self, customer: bytes, at: datetime) -> None: ...

    async def count_since(self, since: datetime) -> int: ...

    async def forget_before(self, before: datetime) -> None: ...


class MemorySightings:
    """One process's sightings: the unit tests', and a gateway without a database (tests)."""

    def __init__(self) -> None:
        self.last_seen: dict[bytes, datetime] = {}

    async def record(self, customer: bytes, at: datetime) -> None:
        self.last_seen[customer] = max(at, self.last_seen.get(customer, at))

    async def count_since(self, since: datetime) -> int:
        return sum(1 for seen in self.last_seen.values() if seen >= since)

    async def forget_before(self, before: datetime) -> None:
        self.last_seen = {k: v for k, v in self.last_seen.items() if v >= before}


class PostgresSightings:
    """The sightings every replica shares, in the gateway's database (``customer_sightings``)."""

    def __init__(self, pool: asyncpg.Pool[Any], *, timeout: float = 5.0) -> None:
        self._pool = pool
        self._timeout = timeout

    async def record(self, customer: bytes, at: datetime) -> None:
        await self._pool.execute(
            "INSERT INTO customer_sightings AS s (customer, last_seen) VALUES ($1, $2)"
            " ON CONFLICT (customer) DO UPDATE SET last_seen = EXCLUDED.last_seen"
            " WHERE s.last_seen < EXCLUDED.last_seen",
            customer,
            at,
            timeout=self._timeout,
        )

    async def count_since(self, since: datetime) -> int:
        count = await self._pool.fetchval(
            "SELECT count(*) FROM customer_sightings WHERE last_seen >= $1",
            since,
            timeout=self._timeout,
        )
        return int(count or 0)

    async def forget_before(self, before: datetime) -> None:
        await self._pool.execute(
            "DELETE FROM customer_sightings WHERE last_seen < $1", before, timeout=self._timeout
        )


def active_users_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "active_users",
        "Distinct customers (paying phones) who placed an order in the last 5 minutes, counted"
        " across every gateway replica: each replica reports the same number (take the max).",
        registry=registry,
    )


def _now() -> datetime:
    return datetime.now(UTC)


class ActiveUsers:
    def __init__(
        self,
        store: SightingStore,
        gauge: Gauge,
        secret: bytes,
        clock: Callable[[], datetime] = _now,
        *,
        window: timedelta = WINDOW,
    ) -> None:
        self._store = store
        self._gauge = gauge
        self._secret = secret
        self._clock = clock
        self._window = window
        self.errors = 0

    async def seen(self, phone: str) -> None:
        """The customer paying with ``phone`` placed an order now (never raises)."""
        try:
            async with asyncio.timeout(SEEN_TIMEOUT_SECONDS):
                await self._store.record(customer_key(phone, self._secret), self._clock())
        except Exception as exc:
            self.errors += 1
            logger.bind(error=repr(exc)).warning("customer sighting not recorded")

    async def refresh(self) -> None:
        """Set the gauge from the shared store and forget sightings older than the window."""
        since = self._clock() - self._window
        self._gauge.set(await self._store.count_since(since))
        await self._store.forget_before(since)


ACTIVE_USERS = web.AppKey("active_users", ActiveUsers)


async def _refresh_forever(users: ActiveUsers, interval: float) -> None:
    while True:
        try:
            await users.refresh()
        except Exception as exc:
            logger.bind(error=repr(exc)).warning("active users not refreshed")
        await asyncio.sleep(interval)


def active_users_context(
    database_url: str | None,
    registry: CollectorRegistry,
    api_keys: Iterable[Secret],
    *,
    refresh_seconds: float = REFRESH_SECONDS,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that sets ``app[ACTIVE_USERS]`` and refreshes its gauge on a timer:
    sightings in ``database_url`` (a small pool of its own; the schema is the gateway's), or
    in the process when None (a gateway whose tests replace the database)."""
    secret = secret_from_api_keys(api_keys)

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            store: SightingStore = MemorySightings()
            if database_url is not None:
                pool = await stack.enter_async_context(
                    database_pool(database_url, min_size=1, max_size=2)
                )
                store = PostgresSightings(pool)
            gauge = active_users_gauge(registry)
            stack.callback(registry.unregister, gauge)
            app[ACTIVE_USERS] = ActiveUsers(store, gauge, secret)
            task = asyncio.create_task(_refresh_forever(app[ACTIVE_USERS], refresh_seconds))
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context
