"""Payment's business metrics: every instrument this service defines, in one place."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from safiri_telemetry import LATENCY_BUCKETS

__all__ = ["PaymentMetrics"]


class PaymentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.revenue = Counter(
            "payment_revenue",
            "Money collected by successful payments, in the currency's unit.",
            ["currency"],
            registry=registry,
        )
        self.results = Counter(
            "payments",
            "Payments that reached an outcome, by provider, provider result code and canary arm"
            " (variant: baseline or canary).",
            ["provider", "result_code", "variant"],
            registry=registry,
        )
        self.provider_duration = Histogram(
            "payment_provider_request_duration_seconds",
            "Duration of calls to the payment provider, by operation, outcome and canary arm"
            " (variant: baseline or canary).",
            ["provider", "operation", "outcome", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.callbacks = Counter(
            "payment_callbacks",
            "Provider callbacks received, by outcome (applied, duplicate, rejected).",
            ["provider", "outcome"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "payment_provider_circuit_state",
            "The provider's circuit breaker: 0 closed, 1 half-open, 2 open (calls fail fast).",
            ["provider"],
            registry=registry,
        )
        self.circuit_transitions = Counter(
            "payment_provider_circuit_transitions",
            "Circuit breaker transitions, by the state entered (closed, half_open, open).",
            ["provider", "state"],
            registry=registry,
        )
        self.retries = Counter(
            "payment_provider_retries",
            "Provider calls repeated after a failure that made repeating safe, by operation.",
            ["provider", "operation"],
            registry=registry,
        )
        self.route_fallbacks = Counter(
            "payment_route_fallbacks",
            "New payments the payment-provider flag sent to a route with no provider here,"
            " taken by the default route instead, by the route asked for.",
            ["provider"],
            registry=registry,
        )
        self.reconciliations = Counter(
            "payment_reconciliations",
            "STK queries for payments whose callback is overdue, by outcome (settled,"
            " already_final: the callback settled it first, pending, error).",
            ["provider", "outcome"],
            registry=registry,
        )
