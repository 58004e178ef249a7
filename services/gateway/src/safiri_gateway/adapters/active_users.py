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

``seen`` runs on the order path and touches no database: it notes the customer in the
process, and the notes go to the store together, in one statement, every ``FLUSH_SECONDS``
(and before each refresh of the gauge, and at shutdown). A sighting per order was a round trip
per order on the order path (#16); batched, the store sees at most one write a second per
replica, whatever the rate. If the store cannot take a flush the notes are kept for the next
one (at most ``MAX_PENDING`` customers; beyond that new ones are dropped and counted) and the
orders go on: active users is a dashboard figure, not worth a failed purchase. A gateway that
dies loses at most its last second of sightings.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
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
FLUSH_SECONDS = 1.0
FLUSH_TIMEOUT_SECONDS = 2.0
MAX_PENDING = 100_000

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
    async def record_many(self, sightings: Mapping[bytes, datetime]) -> None: ...

    async def count_since(self, since: datetime) -> int: ...

    async def forget_before(self, before: datetime) -> None: ...


class MemorySightings:
    """One process's sightings: the unit tests', and a gateway without a database (tests)."""

    def __init__(self) -> None:
        self.last_seen: dict[bytes, datetime] = {}

    async def record_many(self, sightings: Mapping[bytes, datetime]) -> None:
        for customer, at in sightings.items():
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

    async def record_many(self, sightings: Mapping[bytes, datetime]) -> None:
        """Every sighting in one statement (each customer once: ON CONFLICT may not touch a row
        twice in one command)."""
        await self._pool.execute(
            "INSERT INTO customer_sightings AS s (customer, last_seen)"
            " SELECT * FROM unnest($1::bytea[], $2::timestamptz[])"
            " ON CONFLICT (customer) DO UPDATE SET last_seen = EXCLUDED.last_seen"
            " WHERE s.last_seen < EXCLUDED.last_seen",
            list(sightings),
            list(sightings.values()),
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
        self._pending: dict[bytes, datetime] = {}
        self.errors = 0
        self.dropped = 0

    def seen(self, phone: str) -> None:
        """The customer paying with ``phone`` placed an order now: noted in the process, for
        the next flush (never raises, never waits)."""
        customer = customer_key(phone, self._secret)
        if customer not in self._pending and len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending[customer] = self._clock()

    async def flush(self) -> None:
        """Write the sightings noted since the last flush in one statement; if the store cannot
        take them they are kept for the next flush (logged and counted, never raised)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_SECONDS):
                await self._store.record_many(batch)
        except Exception as exc:
            self.errors += 1
            for customer, at in batch.items():  # newer notes taken meanwhile win
                if len(self._pending) < MAX_PENDING or customer in self._pending:
                    self._pending[customer] = max(at, self._pending.get(customer, at))
            logger.bind(error=repr(exc), customers=len(batch)).warning(
                "customer sightings not recorded; kept for the next flush"
            )

    async def refresh(self) -> None:
        """Flush, then set the gauge from the shared store and forget sightings older than the
        window."""
        await self.flush()
        since = self._clock() - self._window
        self._gauge.set(await self._store.count_since(since))
        await self._store.forget_before(since)


ACTIVE_USERS = web.AppKey("active_users", ActiveUsers)


async def _refresh_forever(users: ActiveUsers, interval: float, flush_interval: float) -> None:
    loop = asyncio.get_running_loop()
    next_refresh = loop.time()
    while True:
        if loop.time() >= next_refresh:
            next_refresh = loop.time() + interval
            try:
                await users.refresh()
            except Exception as exc:
                logger.bind(error=repr(exc)).warning("active users not refreshed")
        else:
            await users.flush()
        await asyncio.sleep(min(flush_interval, max(0.0, next_refresh - loop.time())))


def active_users_context(
    database_url: str | None,
    registry: CollectorRegistry,
    api_keys: Iterable[Secret],
    *,
    refresh_seconds: float = REFRESH_SECONDS,
    flush_seconds: float = FLUSH_SECONDS,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that sets ``app[ACTIVE_USERS]`` and refreshes its gauge on a timer:
    sightings in ``database_url`` (a small pool of its own; the schema is the gateway's), or
    in the process when None (a gateway whose tests replace the database). What is noted and
    not yet flushed is flushed at shutdown."""
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
            users = app[ACTIVE_USERS]
            task = asyncio.create_task(_refresh_forever(users, refresh_seconds, flush_seconds))
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await users.flush()

    return context
