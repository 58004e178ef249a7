"""Loopback TCP proxies between a client under test and the real PostgreSQL or RabbitMQ.

``WireCounter`` counts PostgreSQL's round trips; ``PausableProxy`` can hold what RabbitMQ
sends (its publisher confirms). Both relay every byte unchanged; each sees what the server
sends before the client does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from safiri_web import database_pool

POSTGRES_PORT = 5432
RABBITMQ_PORT = 5672

READY_FOR_QUERY = ord("Z")


class Proxy:
    """A TCP proxy on a loopback port of its own to ``upstream_port`` on 127.0.0.1."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump
        await self._server.wait_closed()

    def from_server(self) -> Callable[[bytes], Awaitable[None]] | None:
        """What sees each chunk the server sends on one connection before it is passed on
        (called once a connection); None: nothing does."""
        return None

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        pumps = {
            asyncio.create_task(self._pump(client_r, server_w, None)),
            asyncio.create_task(self._pump(server_r, client_w, self.from_server())),
        }
        self._pumps |= pumps
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            self._pumps -= pumps
            for writer in (client_w, server_w):
                writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        see: Callable[[bytes], Awaitable[None]] | None,
    ) -> None:
        while chunk := await reader.read(65536):
            if see is not None:
                await see(chunk)
            writer.write(chunk)
            await writer.drain()


class WireCounter(Proxy):
    """A TCP proxy to PostgreSQL counting the round trips (ReadyForQuery messages) it relays."""

    def __init__(self) -> None:
        super().__init__(POSTGRES_PORT)
        self.round_trips = 0

    def from_server(self) -> Callable[[bytes], Awaitable[None]]:
        pending = b""

        async def count(chunk: bytes) -> None:
            # Backend messages: a type byte, then a length that counts itself (not the type).
            nonlocal pending
            pending += chunk
            while len(pending) >= 5:
                end = 1 + int.from_bytes(pending[1:5], "big")
                if len(pending) < end:
                    break
                if pending[0] == READY_FOR_QUERY:
                    self.round_trips += 1  # counted before the client can see it
                pending = pending[end:]

        return count


class PausableProxy(Proxy):
    """A TCP proxy to RabbitMQ that can hold what the broker sends (its publisher confirms)."""

    def __init__(self) -> None:
        super().__init__(RABBITMQ_PORT)
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def close(self) -> None:
        self.flowing.set()
        await super().close()

    def from_server(self) -> Callable[[bytes], Awaitable[None]]:
        async def hold(chunk: bytes) -> None:
            await self.flowing.wait()

        return hold


@contextlib.asynccontextmanager
async def counted_pool(url: str) -> AsyncIterator[tuple[WireCounter, asyncpg.Pool[Any]]]:
    """The services' own pool (no reset round trip on release) on ``url``'s database through a
    ``WireCounter``, with one connection: a warm-up prepares every statement on it, as in a
    running service."""
    counter = WireCounter()
    port = await counter.start()
    database = url.rsplit("/", 1)[1]
    pool = await database_pool(
        f"postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable",
        min_size=1,
        max_size=1,
    )
    assert pool is not None
    try:
        yield counter, pool
    finally:
        await pool.close()
        await counter.close()
