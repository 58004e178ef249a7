"""Placing an order through ticketing, at most once per Idempotency-Key."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

from safiri_telemetry import business_span, current_trace_id, http_step

from ..domain.idempotency import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    IdempotencyRecord,
    StoredResponse,
    replay_of,
    worth_keeping,
)
from ..domain.orders import OrderRequest
from .ports import Claim, IdempotencyStore, Ticketing, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["ACCEPTED", "OrderOutcome", "OrdersPaused", "PlaceOrder"]

# Ticketing has created the order (201); payment is still to come, so the public answer is 202.
ACCEPTED = 202


class OrdersPaused(Exception):
    """Maintenance mode is on: no new order is taken; retry after ``retry_after_seconds``."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"new orders are paused for maintenance; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


def _never() -> bool:
    return False


@dataclass(frozen=True)
class OrderOutcome:
    response: StoredResponse
    replayed: bool


def _public_answer(status: int, body: dict[str, object]) -> StoredResponse:
    if 200 <= status < 300:
        if not isinstance(body.get("order_id"), str):
            raise UpstreamUnavailable("ticketing accepted an order without an order_id")
        return StoredResponse(ACCEPTED, body)
    return StoredResponse(status, body)


def request_key(client: str, key: str) -> str:
    """The key ticketing deduplicates on: one per client and Idempotency-Key, and neither."""
    return hashlib.sha256(f"{client}\x00{key}".encode()).hexdigest()


class PlaceOrder:
    """``maintenance`` says whether maintenance mode is on (the ``maintenance-mode`` flag):
    asked once per new order, on the request's own span, never for a replay."""

    def __init__(
        self,
        store: IdempotencyStore,
        ticketing: Ticketing,
        *,
        maintenance: Callable[[], bool] = _never,
        retry_after_seconds: int = 120,
    ) -> None:
        self._store = store
        self._ticketing = ticketing
        self._maintenance = maintenance
        self._retry_after_seconds = retry_after_seconds
        # Answers being stored after they were sent, by (client, key): a retry that arrives
        # meanwhile waits for its own key's, instead of being refused as in flight.
        self._storing: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the answers still being stored (at shutdown, before the pool closes), at
        most ``timeout`` seconds; those still pending then are given up (their keys stay in
        flight until their lock runs out, and a retry asks ticketing again)."""
        pending = set(self._storing.values())
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            logger.bind(answers=len(late)).warning(
                "order answers not stored for replay before shutdown; retries ask ticketing again"
            )

    async def _claim(self, client: str, key: str, fingerprint: str) -> Claim | IdempotencyRecord:
        found = await self._store.claim(client, key, fingerprint, current_trace_id())
        storing = self._storing.get((client, key))
        if storing is not None and isinstance(found, IdempotencyRecord) and found.response is None:
            # In flight because this replica is storing its answer right now: wait, read again.
            await asyncio.wait([storing])
            found = await self._store.claim(client, key, fingerprint, current_trace_id())
        return found

    def _store_answer(self, claim: Claim, response: StoredResponse, log: Logger) -> None:
        """Store the answer for replays after it is sent: one round trip off the client's time.

        If it is lost (the replica or its database gone first), the key stays in flight until
        its lock runs out; the client's retry then reaches ticketing with the same request key
        and gets the same order, so nothing is bought twice."""
        slot = (claim.client, claim.key)

        async def store() -> None:
            try:
                await self._store.complete(claim, response)
            except Exception as exc:
                log.bind(error=type(exc).__name__, reason=str(exc)).warning(
                    "order answer not stored for replay; a retry asks ticketing again"
                )
            finally:
                self._storing.pop(slot, None)

        self._storing[slot] = asyncio.create_task(store())

    async def __call__(self, order: OrderRequest, client: str, key: str) -> OrderOutcome:
        """Raises ``IdempotencyKeyReused``/``IdempotencyKeyInFlight``, ``OrdersPaused`` or
        ``Upstream*``."""
        attributes = {"safiri.trip.id": order.trip_id, "safiri.seat_count": order.seat_count}
        log = logger.bind(trip_id=order.trip_id, seat_count=order.seat_count)
        fingerprint = order.fingerprint()
        with business_span("claim_idempotency_key", attributes) as span:
            found = await self._claim(client, key, fingerprint)
            outcome = _outcome(found, fingerprint)
            span.set_attribute("safiri.idempotency.outcome", outcome)
            span.set_attribute("safiri.idempotency.replayed", outcome == "replayed")
            if isinstance(found, IdempotencyRecord) and found.trace_id:
                span.set_attribute("safiri.idempotency.original_trace_id", found.trace_id)
        if not isinstance(found, Claim):
            # Refusals are raised outside the span: a client's retry is not a failed step.
            stored = replay_of(found, fingerprint)
            log.bind(order_id=stored.body.get("order_id"), http_status=stored.status).info(
                "order answer replayed"
            )
            return OrderOutcome(stored, replayed=True)
        # A key already answered (above) gets its answer even in maintenance: a client's retry
        # of an accepted order is not a new order. Only a new one is refused, and its key freed
        # so that the same request goes through once maintenance is over.
        if self._maintenance():
            await self._store.release(found)
            log.info("order refused: maintenance mode")
            raise OrdersPaused(self._retry_after_seconds)

        # One span for the step and its call to ticketing (kind CLIENT; ticketing's server span
        # is its child): the instrumentation's client span would only repeat it.
        with http_step("request_order", attributes) as span:
            try:
                reply = await self._ticketing.place_order(order.as_json(), request_key(client, key))
                response = _public_answer(reply.status, reply.body)
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                # Freed so the client can retry. A timed-out call may still have created the
                # order (and asked for its payment): the retry carries the same request key,
                # and ticketing answers it with that order instead of a second one.
                await self._store.release(found)
                log.bind(error=type(exc).__name__, reason=str(exc)).warning(
                    "ticketing failed; key released"
                )
                raise
            order_id = response.body.get("order_id")
            if isinstance(order_id, str):
                span.set_attribute("safiri.order.id", order_id)
            span.set_attribute("safiri.upstream.status", reply.status)

        if worth_keeping(response.status):
            self._store_answer(found, response, log)
        else:
            await self._store.release(found)
        log.bind(order_id=order_id, http_status=response.status).info("order request answered")
        return OrderOutcome(response, replayed=False)


def _outcome(found: Claim | IdempotencyRecord, fingerprint: str) -> str:
    if isinstance(found, Claim):
        return "claimed"
    try:
        replay_of(found, fingerprint)
    except IdempotencyKeyReused:
        return "reused"
    except IdempotencyKeyInFlight:
        return "in_flight"
    return "replayed"
