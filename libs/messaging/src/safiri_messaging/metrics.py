"""Messaging metrics, named as the OpenTelemetry messaging conventions render in Prometheus.

The queue and outbox gauges have no OpenTelemetry convention; they keep the ``messaging_``
namespace (and ``safiri_`` for the outbox, which is ours) and stay clear of the
``rabbitmq_*`` names the broker's own Prometheus plugin exports.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from safiri_telemetry import LATENCY_BUCKETS

__all__ = ["MessagingMetrics", "sent_messages_counter"]

QUEUE = "messaging_destination_name"


def sent_messages_counter(registry: CollectorRegistry) -> Counter:
    """The one counter a producer without queues or outbox needs (the fleet simulator)."""
    return Counter(
        "messaging_client_sent_messages",
        "Messages published and confirmed by the broker.",
        [QUEUE, "messaging_rabbitmq_destination_routing_key"],
        registry=registry,
    )


class MessagingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = sent_messages_counter(registry)
        self.consumed = Counter(
            "messaging_client_consumed_messages",
            "Messages processed, by queue and outcome (ok, retried, dead_lettered, duplicate).",
            [QUEUE, "outcome"],
            registry=registry,
        )
        self.process_duration = Histogram(
            "messaging_process_duration_seconds",
            "Time to process one message.",
            [QUEUE],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.redelivered = Counter(
            "messaging_client_redelivered_messages",
            "Messages received with the broker's redelivered flag set (an earlier attempt "
            "was requeued or never acknowledged), by queue.",
            [QUEUE],
            registry=registry,
        )
        self.queue_backlog = Gauge(
            "messaging_queue_backlog_messages",
            "Messages ready for delivery in a queue the service consumes, or in its dead-letter "
            "queue, as the broker last reported (delivered but unacknowledged ones excluded).",
            [QUEUE],
            registry=registry,
        )
        self.queue_consumers = Gauge(
            "messaging_queue_consumers",
            "Consumers attached to a queue, as the broker last reported.",
            [QUEUE],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "safiri_outbox_backlog_messages",
            "Outbox rows committed but not yet published to the broker.",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "safiri_outbox_oldest_age_seconds",
            "Age of the oldest outbox row not yet published; 0 when every row is published.",
            registry=registry,
        )
        self.job_active = Gauge(
            "safiri_background_job_active",
            "1 in the replica that runs a single-active background job (elected through a "
            "PostgreSQL advisory lock), 0 in the others: summed over replicas it is 1.",
            ["job"],
            registry=registry,
        )
