"""The exact shape of a purchase's trace: which spans, how many of each, and the parent and
links of every one, as a real run of the suite exports them.

A span is named ``"service: span name"``; the shape of a trace is the multiset of (span, its
parent, what its links point to), so a span that appears twice (a redelivered message handled
again) counts twice, and a span hung under the wrong parent is a different entry.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable

import aiohttp
import pytest

from safiri.otlp import ReceivedSpan, SpanStore
from tests.conftest import eventually

SERVICES = ("gateway", "ticketing", "payment", "mpesa-simulator")

Edge = tuple[str, str | None, tuple[str, ...]]  # span, its parent, the spans its links name

# A purchase paid for, from the gateway's request to the confirmed order, in start order.
# The provider calls back in a request of its own (the simulator propagates the trace, Daraja
# does not), so payment hangs handle_callback under the stored request_payment context and
# links it to the callback request that carried the verdict.
_HEAD: tuple[tuple[str, str | None], ...] = (
    ("gateway: POST /api/v1/orders", None),
    ("gateway: claim_idempotency_key", "gateway: POST /api/v1/orders"),
    # request_order is the gateway's call to ticketing itself (an http_step, kind CLIENT).
    ("gateway: request_order", "gateway: POST /api/v1/orders"),
    ("ticketing: POST /orders", "gateway: request_order"),
    ("ticketing: hold_seats", "ticketing: POST /orders"),
    ("ticketing: publish safiri.events", "ticketing: hold_seats"),
    ("payment: process payment.requests", "ticketing: publish safiri.events"),
    ("payment: request_payment", "payment: process payment.requests"),
    # provider.stk_push is payment's call to the provider itself (an http_step, kind CLIENT).
    ("payment: provider.stk_push", "payment: request_payment"),
    ("mpesa-simulator: POST /mpesa/stkpush/v1/processrequest", "payment: provider.stk_push"),
    (
        "mpesa-simulator: mpesa.accept_stk_push",
        "mpesa-simulator: POST /mpesa/stkpush/v1/processrequest",
    ),
    ("mpesa-simulator: mpesa.deliver_callback", "mpesa-simulator: mpesa.accept_stk_push"),
    ("mpesa-simulator: POST", "mpesa-simulator: mpesa.deliver_callback"),
    ("payment: POST /callbacks/mpesa/{payment_id}", "mpesa-simulator: POST"),
    ("payment: handle_callback", "payment: request_payment"),
    ("payment: publish safiri.events", "payment: handle_callback"),
)
RESULT_CONSUMED = (
    "ticketing: process ticketing.payment-results",
    "payment: publish safiri.events",
)
CONFIRMED = ("ticketing: confirm_order", "ticketing: process ticketing.payment-results")
RELEASED = ("ticketing: release_seats", "ticketing: process ticketing.payment-results")
# Only a payment service without a valid provider token (the first purchase after it starts)
# asks for one, inside the STK push.
TOKEN_FETCH: tuple[tuple[str, str | None], ...] = (
    ("payment: GET", "payment: provider.stk_push"),
    ("mpesa-simulator: GET /oauth/v1/generate", "payment: GET"),
)
LINKS: dict[str, tuple[str, ...]] = {
    "payment: process payment.requests": ("ticketing: publish safiri.events",),
    "ticketing: process ticketing.payment-results": ("payment: publish safiri.events",),
    "payment: handle_callback": ("payment: POST /callbacks/mpesa/{payment_id}",),
}


def _edges(pairs: Iterable[tuple[str, str | None]]) -> Counter[Edge]:
    return Counter((span, parent, LINKS.get(span, ())) for span, parent in pairs)


def purchase_shape(
    *, succeeded: bool = True, token_fetched: bool = False, result_redeliveries: int = 0
) -> Counter[Edge]:
    """A purchase's trace: paid (``succeeded``) or refused by the provider; with the token
    request; with the payment result handled ``1 + result_redeliveries`` times."""
    pairs = list(_HEAD)
    for _ in range(1 + result_redeliveries):
        pairs += [RESULT_CONSUMED, CONFIRMED if succeeded else RELEASED]
    if token_fetched:
        pairs += TOKEN_FETCH
    return _edges(pairs)


def label(span: ReceivedSpan) -> str:
    return f"{span.service}: {span.name}"


def shape(spans: Iterable[ReceivedSpan]) -> Counter[Edge]:
    """The trace's shape; a parent or link that is not among ``spans`` reads ``missing <id>``."""
    spans = list(spans)
    by_id = {s.span_id: s for s in spans}

    def named(span_id: str) -> str:
        return label(by_id[span_id]) if span_id in by_id else f"missing {span_id}"

    return Counter(
        (
            label(s),
            named(s.parent_span_id) if s.parent_span_id else None,
            tuple(sorted(named(linked) for _, linked in s.links)),
        )
        for s in spans
    )


def difference(found: Counter[Edge], expected: Counter[Edge]) -> str:
    missing, extra = expected - found, found - expected
    lines = [f"  missing {n}x {edge}" for edge, n in missing.items()]
    lines += [f"  extra   {n}x {edge}" for edge, n in extra.items()]
    return "\n".join(lines)


async def barrier(
    http: aiohttp.ClientSession, store: SpanStore, ports: dict[str, int]
) -> dict[str, str]:
    """Until every span each service ended before now has reached ``store``; returns the trace
    id of the ``/healthz`` request that marked it, by service.

    Each service exports its spans in the order they ended, from one thread; a ``/healthz``
    request's span, once received, has every span that service ended before it ahead of it.
    """
    markers = {}
    for service, port in ports.items():
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200, (service, await response.text())
            markers[service] = response.headers["X-Trace-Id"]

    async def arrived() -> bool:
        return all(store.trace(trace_id) for trace_id in markers.values())

    await eventually(arrived, timeout=20, what=f"the barrier spans of {sorted(markers)}")
    return markers


async def settled_trace(
    http: aiohttp.ClientSession,
    store: SpanStore,
    ports: dict[str, int],
    trace_id: str,
    expected: Counter[Edge],
) -> tuple[list[ReceivedSpan], dict[str, str]]:
    """The trace once it has ``expected``'s shape (or 20 s have passed) and every span the
    services ended until then has arrived, with the ``barrier`` that marked that moment;
    fails with what differs from ``expected``."""

    async def complete() -> bool:
        return shape(store.trace(trace_id)) == expected

    with contextlib.suppress(pytest.fail.Exception):  # the comparison below says what differs
        await eventually(complete, timeout=20, what=f"trace {trace_id} to be complete")
    marks = await barrier(http, store, ports)
    spans = store.trace(trace_id)
    found = shape(spans)
    assert found == expected, f"trace {trace_id} is not as expected:\n" + difference(
        found, expected
    )
    return spans, marks
