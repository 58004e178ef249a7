"""After a run: does ``tickets_sold_total`` agree with the tickets in ticketing's database?

The metric's delta over the run (scraped from ticketing's ``/metrics`` before and after) must
equal the tickets that ticketing's PostgreSQL holds for the orders the run created, once every
one of those orders is final. A metric that double-counts a redelivered payment result, or
misses a confirmation, or counts seats instead of tickets, shows up here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "METRIC",
    "LatencyGate",
    "MetricMissing",
    "OrdersState",
    "Verdict",
    "counter_total",
    "duration_text",
    "orders_state",
    "scrape_counter",
    "unrecorded_orders",
    "wait_until_final",
]

METRIC = "tickets_sold_total"


class MetricMissing(RuntimeError):
    pass


def counter_total(exposition: str, name: str = METRIC) -> float:
    """The sum of counter ``name`` over all its label sets in a Prometheus text exposition.

    A declared counter with no samples yet is 0; an exposition that does not declare it at all
    is an error (the wrong service, or a renamed metric), never a silent 0.
    """
    family_name = name.removesuffix("_total")
    declared = False
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        if family.name not in (family_name, name):
            continue
        declared = True
        total += sum(s.value for s in family.samples if s.name == name)
    if not declared:
        raise MetricMissing(f"{name} is not in the exposition")
    return total


async def scrape_counter(
    http: aiohttp.ClientSession, metrics_url: str, name: str = METRIC
) -> float:
    async with http.get(metrics_url, timeout=aiohttp.ClientTimeout(total=10)) as response:
        response.raise_for_status()
        text = await response.text()
    try:
        return counter_total(text, name)
    except MetricMissing as exc:
        raise MetricMissing(f"{metrics_url}: {exc} (is that ticketing's /metrics?)") from None


@dataclass(frozen=True)
class OrdersState:
    """The run's orders as ticketing's database holds them."""

    recorded: int  # order ids the run was given (202 answers)
    found: int  # of those, rows in the database
    by_status: dict[str, int] = field(default_factory=dict)
    tickets: int = 0  # ticket rows of the CONFIRMED ones
    seats_confirmed: int = 0  # sum of seat_count of the CONFIRMED ones

    @property
    def pending(self) -> int:
        return self.by_status.get("PENDING_PAYMENT", 0) + (self.recorded - self.found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "found": self.found,
            "by_status": dict(sorted(self.by_status.items())),
            "pending": self.pending,
            "tickets": self.tickets,
            "seats_confirmed": self.seats_confirmed,
        }


async def orders_state(conn: asyncpg.Connection[Any], order_ids: Sequence[str]) -> OrdersState:
    ids = list(dict.fromkeys(order_ids))
    rows = await conn.fetch(
        "SELECT status, count(*) AS n, sum(seat_count) AS seats FROM orders"
        " WHERE order_id = ANY($1::uuid[]) GROUP BY status",
        ids,
    )
    tickets = await conn.fetchval(
        "SELECT count(*) FROM tickets t JOIN orders o USING (order_id)"
        " WHERE o.order_id = ANY($1::uuid[]) AND o.status = 'CONFIRMED'",
        ids,
    )
    by_status = {str(r["status"]): int(r["n"]) for r in rows}
    seats = sum(int(r["seats"] or 0) for r in rows if r["status"] == "CONFIRMED")
    return OrdersState(
        recorded=len(ids),
        found=sum(by_status.values()),
        by_status=by_status,
        tickets=int(tickets or 0),
        seats_confirmed=seats,
    )


async def wait_until_final(
    read: Callable[[], Awaitable[OrdersState]],
    timeout: float,
    interval: float = 0.5,
) -> OrdersState:
    """Poll until no order of the run is pending, or the deadline; returns the last state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await read()
        if state.pending == 0 or loop.time() >= deadline:
            return state
        await asyncio.sleep(interval)


async def unrecorded_orders(
    conn: asyncpg.Connection[Any], since: datetime, order_ids: Sequence[str]
) -> dict[str, int]:
    """Orders created since ``since`` that the run was never told of (another client's, or a
    request whose answer was lost), and their tickets: what else the metric's delta may hold."""
    row = await conn.fetchrow(
        "SELECT count(*) AS orders, coalesce(sum(seat_count) FILTER"
        " (WHERE status = 'CONFIRMED'), 0) AS seats FROM orders"
        " WHERE created_at >= $1 AND NOT (order_id = ANY($2::uuid[]))",
        since,
        list(order_ids),
    )
    assert row is not None
    return {"orders": int(row["orders"]), "confirmed_seats": int(row["seats"])}


def duration_text(ms: int) -> str:
    """``12 ms`` under a second, ``2.40 s`` from one on."""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


@dataclass(frozen=True)
class LatencyGate:
    """One latency figure of the run against its threshold.

    ``measured_ms`` is None when the run has no such figure (no POST answered, no order
    followed): the gate then fails, because a gate that passes on a figure never measured
    would pass a run that bought nothing.
    """

    name: str  # "POST /orders p99"
    max_seconds: float
    measured_ms: int | None

    @property
    def passed(self) -> bool:
        return self.measured_ms is not None and self.measured_ms <= self.max_seconds * 1000

    @property
    def reason(self) -> str | None:
        """Why the gate failed; None when it passed."""
        if self.measured_ms is None:
            return (
                f"{self.name} was not measured (allowed {self.max_seconds:g} s): no figure to judge"
            )
        if not self.passed:
            return (
                f"{self.name} {duration_text(self.measured_ms)} is above the allowed"
                f" {self.max_seconds:g} s"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured_ms": self.measured_ms,
            "max_ms": round(self.max_seconds * 1000),
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Verdict:
    """The run's check: the metric agrees with the database, and the run was healthy."""

    metric_before: float
    metric_after: float
    db_tickets: int
    pending_orders: int
    error_ratio: float
    max_error_ratio: float
    latency: tuple[LatencyGate, ...]
    rate_limited: int = 0  # requests the gateway refused with 429
    rate_limit_met: str | None = None  # the gateway's own words for the limit it applied
    rate_limit_needed: str = ""  # the SAFIRI_RATE_LIMIT_* settings the scenario needs

    @property
    def metric_delta(self) -> float:
        return self.metric_after - self.metric_before

    @property
    def agree(self) -> bool:
        return self.metric_delta == self.db_tickets

    @property
    def reasons(self) -> list[str]:
        """Why the run failed; empty when it passed."""
        out = []
        if not self.agree:
            out.append(
                f"{METRIC} rose by {self.metric_delta:g} but the database holds"
                f" {self.db_tickets} tickets for the run's orders"
            )
        if self.db_tickets == 0:
            out.append("no ticket was sold: the check proves nothing")
        if self.pending_orders:
            out.append(f"{self.pending_orders} orders of the run never reached a final state")
        if self.error_ratio > self.max_error_ratio:
            out.append(
                f"error ratio {self.error_ratio:.2%} is above the allowed"
                f" {self.max_error_ratio:.2%}"
            )
        if self.rate_limited:
            met = f" ({self.rate_limit_met})" if self.rate_limit_met else ""
            out.append(
                f"{self.rate_limited} requests were refused with 429 by the gateway's per-key"
                f" rate limit{met}: the run measured the limiter, not the suite; give the"
                f" gateway {self.rate_limit_needed or 'a higher limit'} (load/README.md)"
            )
        if not self.latency:
            out.append("no latency gate was given: the run's speed is not judged")
        out.extend(reason for gate in self.latency if (reason := gate.reason) is not None)
        return out

    @property
    def passed(self) -> bool:
        return not self.reasons
