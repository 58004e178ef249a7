"""How many messages each dead-letter queue holds, without taking any of them."""

from __future__ import annotations

import aio_pika
from aio_pika.exceptions import ChannelNotFoundEntity

__all__ = ["dead_letter_depths"]


async def dead_letter_depths(amqp_url: str, queues: tuple[str, ...]) -> dict[str, int | None]:
    """Each queue's depth by a passive declare, on plain (not robust) channels.

    A robust channel remembers declared queues to redeclare them on reconnect and answers a
    repeated passive declare from that cache; a plain channel asks the broker every time. A
    passive declare of a missing queue closes its channel, so each queue gets its own.
    """
    depths: dict[str, int | None] = {}
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "chaos"})
    async with connection:
        for name in queues:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count
            except ChannelNotFoundEntity:
                depths[name] = None
            finally:
                if not channel.is_closed:
                    await channel.close()
    return depths
