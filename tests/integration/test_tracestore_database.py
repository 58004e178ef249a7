"""The store's queries on a real SQLite file: what they return and that they use the indexes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from safiri_tracestore.database import Database
from safiri_tracestore.model import LogRow, Outcome, SpanRow
from safiri_tracestore.schema import connect

pytestmark = pytest.mark.integration

ORDER = "56d8b732-1c4e-4f7a-9d1e-0a2b3c4d5e6f"
TRIP = {"safiri.trip.id": "a6a0c2f4-4a4b-4f6e-9a57-1f0e4c0d2b11"}
ANSWERED_409 = {**TRIP, "http.response.status_code": 409}


def row(trace: str, span: str, start: int, *, status: int = 0, name: str = "step") -> SpanRow:
    return SpanRow(
        trace_id=trace * 32,
        span_id=span * 16,
        parent_span_id=None,
        service="payment",
        name=name,
        kind=1,
        start_ns=start,
        end_ns=start + 5,
        status_code=status,
        status_message="",
        attributes={"safiri.order.id": ORDER} if trace == "a" else {},
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(connect(tmp_path / "t.sqlite3"))
    now = time.time_ns()
    database.add(
        [
            row("a", "1", now, status=2),
            row("b", "2", now + 1),
            row("c", "3", now + 2, name="expire_hold"),
        ],
        [
            LogRow(now, "a" * 32, None, "payment", "ERROR", "failed", {}),
            LogRow(now + 9, None, None, "ticketing", "INFO", "sweeper", {"order_id": ORDER}),
            LogRow(now + 5, "b" * 32, None, "gateway", "INFO", "other", {}),
        ],
    )
    yield database
    database.close()


def test_a_span_sent_twice_is_stored_once(db: Database) -> None:
    db.add([row("a", "1", 1, status=2)], [])
    assert len(db.spans(["a" * 32])) == 1


def test_an_order_resolves_to_its_traces_and_its_untraced_log_lines(db: Database) -> None:
    assert db.trace_ids_of_order(ORDER) == ["a" * 32]
    assert [r.body for r in db.logs(["a" * 32], ORDER)] == ["failed", "sweeper"]


def test_failed_means_an_error_status_or_an_expired_hold(db: Database) -> None:
    assert db.recent_trace_ids(0, 10, outcome=Outcome.FAILED) == ["c" * 32, "a" * 32]
    assert db.recent_trace_ids(0, 10)[0] == "a" * 32


def test_failed_orders_leave_out_refusals_and_probes(db: Database) -> None:
    """A trace whose only error is the gateway's client span of a 409 is no failed candidate,
    a readyz probe's 503 is a failure but no order, and a refused step is a refused one."""
    now = time.time_ns()
    client = replace(row("e", "5", now + 3), kind=3, status_code=2, attributes=ANSWERED_409)
    server = replace(row("e", "6", now + 3), kind=2, attributes=ANSWERED_409)
    said_no = replace(row("e", "7", now + 4), attributes={**TRIP, "safiri.outcome": "refused"})
    probe = replace(row("d", "8", now + 5, status=2, name="GET /readyz"), kind=2)
    db.add(
        [client, server, said_no, replace(probe, attributes={"http.response.status_code": 503})], []
    )
    assert db.recent_trace_ids(0, 10, outcome=Outcome.FAILED, purchases=True) == ["a" * 32]
    # the fixture's expired hold (c) carries no order id: it is no purchase here
    assert db.recent_trace_ids(0, 10, outcome=Outcome.FAILED, purchases=False) == [
        "d" * 32,
        "c" * 32,
    ]
    assert db.recent_trace_ids(0, 10, outcome=Outcome.REFUSED, purchases=True) == ["e" * 32]
    assert db.recent_trace_ids(0, 1, 1, outcome=Outcome.FAILED) == ["c" * 32]  # a page on


def query_plans(db: Database, *calls: Callable[[], object]) -> str:
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    for call in calls:
        call()
    db.conn.set_trace_callback(None)
    plans = []
    for sql in statements:
        plans += [r[-1] for r in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    return "\n".join(plans)


def test_the_lookups_use_the_indexes(db: Database) -> None:
    plans = query_plans(
        db,
        lambda: db.spans(["a" * 32]),
        lambda: db.logs(["a" * 32], ORDER),
        lambda: db.trace_ids_of_order(ORDER),
        lambda: db.recent_trace_ids(0, 10, outcome=Outcome.FAILED, purchases=True),
        lambda: db.recent_trace_ids(0, 10, outcome=Outcome.REFUSED, purchases=True),
        lambda: db.recent_trace_ids(0, 10),
    )
    for index in (
        "sqlite_autoindex_spans_1",
        "logs_by_trace",
        "logs_by_order",
        "spans_by_order",
        "spans_failing",
        "spans_by_time",
    ):
        assert index in plans, plans
    assert "SCAN spans\n" not in plans + "\n"


def test_pruning_deletes_old_rows_then_caps_the_rest(db: Database) -> None:
    now = time.time_ns()
    db.add([row("d", "4", now - 10**12)], [LogRow(now - 10**12, None, None, "x", "INFO", "o", {})])
    assert db.prune(now - 10**9, max_rows=1_000) == 2
    assert db.prune(0, max_rows=1) == 2 + 2  # two spans and two log lines over the cap
    assert [s.name for s in db.spans(["c" * 32])] == ["expire_hold"]
    assert [r.body for r in db.logs([], ORDER)] == ["sweeper"]
