"""A background job that exactly one replica runs at a time, elected through PostgreSQL.

The replica holding a session advisory lock (``pg_try_advisory_lock``) on a connection of its
own runs the job; the others try to take the lock every ``retry_interval`` seconds. When the
holder dies (SIGKILL, a crash, a lost node) its connection closes, PostgreSQL ends its session
and frees the lock, and the next try of another replica takes it: the takeover bound is
``retry_interval`` plus the time the database needs to notice the closed socket (immediate
when the process dies; TCP keepalive when a whole node vanishes).

A holder that loses its lock connection stops running the job at once and tries again like
the others. Between the database ending a session and its holder noticing, one step may
overlap with the new holder's: the jobs elected here are idempotent per row (they lock the
rows they settle), so an overlap costs a duplicate provider query at worst, never a duplicate
effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from loguru import logger
from prometheus_client import Gauge

__all__ = ["SingleActive", "lock_key"]

_TRANSIENT = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (the same in every replica)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class SingleActive:
    """Runs ``step`` every ``interval`` seconds, only while this replica holds ``name``'s lock.

    ``active`` (a gauge, labelled by job) is 1 in the replica that runs the job and 0 in the
    others: across replicas ``sum by (job)`` must be 1.
    """

    def __init__(
        self,
        name: str,
        database_url: str,
        step: Callable[[], Awaitable[Any]],
        interval: float,
        *,
        active: Gauge | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self.name = name
        self._url = database_url
        self._step = step
        self._interval = interval
        self._retry = retry_interval
        self._active = active.labels(name) if active is not None else None
        self._conn: asyncpg.Connection[Any] | None = None
        self.holding = False

    async def run(self) -> None:
        """Until cancelled; failures of the step are logged, never fatal."""
        try:
            while True:
                if not await self._hold():
                    await asyncio.sleep(self._retry)
                    continue
                try:
                    await self._step()
                except Exception:
                    logger.bind(task=self.name).exception("background step failed")
                await asyncio.sleep(self._interval)
        finally:
            self._set(False)
            if self._conn is not None:
                with contextlib.suppress(*_TRANSIENT):
                    await self._conn.close(timeout=2)

    async def _hold(self) -> bool:
        """True while this replica holds the lock (taking it if it is free)."""
        if self.holding:
            try:
                assert self._conn is not None
                await self._conn.fetchval("SELECT 1", timeout=5)
                return True
            except Exception as exc:  # whatever it is, the lock is no longer known to be held
                # Not only _TRANSIENT: while PostgreSQL restarted under a running suite, asyncpg
                # raised InternalClientError ("another operation is in progress") here, and
                # letting it out ended the job for good.
                logger.bind(task=self.name, error=repr(exc)).warning(
                    "lost the connection holding the job's lock; no longer running it"
                )
                self._drop()
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._url, timeout=5)
            got = await self._conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", lock_key(self.name), timeout=5
            )
        except _TRANSIENT as exc:
            logger.bind(task=self.name, error=repr(exc)).debug("cannot try the job's lock yet")
            self._drop()
            return False
        except Exception as exc:  # as above: try again later, never end the job
            logger.bind(task=self.name, error=repr(exc)).warning("cannot try the job's lock")
            self._drop()
            return False
        if got:
            logger.bind(task=self.name).info("this replica now runs the job")
            self._set(True)
        return bool(got)

    def _drop(self) -> None:
        self._set(False)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
            self._conn = None

    def _set(self, holding: bool) -> None:
        self.holding = holding
        if self._active is not None:
            self._active.set(1 if holding else 0)
