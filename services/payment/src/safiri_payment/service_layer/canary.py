"""The provider-policy canary: which arm (``baseline`` or ``canary``) a payment is in.

The ``provider-policy`` flag (deploy/flags/flags.json) is asked once per payment, in
``request_payment``'s span, with the order as its targeting key (each payment stays in one arm;
flagd's ``fractional`` buckets by it) and the client as an attribute (a list of client ids
always gets the canary). The client is known only at the gateway: it arrives as the W3C baggage
entry ``safiri.client`` (a hash of the API key, never the key), carried through ticketing and
the outbox with the trace. The choice is a plain callable, so this layer knows nothing of the
flags library.

The arm is then W3C baggage too (``safiri.canary.variant``) while the payment is handled: the
resilient provider applies the arm's timeout and retry policy from it, and the payment's stored
trace context keeps it (payments.trace_context), so a callback or a reconciliation minutes
later counts the payment, and asks the provider, in the arm that took it, even after the flag
has changed. Metrics carry the arm as the ``variant`` label, spans as ``safiri.canary.variant``:
two values only, whatever the flag file says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import baggage
from opentelemetry import context as otel_context

from safiri_telemetry import context_from_carrier

__all__ = [
    "BASELINE",
    "CANARY",
    "CLIENT_BAGGAGE",
    "FLAG",
    "VARIANTS",
    "VARIANT_ATTRIBUTE",
    "VARIANT_BAGGAGE",
    "ChooseVariant",
    "choose_variant",
    "current_variant",
    "in_arm",
    "variant_of",
]

FLAG = "provider-policy"
BASELINE = "baseline"
CANARY = "canary"
# Every value a ``variant`` label or the span attribute ever takes.
VARIANTS = (BASELINE, CANARY)
# Set by the gateway once the API key is checked.
CLIENT_BAGGAGE = "safiri.client"
VARIANT_BAGGAGE = "safiri.canary.variant"
VARIANT_ATTRIBUTE = "safiri.canary.variant"

ChooseVariant = Callable[[str, str | None], str]  # (order id, client id or None) -> variant


def choose_variant(choose: ChooseVariant | None, order_id: str) -> str:
    """The arm the flag names for this order and the current client; baseline for anything
    the flag file may say that is not an arm."""
    if choose is None:
        return BASELINE
    client = baggage.get_baggage(CLIENT_BAGGAGE)
    wanted = choose(order_id, str(client) if client is not None else None)
    return wanted if wanted in VARIANTS else BASELINE


def current_variant(context: otel_context.Context | None = None) -> str:
    """The arm in the (current) context's baggage; baseline when none is."""
    value = baggage.get_baggage(VARIANT_BAGGAGE, context)
    return str(value) if value in VARIANTS else BASELINE


def variant_of(trace_context: Mapping[str, Any]) -> str:
    """The arm a stored payment was taken in (its stored trace context's baggage)."""
    return current_variant(context_from_carrier(trace_context))


@contextmanager
def in_arm(variant: str) -> Iterator[str]:
    """``variant`` as the current baggage for the block (what is stored or sent in it keeps
    it); yields it."""
    token = otel_context.attach(baggage.set_baggage(VARIANT_BAGGAGE, variant))
    try:
        yield variant
    finally:
        otel_context.detach(token)
