"""Ticketing's business metrics: every instrument this service defines, in one place."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["TicketingMetrics"]


class TicketingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tickets_sold = Counter(
            "tickets_sold",
            "Tickets issued for confirmed orders, by route.",
            ["route"],
            registry=registry,
        )
        self.orders_final = Counter(
            "orders_final",
            "Orders that reached a final state, by status.",
            ["status"],
            registry=registry,
        )
        self.late_payments = Counter(
            "late_payments",
            "Payments that succeeded after their order had ended, by how they were resolved"
            " (seats_retaken: the order is confirmed after all; refund: money owed back).",
            ["resolution"],
            registry=registry,
        )
        self.seat_holds = Counter(
            "seat_holds",
            "Attempts to hold seats, by outcome (held, repeated, unavailable, unknown_trip).",
            ["outcome"],
            registry=registry,
        )
        # The name is fixed by the product contract, although promtool's lint reserves the
        # _count suffix for histograms; tests allow exactly this one finding.
        self.active_buses = Gauge(
            "active_buses_count",
            "Buses reporting their position now (a GPS fix in the last 2 minutes), each counted"
            " once.",
            registry=registry,
        )
        self.orders_pending = Gauge(
            "orders_pending",
            "Orders in PENDING_PAYMENT now.",
            registry=registry,
        )
        self.orders_pending_oldest_age = Gauge(
            "orders_pending_oldest_age_seconds",
            "How long the oldest PENDING_PAYMENT order has waited, in seconds (0 when none).",
            registry=registry,
        )
