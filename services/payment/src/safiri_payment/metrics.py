"""Payment's business metrics: every instrument this service defines, in one place."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
            "Payments that reached an outcome, by provider and provider result code.",
            ["provider", "result_code"],
            registry=registry,
        )
        self.provider_duration = Histogram(
            "payment_provider_request_duration_seconds",
            "Duration of calls to the payment provider, by operation and outcome.",
            ["provider", "operation", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.callbacks = Counter(
            "payment_callbacks",
            "Provider callbacks received, by outcome (applied, duplicate, rejected).",
            ["provider", "outcome"],
            registry=registry,
        )
