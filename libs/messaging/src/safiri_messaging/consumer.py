"""Consuming events: one span per message, poison to the dead-letter queue, retries bounded.

A message that cannot be understood (not JSON, not an object, missing fields) is rejected
without requeue and lands in the queue's dead-letter queue at once. A message whose handling
fails for another reason is requeued; the quorum queue's delivery limit dead-letters it after a
few attempts, so one bad message never blocks the ones behind it. While the database is
unavailable (restarting, refusing connections) a message is first retried in place with
back-off, so an outage does not use up its delivery attempts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from loguru import logger

from safiri_telemetry import consume_span

from .metrics import MessagingMetrics

__all__ = ["Envelope", "PoisonMessage", "consume"]


class PoisonMessage(ValueError):
    """The message can never be processed; retrying would not help."""


@dataclass(frozen=True)
class Envelope:
    message_id: str
    routing_key: str
    payload: Mapping[str, Any]
    redelivered: bool

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> Envelope:
        if not message.message_id:
            raise PoisonMessage("message has no message_id")
        try:
            payload = json.loads(message.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoisonMessage(f"body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise PoisonMessage("body is not a JSON object")
        return cls(
            message_id=message.message_id,
            routing_key=message.routing_key or "",
            payload=payload,
            redelivered=bool(message.redelivered),
        )

    def field(self, name: str, kind: type | tuple[type, ...] = str) -> Any:
        """A required payload field of the given type, or ``PoisonMessage``."""
        value = self.payload.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise PoisonMessage(f"field {name!r} is missing or not {kind}")
        return value


Handler = Callable[[Envelope], Awaitable[None]]

# The database restarting, unreachable or refusing connections: not the message's fault.
UNAVAILABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
UNAVAILABLE_PATIENCE_SECONDS = 120.0


async def _handle_patiently(handler: Handler, envelope: Envelope) -> None:
    """``handler(envelope)``, retried in place with back-off while a dependency is unavailable.

    Requeued at once, a message would be redelivered within milliseconds and the quorum
    queue's delivery limit would dead-letter it in the first second of a database restart.
    Retrying here (handlers are idempotent: they are written for redelivery) spans the outage;
    past ``UNAVAILABLE_PATIENCE_SECONDS`` the error is raised and the message requeued.
    """
    deadline = perf_counter() + UNAVAILABLE_PATIENCE_SECONDS
    delay = 0.2
    while True:
        try:
            await handler(envelope)
            return
        except UNAVAILABLE as exc:
            if perf_counter() + delay > deadline:
                raise
            logger.bind(error=repr(exc), retry_in=delay).warning(
                "a dependency is unavailable; retrying the message in place"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


class InFlight:
    """The messages being handled right now, so that a shutdown can wait for them.

    On SIGTERM the consumer is cancelled first (nothing new arrives), then ``drain`` waits for
    the handlers already running: each finishes and is acknowledged, instead of being cut off
    and redelivered to another process (which for a payment would find its push sent and its
    answer lost).
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Until no handler runs (True), or ``timeout`` seconds have passed (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def consume(
    queue: AbstractQueue,
    handler: Handler,
    metrics: MessagingMetrics,
    in_flight: InFlight | None = None,
) -> str:
    """Start consuming ``queue``; returns the consumer tag. ``in_flight`` counts the messages
    being handled (for a graceful shutdown)."""
    name = queue.name
    tracked = in_flight or InFlight()
    # Every series this consumer can produce exists from the start, at 0: a rate() over it
    # reads 0, not "no data", until the first redelivery or dead letter.
    metrics.redelivered.labels(name)
    for outcome in ("ok", "retried", "dead_lettered"):
        metrics.consumed.labels(name, outcome)

    async def on_message(message: AbstractIncomingMessage) -> None:
        tracked.enter()
        try:
            await _on_message(message)
        finally:
            tracked.leave()

    async def _on_message(message: AbstractIncomingMessage) -> None:
        started = perf_counter()
        if message.redelivered:
            metrics.redelivered.labels(name).inc()
        headers = dict(message.headers or {})
        with consume_span(
            name,
            message.routing_key or "",
            message.message_id,
            headers,
            redelivered=bool(message.redelivered),
            exchange=message.exchange or "",
        ) as span:
            outcome = "ok"
            try:
                envelope = Envelope.from_message(message)
                with logger.contextualize(message_id=envelope.message_id, queue=name):
                    await _handle_patiently(handler, envelope)
                await message.ack()
            except PoisonMessage as exc:
                outcome = "dead_lettered"
                span.set_attribute("safiri.message.poison", str(exc))
                logger.bind(queue=name, message_id=message.message_id, reason=str(exc)).warning(
                    "poison message dead-lettered"
                )
                await message.reject(requeue=False)
            except Exception:
                outcome = "retried"
                logger.bind(queue=name, message_id=message.message_id).exception(
                    "message handling failed; requeued"
                )
                await message.reject(requeue=True)
            finally:
                metrics.consumed.labels(name, outcome).inc()
                metrics.process_duration.labels(name).observe(perf_counter() - started)

    return await queue.consume(on_message)
