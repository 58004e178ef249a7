"""One robust, named connection per service; channels with confirms and explicit prefetch."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

__all__ = ["connect", "consumer_channel", "publisher_channel"]


async def connect(url: str, connection_name: str) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(
        url, client_properties={"connection_name": connection_name}, timeout=10
    )


async def publisher_channel(connection: AbstractRobustConnection) -> AbstractChannel:
    """Publisher confirms on; an unroutable ``mandatory`` message raises instead of vanishing."""
    return await connection.channel(publisher_confirms=True, on_return_raises=True)


async def consumer_channel(
    connection: AbstractRobustConnection, prefetch_count: int
) -> AbstractChannel:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch_count)
    return channel
