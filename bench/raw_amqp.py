"""Raw aio-pika on the broker Safiri uses, set up as Safiri sets it up; prints one JSON line.

    .venv/bin/python bench/raw_amqp.py AMQP_URL [--messages 20000] [--prefetch 32]

One process, one robust connection, two channels (as libs/messaging does): a publisher channel
with publisher confirms publishing persistent, ``mandatory`` messages to a durable topic
exchange, up to ``--window`` unconfirmed at a time (the outbox relay publishes its batch of 100
concurrently), and a consumer channel with ``--prefetch`` (Safiri's default, 32) consuming the
durable quorum queue bound to it with a manual ack per message. The rate is ``messages / (last
ack - first publish)``. Run on a vhost of its own: the queue and exchange are deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

EXCHANGE = "bench.events"
QUEUE = "bench.raw"
ROUTING_KEY = "payment.requested"
# A payload of the size of Safiri's payment.requested event.
PAYLOAD = {
    "order_id": "00000000-0000-0000-0000-000000000000",
    "trip_id": "00000000-0000-0000-0000-000000000000",
    "amount": 1500,
    "currency": "KES",
    "phone": "254712345678",
    "description": "Nairobi-Mombasa x1",
}


async def run(url: str, messages: int, prefetch: int, window: int) -> dict[str, float | int]:
    connection = await aio_pika.connect_robust(
        url, client_properties={"connection_name": "bench-raw"}, timeout=10
    )
    async with connection:
        publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=prefetch)
        exchange = await publisher.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await consumer.declare_queue(
            QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(EXCHANGE, routing_key=ROUTING_KEY)

        done = asyncio.get_running_loop().create_future()
        acked = 0
        last_ack = 0.0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal acked, last_ack
            json.loads(message.body)
            await message.ack()
            acked += 1
            if acked == messages:
                last_ack = time.perf_counter()
                done.set_result(None)

        tag = await queue.consume(on_message)
        body = json.dumps(PAYLOAD).encode()
        slots = asyncio.Semaphore(window)

        async def publish() -> None:
            try:
                await exchange.publish(
                    aio_pika.Message(
                        body=body,
                        message_id=str(uuid.uuid4()),
                        type=ROUTING_KEY,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        headers={},
                    ),
                    routing_key=ROUTING_KEY,
                    mandatory=True,
                    timeout=30,
                )
            finally:
                slots.release()

        first_publish = time.perf_counter()
        tasks = []
        for _ in range(messages):
            await slots.acquire()
            tasks.append(asyncio.create_task(publish()))
        await asyncio.gather(*tasks)
        published = time.perf_counter()
        await asyncio.wait_for(done, 120)
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await publisher.exchange_delete(EXCHANGE)
    elapsed = last_ack - first_publish
    return {
        "messages": messages,
        "prefetch": prefetch,
        "publish_window": window,
        "seconds": round(elapsed, 3),
        "publish_seconds": round(published - first_publish, 3),
        "msgs_per_second": round(messages / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=32)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.messages, args.prefetch, args.window))))


if __name__ == "__main__":
    main()
