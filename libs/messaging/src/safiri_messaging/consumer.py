"""Consuming events: one span per message, poison to the dead-letter queue, retries bounded.

A message that cannot be understood (not JSON, an unknown schema version, fields that do not
validate against its contract) is dead-lettered at once, with the reason in the
``x-safiri-dead-letter-reason`` header, and the consumer goes on with the next. A message whose
handling fails for another reason is requeued; the quorum queue's delivery limit dead-letters it
after a few attempts, so one bad message never blocks the ones behind it. While the database is
unavailable (restarting, refusing connections) a message is first retried in place with
back-off, so an outage does not use up its delivery attempts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from time import perf_counter
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from loguru import logger
from opentelemetry.trace import Status, StatusCode
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from safiri_contracts import DEAD_LETTER_REASON_HEADER, InvalidMessage, QueueSpec
from safiri_contracts import Message as ContractMessage
from safiri_telemetry import consume_span

from .metrics import MessagingMetrics

__all__ = ["Envelope", "PoisonMessage", "consume"]

PoisonMessage = InvalidMessage
"""The message can never be processed; retrying would not help (the contracts' error)."""


@dataclass(frozen=True)
class Envelope:
    """A delivered message: its id, routing key and raw body."""

    message_id: str
    routing_key: str
    body: bytes
    redelivered: bool

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> Envelope:
        if not message.message_id:
            raise PoisonMessage("message has no message_id")
        return cls(
            message_id=message.message_id,
            routing_key=message.routing_key or "",
            body=message.body,
            redelivered=bool(message.redelivered),
        )

    def decode(self, queue: QueueSpec) -> ContractMessage:
        """The typed message, by ``queue``'s contract, or ``PoisonMessage`` with the reason.

        The message id must be a UUID too: the inbox that makes a redelivery harmless keys on
        it (the outbox gives every message one), so any other id could never be recorded.
        """
        message = queue.decode(self.routing_key, self.body)
        try:
            uuid.UUID(self.message_id)
        except ValueError:
            raise PoisonMessage(
                f"message_id {self.message_id[:100]!r} is not a UUID (the inbox keys on it)"
            ) from None
        return message

    @cached_property
    def payload(self) -> Mapping[str, Any]:
        """The body as an untyped JSON object (for queues without a contract: tests, tools)."""
        try:
            payload = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoisonMessage(f"body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise PoisonMessage("body is not a JSON object")
        return payload

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

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.bind(error=repr(error), retry_in=round(wait, 3)).warning(
            "a dependency is unavailable; retrying the message in place"
        )

    retrying = AsyncRetrying(
        stop=stop_after_delay(UNAVAILABLE_PATIENCE_SECONDS),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        retry=retry_if_exception_type(UNAVAILABLE),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await handler(envelope)


async def _dead_letter(message: AbstractIncomingMessage, queue: AbstractQueue, reason: str) -> None:
    """Park ``message`` in ``queue``'s dead-letter queue with ``reason`` in its headers.

    RabbitMQ's own dead-lettering (a reject) cannot add a header, so the copy is published to
    the dead-letter queue (publisher-confirmed) and then the original acknowledged; should that
    publish fail, the original is rejected and the broker dead-letters it without the reason.
    """
    headers = dict(message.headers or {})
    headers[DEAD_LETTER_REASON_HEADER] = reason[:1000]
    headers["x-safiri-dead-lettered-from"] = queue.name
    headers["x-safiri-routing-key"] = message.routing_key or ""
    copy = aio_pika.Message(
        message.body,
        headers=headers,
        message_id=message.message_id,
        content_type=message.content_type,
        type=message.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    try:
        await queue.channel.default_exchange.publish(
            copy, routing_key=f"{queue.name}.dlq", mandatory=True, timeout=10
        )
    except Exception as exc:  # the broker will dead-letter it itself, reason only in the log
        logger.bind(queue=queue.name, error=repr(exc)).warning(
            "could not park the poison message with its reason; rejecting it"
        )
        await message.reject(requeue=False)
        return
    await message.ack()


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
                await _dead_letter(message, queue, str(exc))
            except Exception as exc:
                outcome = "retried"
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                logger.bind(queue=name, message_id=message.message_id).exception(
                    "message handling failed; requeued"
                )
                await message.reject(requeue=True)
            finally:
                metrics.consumed.labels(name, outcome).inc()
                metrics.process_duration.labels(name).observe(perf_counter() - started)

    return await queue.consume(on_message)
