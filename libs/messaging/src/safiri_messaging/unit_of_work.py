"""A PostgreSQL unit of work whose events go to the outbox in the same transaction.

Services subclass it and add their repositories' queries on ``self.conn``. It rolls back
unless committed; ``commit`` first writes every emitted event to the outbox, so the state change
and the messages announcing it commit or vanish together.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from safiri_contracts import Message

from .inbox import first_delivery
from .outbox import add_to_outbox

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
        for message in self._events:
            await add_to_outbox(self._conn, message.routing_key, message.to_payload())
        await self._tx.commit()
        self._committed = True

    def emit(self, message: Message) -> None:
        """Queue a typed event; it reaches the outbox only if the unit of work commits."""
        self._events.append(message)

    async def first_delivery(self, message_id: str) -> bool:
        """``False`` if ``message_id`` was processed before (recorded in this transaction)."""
        return await first_delivery(self._conn, message_id)
