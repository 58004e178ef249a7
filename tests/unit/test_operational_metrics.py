"""The operational metric catalogue: pool gauges read at scrape time, names Prometheus accepts."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from safiri_messaging import MessagingMetrics
from safiri_payment.metrics import PaymentMetrics
from safiri_telemetry import ConnectionPoolCollector
from safiri_telemetry._metrics import HttpMetrics
from safiri_ticketing.metrics import TicketingMetrics
from tests.conftest import promtool_check_metrics

pytestmark = pytest.mark.unit


@dataclass
class FakePool:
    """Anything with asyncpg's three size methods will do."""

    size: int
    idle: int
    maximum: int

    def get_size(self) -> int:
        return self.size

    def get_idle_size(self) -> int:
        return self.idle

    def get_max_size(self) -> int:
        return self.maximum


def test_the_pool_is_read_at_each_scrape() -> None:
    pool = FakePool(size=4, idle=3, maximum=10)
    registry = CollectorRegistry()
    registry.register(ConnectionPoolCollector(pool, pool_name="orders"))

    def usage(state: str) -> float | None:
        labels = {"db_client_connection_state": state, "db_client_connection_pool_name": "orders"}
        return registry.get_sample_value("db_client_connection_count", labels)

    assert (usage("used"), usage("idle")) == (1, 3)
    pool.idle = 0
    assert (usage("used"), usage("idle")) == (4, 0)
    assert (
        registry.get_sample_value(
            "db_client_connection_max", {"db_client_connection_pool_name": "orders"}
        )
        == 10
    )


def test_a_second_collector_in_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    registry.register(ConnectionPoolCollector(FakePool(1, 1, 2), pool_name="a"))
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(ConnectionPoolCollector(FakePool(1, 1, 2), pool_name="b"))


def catalogue() -> bytes:
    """Every instrument of ticketing and payment, each with one sample so promtool sees it."""
    registry = CollectorRegistry()
    http = HttpMetrics(registry)
    http.server_duration.labels("GET", "/trips", "200").observe(0.01)
    http.client_duration.labels("POST", "ticketing", "201").observe(0.01)
    messaging = MessagingMetrics(registry)
    messaging.sent.labels("safiri.events", "payment.requested").inc()
    messaging.consumed.labels("payment.requests", "ok").inc()
    messaging.process_duration.labels("payment.requests").observe(0.01)
    messaging.redelivered.labels("payment.requests").inc()
    messaging.queue_backlog.labels("payment.requests.dlq").set(2)
    messaging.queue_consumers.labels("payment.requests").set(1)
    messaging.outbox_backlog.set(3)
    messaging.outbox_oldest_age.set(1.5)
    ticketing = TicketingMetrics(registry)
    ticketing.tickets_sold.labels("Nairobi-Mombasa").inc()
    ticketing.orders_final.labels("CONFIRMED").inc()
    ticketing.seat_holds.labels("held").inc()
    ticketing.active_buses.set(4)
    payment = PaymentMetrics(registry)
    payment.revenue.labels("KES").inc(1400)
    payment.results.labels("mpesa", "0", "baseline").inc()
    payment.provider_duration.labels("mpesa", "stk_push", "ok", "baseline").observe(0.2)
    payment.callbacks.labels("mpesa", "applied").inc()
    registry.register(ConnectionPoolCollector(FakePool(2, 1, 10), pool_name="ticketing"))
    return generate_latest(registry)


def test_every_metric_says_what_it_is() -> None:
    helps = [line for line in catalogue().decode().splitlines() if line.startswith("# HELP")]
    names = [line.split()[2] for line in helps]
    assert len(names) == len(set(names))
    assert all(len(line.split(maxsplit=3)) == 4 for line in helps), helps
    for name in (
        "messaging_queue_backlog_messages",
        "messaging_queue_consumers",
        "messaging_client_redelivered_messages_total",
        "safiri_outbox_backlog_messages",
        "safiri_outbox_oldest_age_seconds",
        "db_client_connection_count",
        "db_client_connection_max",
        "active_buses_count",
    ):
        assert name in names


def test_every_metric_name_passes_promtool() -> None:
    assert promtool_check_metrics(catalogue().decode()) == []
