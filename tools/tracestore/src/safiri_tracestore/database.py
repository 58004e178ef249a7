"""The store's queries, synchronous on one ``sqlite3`` connection (run them off the loop)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .model import (
    KIND_CLIENT,
    OUTCOME_ATTRIBUTE,
    PURCHASE_ENTRY,
    TRIP_ATTRIBUTE,
    LogRow,
    Outcome,
    SpanRow,
)
from .schema import INDEX_ATTRIBUTES

__all__ = ["Database", "Search", "candidate_query"]

_SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, service, name, kind, start_ns, end_ns,"
    " status_code, status_message, attributes, events, links, resource"
)
_LOG_COLUMNS = "time_ns, trace_id, span_id, service, severity, body, attributes"


def _attribute(name: str, table: str = "") -> str:
    return f"json_extract({table}attributes, '$.\"{name}\"')"


# SpanRow.http_status, answered_4xx, refused and marks_purchase, in SQL.
_HTTP_STATUS = (
    f"COALESCE({_attribute('http.response.status_code')}, {_attribute('http.status_code')})"
)
_ANSWERED_4XX = f"({_HTTP_STATUS} BETWEEN 400 AND 499)"
_REFUSED = f"({_attribute(OUTCOME_ATTRIBUTE)} = 'refused')"
_HOLDS_PURCHASE = (
    "EXISTS (SELECT 1 FROM spans p WHERE p.trace_id = s.trace_id AND (p.order_id IS NOT NULL"
    f" OR {_attribute(TRIP_ATTRIBUTE, 'p.')} IS NOT NULL OR p.name = '{PURCHASE_ENTRY}'))"
)


def _span(row: Sequence[Any]) -> SpanRow:
    *columns, attributes, events, links, resource = row
    return SpanRow(*columns, *(json.loads(v) for v in (attributes, events, links, resource)))


def _log(row: Sequence[Any]) -> LogRow:
    time_ns, trace_id, span_id, service, severity, body, attributes = row
    return LogRow(time_ns, trace_id, span_id, service, severity, body, json.loads(attributes))


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


@dataclass(frozen=True)
class Search:
    """What narrows a list beyond its outcome: the window's end (None: now), a service, the
    ``safiri.*`` attributes a span must carry, a shortest trace duration."""

    until_ns: int | None = None
    service: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    min_duration_ns: int | None = None


def _window(until_ns: int | None) -> str:
    return "start_ns >= ?" if until_ns is None else "start_ns >= ? AND start_ns <= ?"


def candidate_query(
    since_ns: int, outcome: Outcome | None, purchases: bool | None, search: Search
) -> tuple[str, list[object]]:
    """The SQL (every user value a parameter) listing candidate trace ids, and its parameters.

    With a service or attributes, the search's indexes (``spans_by_service``,
    ``span_attributes``) find the traces and all their spans are grouped by primary key;
    without, the window's spans are read by time (failing ones by ``spans_failing``).
    """
    bounds: list[object] = [since_ns] if search.until_ns is None else [since_ns, search.until_ns]
    window = _window(search.until_ns)
    narrow, params = [], []
    for key, value in search.attributes:
        narrow.append(
            "s.trace_id IN (SELECT trace_id FROM span_attributes"
            f" WHERE key = ? AND value = ? AND {window})"
        )
        params += [key, value, *bounds]
    if search.service is not None:
        narrow.append(
            "s.trace_id IN (SELECT trace_id FROM spans INDEXED BY spans_by_service"
            f" WHERE service = ? AND {window})"
        )
        params += [search.service, *bounds]
    having = []
    if purchases is not None:
        having.append(f"{'' if purchases else 'NOT '}{_HOLDS_PURCHASE}")
    if narrow:
        source = f"spans s WHERE {' AND '.join(narrow)}"
        if outcome is Outcome.FAILED:
            having.append("MAX(status_code = 2 OR name = 'expire_hold')")
        elif outcome is Outcome.REFUSED:
            having.append(f"MAX({_REFUSED} OR {_ANSWERED_4XX})")
    elif outcome is Outcome.FAILED:
        # Without INDEXED BY the planner walks the whole table in trace_id order.
        source = (
            "spans s INDEXED BY spans_failing"
            f" WHERE (status_code = 2 OR name = 'expire_hold') AND {window}"
            f" AND NOT (kind = {KIND_CLIENT} AND {_ANSWERED_4XX})"
        )
        params += bounds
    elif outcome is Outcome.REFUSED:
        source = (
            f"spans s INDEXED BY spans_by_time WHERE {window} AND ({_REFUSED} OR {_ANSWERED_4XX})"
        )
        params += bounds
    else:
        source = f"spans s INDEXED BY spans_by_time WHERE {window}"
        params += bounds
    # A failed or refused candidate groups only its failing or refusing spans: its duration
    # is checked once it is classified (RecentQuery.admits).
    if search.min_duration_ns is not None and (narrow or outcome in (None, Outcome.SUCCEEDED)):
        having.append("MAX(end_ns) - MIN(start_ns) >= ?")
        params.append(search.min_duration_ns)
    if outcome in (Outcome.FAILED, Outcome.REFUSED):
        order = "MAX(start_ns) DESC"
    else:
        first = "" if outcome is Outcome.SUCCEEDED else "MAX(status_code = 2) DESC, "
        order = f"{first}MIN(start_ns) DESC"
    condition = f" HAVING {' AND '.join(having)}" if having else ""
    grouped = f"GROUP BY s.trace_id{condition} ORDER BY {order}"
    return f"SELECT s.trace_id FROM {source} {grouped}", params


class Database:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def add(self, spans: Sequence[SpanRow], logs: Sequence[LogRow]) -> None:
        """Store both in one transaction; a span sent twice (exporter retry) is replaced."""
        with self.conn:
            self.conn.executemany(
                f"INSERT OR REPLACE INTO spans ({_SPAN_COLUMNS}, order_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        s.trace_id, s.span_id, s.parent_span_id, s.service, s.name, s.kind,
                        s.start_ns, s.end_ns, s.status_code, s.status_message,
                        json.dumps(s.attributes), json.dumps(s.events), json.dumps(s.links),
                        json.dumps(s.resource), s.order_id,
                    )
                    for s in spans
                ],
            )  # fmt: skip
            self.conn.executemany(
                f"{INDEX_ATTRIBUTES} s.trace_id = ? AND s.span_id = ?",
                [(s.trace_id, s.span_id) for s in spans],
            )
            self.conn.executemany(
                f"INSERT INTO logs ({_LOG_COLUMNS}, order_id) VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        r.time_ns, r.trace_id, r.span_id, r.service, r.severity, r.body,
                        json.dumps(r.attributes), r.order_id,
                    )
                    for r in logs
                ],
            )  # fmt: skip

    def spans(self, trace_ids: Sequence[str]) -> list[SpanRow]:
        rows = self.conn.execute(
            f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id IN ({_marks(trace_ids)})"
            " ORDER BY start_ns, span_id",
            list(trace_ids),
        )
        return [_span(r) for r in rows]

    def logs(self, trace_ids: Sequence[str], order_id: str | None = None) -> list[LogRow]:
        """The trace's log lines, and the order's lines that carry no trace id, in time order."""
        rows = self.conn.execute(
            f"SELECT {_LOG_COLUMNS} FROM logs WHERE trace_id IN ({_marks(trace_ids)})"
            f" UNION ALL SELECT {_LOG_COLUMNS} FROM logs"
            " WHERE order_id = ? AND order_id IS NOT NULL AND trace_id IS NULL"
            " ORDER BY time_ns",
            [*trace_ids, order_id],
        )
        return [_log(r) for r in rows]

    def trace_ids_of_order(self, order_id: str) -> list[str]:
        """The order's traces, the one that started first first."""
        rows = self.conn.execute(
            "SELECT trace_id, MIN(t) FROM ("
            " SELECT trace_id, start_ns AS t FROM spans WHERE order_id = ?"
            " UNION ALL SELECT trace_id, time_ns FROM logs"
            "  WHERE order_id = ? AND trace_id IS NOT NULL"
            ") GROUP BY trace_id ORDER BY MIN(t)",
            (order_id, order_id),
        )
        return [r[0] for r in rows]

    def recent_trace_ids(
        self,
        since_ns: int,
        limit: int,
        offset: int = 0,
        *,
        outcome: Outcome | None = None,
        purchases: bool | None = None,
        search: Search | None = None,
    ) -> list[str]:
        """Candidates for a recent-traces list with spans since ``since_ns``, page by page.

        A superset: ``outcome.classify`` has the last word on each (a trace whose only errors
        became 4xx answers is a candidate for failed but is refused). ``outcome=None`` lists
        traces with errors first, then the newest first; the others the newest first.
        """
        sql, params = candidate_query(since_ns, outcome, purchases, search or Search())
        rows = self.conn.execute(f"{sql} LIMIT ? OFFSET ?", [*params, limit, offset])
        return [r[0] for r in rows]

    def services(self) -> list[str]:
        """Every service with a stored span, read as a skip-scan of ``spans_by_service``."""
        rows = self.conn.execute(
            "WITH RECURSIVE found(service) AS ("
            " SELECT MIN(service) FROM spans"
            " UNION ALL SELECT (SELECT MIN(service) FROM spans WHERE service > found.service)"
            " FROM found WHERE found.service IS NOT NULL"
            ") SELECT service FROM found WHERE service IS NOT NULL"
        )
        return [r[0] for r in rows]

    def prune(self, older_than_ns: int, max_rows: int) -> int:
        """Delete spans and log lines older than the cutoff, then the oldest past ``max_rows``."""
        with self.conn:
            deleted = self.conn.execute("DELETE FROM spans WHERE start_ns < ?", (older_than_ns,))
            removed = deleted.rowcount
            removed += self.conn.execute(
                "DELETE FROM logs WHERE time_ns < ?", (older_than_ns,)
            ).rowcount
            self.conn.execute("DELETE FROM span_attributes WHERE start_ns < ?", (older_than_ns,))
            for table, time in (("spans", "start_ns"), ("logs", "time_ns")):
                (count,) = self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
                if count > max_rows:
                    removed += self.conn.execute(
                        f"DELETE FROM {table} WHERE rowid IN"
                        f" (SELECT rowid FROM {table} ORDER BY {time} LIMIT ?)",
                        (count - max_rows,),
                    ).rowcount
            # the capped spans were the oldest: so are their attributes
            self.conn.execute(
                "DELETE FROM span_attributes WHERE start_ns < (SELECT MIN(start_ns) FROM spans)"
            )
        return int(removed)

    def ping(self) -> None:
        self.conn.execute("SELECT 1").fetchone()
