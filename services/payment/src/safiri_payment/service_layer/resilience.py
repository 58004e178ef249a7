"""The payment provider behind a circuit breaker, with retries only where a call is safe to repeat.

- The breaker is purgatory's: after ``breaker_threshold`` consecutive failures (no answer, a 5xx,
  no connection; a provider's "no" is an answer, not a failure) it opens and every call fails at
  once with ``ProviderCircuitOpen`` for ``breaker_reset_seconds``; then one call is let through
  (half-open) and its result closes or re-opens it. Each transition is a gauge value, a counter,
  a span event on the call that caused it and one log line.
- Retries wait with full jitter (a random time between 0 and the exponential bound). An STK push
  is not idempotent (a second push is a second prompt and may be a second charge), so it is
  repeated only when it was certainly never sent; an STK query and a transaction list only
  read, so they are repeated on any provider failure.
- Two arms (the ``provider-policy`` canary, see canary.py): a call made while the current
  baggage names the ``canary`` arm goes through the canary's own client (a shorter per-attempt
  timeout) and retry policy (``CANARY_POLICY``: exponential backoff with jitter, a deadline
  after which no attempt starts); any other call through the baseline's (today's policy). Both
  arms share the one breaker: it judges the provider, not the policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Literal, TypeVar

from loguru import logger
from opentelemetry.trace import get_current_span
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from ..domain.payments import ProviderOutcome
from ..metrics import PaymentMetrics
from .canary import CANARY, current_variant
from .provider import (
    Charge,
    PaymentProvider,
    ProviderCircuitOpen,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    StkPush,
)

__all__ = ["CANARY_POLICY", "CanaryArm", "CircuitState", "ResiliencePolicy", "ResilientProvider"]

_T = TypeVar("_T")


class CircuitState(IntEnum):
    """The gauge's values, as purgatory's state names map to them."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @classmethod
    def from_purgatory(cls, name: str) -> CircuitState:
        return {"closed": cls.CLOSED, "half-opened": cls.HALF_OPEN, "opened": cls.OPEN}[name]


@dataclass(frozen=True)
class ResiliencePolicy:
    breaker_threshold: int = 5
    breaker_reset_seconds: float = 15.0
    attempts: int = 3  # the first call included
    backoff_base_seconds: float = 0.2
    backoff_max_seconds: float = 2.0
    # full_jitter: a random wait between 0 and base * 2^n (capped); exponential_jitter:
    # base * 2^n (capped) plus a random jitter of up to ``jitter_seconds``.
    backoff: Literal["full_jitter", "exponential_jitter"] = "full_jitter"
    jitter_seconds: float = 0.0
    # No attempt starts once this long has passed since the first (None: attempts only).
    deadline_seconds: float | None = None
    # Each attempt's own time limit, applied by the arm's client (None: the client's own).
    attempt_timeout_seconds: float | None = None

    def stop(self) -> stop_base:
        stop: stop_base = stop_after_attempt(self.attempts)
        if self.deadline_seconds is not None:
            stop = stop | stop_before_delay(self.deadline_seconds)
        return stop

    def wait(self) -> wait_base:
        if self.backoff == "exponential_jitter":
            return wait_exponential_jitter(
                initial=self.backoff_base_seconds,
                max=self.backoff_max_seconds,
                jitter=self.jitter_seconds,
            )
        return wait_random_exponential(
            multiplier=self.backoff_base_seconds, max=self.backoff_max_seconds
        )


# The canary's policy, against today's 5 s per request, 3 attempts, full-jitter backoff and
# no deadline: 3 s per attempt (a hung provider is given up on sooner), up to 4 attempts of a
# call that is safe to repeat, waiting 0.1 s, 0.2 s, 0.4 s (at most 1 s) plus up to 0.1 s of
# jitter, and none started 4 s after the first. An STK push that timed out is still never
# repeated: its outcome is unknown, and reconciliation finds it.
CANARY_POLICY = ResiliencePolicy(
    attempts=4,
    backoff="exponential_jitter",
    backoff_base_seconds=0.1,
    backoff_max_seconds=1.0,
    jitter_seconds=0.1,
    deadline_seconds=4.0,
    attempt_timeout_seconds=3.0,
)

# The canary arm: the provider client it calls (its own timeout) and its retry policy.
CanaryArm = tuple[PaymentProvider, ResiliencePolicy]


class ResilientProvider:
    """A ``PaymentProvider`` wrapping another one; the handlers see no difference but the errors."""

    def __init__(
        self,
        provider: PaymentProvider,
        metrics: PaymentMetrics,
        policy: ResiliencePolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        canary: CanaryArm | None = None,
    ) -> None:
        self.name = provider.name
        self._provider = provider
        self._metrics = metrics
        self._policy = policy or ResiliencePolicy()
        self._canary = canary
        self._sleep = sleep
        self._state = CircuitState.CLOSED
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=self._policy.breaker_threshold,
            default_ttl=self._policy.breaker_reset_seconds,
            exclude=[ProviderRejected],
        )
        self._breakers.add_listener(self._on_breaker_event)
        metrics.circuit_state.labels(self.name).set(CircuitState.CLOSED)
        for state in CircuitState:
            metrics.circuit_transitions.labels(self.name, state.name.lower())
        for operation in ("stk_push", "stk_query", "pull_transactions"):
            metrics.retries.labels(self.name, operation)

    @property
    def circuit_state(self) -> CircuitState:
        return self._state

    async def stk_push(self, request: StkPush) -> str:
        return await self._call("stk_push", lambda p: p.stk_push(request), (ProviderUnreachable,))

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        return await self._call(
            "stk_query",
            lambda p: p.stk_query(checkout_request_id),
            (ProviderUnavailable, ProviderTimeout),
        )

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        return await self._call(
            "pull_transactions",
            lambda p: p.charges(since, until),
            (ProviderUnavailable, ProviderTimeout),
        )

    def _arm(self) -> CanaryArm:
        """The client and policy of the arm the current baggage names."""
        if self._canary is not None and current_variant() == CANARY:
            return self._canary
        return self._provider, self._policy

    async def _call(
        self,
        operation: str,
        request: Callable[[PaymentProvider], Awaitable[_T]],
        retry_on: tuple[type[Exception], ...],
    ) -> _T:
        provider, policy = self._arm()

        def call() -> Awaitable[_T]:
            return request(provider)

        def worth_retrying(exc: BaseException) -> bool:
            return isinstance(exc, retry_on) and not isinstance(exc, ProviderCircuitOpen)

        def before_sleep(state: RetryCallState) -> None:
            self._metrics.retries.labels(self.name, operation).inc()
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.bind(
                operation=operation, attempt=state.attempt_number, wait_seconds=round(wait, 3)
            ).info(f"provider call failed ({error}); retrying")

        retrying = AsyncRetrying(
            stop=policy.stop(),
            wait=policy.wait(),
            retry=retry_if_exception(worth_retrying),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._through_breaker(call)
        raise AssertionError("tenacity ends with a result or the last error")  # pragma: no cover

    async def _through_breaker(self, call: Callable[[], Awaitable[_T]]) -> _T:
        breaker = await self._breakers.get_breaker(self.name)
        try:
            async with breaker:
                return await call()
        except OpenedState as exc:
            raise ProviderCircuitOpen(
                f"circuit breaker open after repeated failures of {self.name}"
            ) from exc

    def _on_breaker_event(self, circuit: str, event: str, payload: Any) -> None:
        if event != "state_changed":
            return
        previous, self._state = self._state, CircuitState.from_purgatory(payload.state)
        if previous is self._state:
            return
        name = self._state.name.lower()
        self._metrics.circuit_state.labels(self.name).set(self._state)
        self._metrics.circuit_transitions.labels(self.name, name).inc()
        # The call that tipped the breaker is the one whose span tells the story.
        get_current_span().add_event(
            "circuit_breaker.state_change",
            {
                "safiri.circuit.name": circuit,
                "safiri.circuit.previous_state": previous.name.lower(),
                "safiri.circuit.state": name,
            },
        )
        log = logger.bind(circuit=circuit, previous_state=previous.name.lower(), state=name)
        if self._state is CircuitState.OPEN:
            log.warning(f"circuit breaker for {circuit} opened: calls fail fast")
        else:
            log.info(f"circuit breaker for {circuit} is now {name}")
