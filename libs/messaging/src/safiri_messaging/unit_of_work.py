"""A PostgreSQL unit of work whose events go to the outbox in the same transaction.

Services subclass it and add their repositories' queries on ``self.conn``. It rolls back
unless committed; ``commit`` first writes every emitted event to the outbox (one statement), so the
state change and the messages announcing it commit or vanish together. A subclass may write them
sooner, in its last write's statement (``_with_events``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from safiri_contracts import Message

from .inbox import first_delivery
from .outbox import queue_statement

__all__ = ["OutboxUnitOfWork"]


class OutboxUnitOfWork:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self._events: list[Message] = []

    @property
    def conn(self) -> PoolConnectionProxy[Any]:
        """The connection of the open transaction."""
        return self._conn

    async def __aenter__(self) -> Self:
        self._conn: PoolConnectionProxy[Any] = await self._pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        self._committed = False
        self._events = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self._rollback(exc)
        finally:
            await self._pool.release(self._conn)

    async def _rollback(self, exc: BaseException | None) -> None:
        try:
            await self._tx.rollback()
        except asyncpg.InterfaceError:
            # An interrupted COMMIT (a cancelled task) leaves asyncpg's transaction failed, and
            # its rollback refuses. What interrupted it is the exception to let out, not this;
            # the pool resets the connection (or closes it) on release.
            if exc is None:
                raise

    async def commit(self) -> None:
        if self._events:
            # Every event in one statement, whatever their number.
            statement, args = self._with_events()
            await self._conn.execute(statement, *args)
        await self._tx.commit()
        self._committed = True

    def _with_events(self, ctes: str = "", args: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        """One statement of a subclass's data-modifying ``ctes`` (``$1`` to ``$len(args)``)
        that also writes the events emitted so far to the outbox, taking them (``commit``
        writes only those emitted after): the last write of a unit of work carries its events,
        one round trip fewer. The statement must be executed: the events are now its alone."""
        events, self._events = self._events, []
        messages = [(m.routing_key, m.to_payload()) for m in events]
        return queue_statement(messages, ctes=ctes, args=args)

    def emit(self, message: Message) -> None:
        """Queue a typed event; it reaches the outbox only if the unit of work commits."""
        self._events.append(message)

    async def first_delivery(self, message_id: str) -> bool:
        """``False`` if ``message_id`` was processed before (recorded in this transaction)."""
        return await first_delivery(self._conn, message_id)
