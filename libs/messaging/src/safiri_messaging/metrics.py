"""Messaging metrics, named as the OpenTelemetry messaging conventions render in Prometheus."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from safiri_telemetry import LATENCY_BUCKETS

__all__ = ["MessagingMetrics"]


class MessagingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "messaging_client_sent_messages",
            "Messages published and confirmed by the broker.",
            ["messaging_destination_name", "messaging_rabbitmq_destination_routing_key"],
            registry=registry,
        )
        self.consumed = Counter(
            "messaging_client_consumed_messages",
            "Messages processed, by queue and outcome (ok, retried, dead_lettered, duplicate).",
            ["messaging_destination_name", "outcome"],
            registry=registry,
        )
        self.process_duration = Histogram(
            "messaging_process_duration_seconds",
            "Time to process one message.",
            ["messaging_destination_name"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
