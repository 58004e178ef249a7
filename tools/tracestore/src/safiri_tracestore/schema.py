"""The SQLite file: tables for spans and log lines, the indexes the queries use, WAL mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["INDEX_ATTRIBUTES", "connect"]

# Fills span_attributes from the spans the WHERE clause names (the spans table is "s").
INDEX_ATTRIBUTES = """
INSERT OR IGNORE INTO span_attributes (key, value, start_ns, trace_id, span_id)
SELECT a.key, CASE a.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
       ELSE CAST(a.value AS TEXT) END, s.start_ns, s.trace_id, s.span_id
FROM spans s, json_each(s.attributes) a
WHERE a.key GLOB 'safiri.*' AND a.type IN ('text', 'integer', 'real', 'true', 'false') AND
"""
VERSION = 1  # 1: span_attributes

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id       TEXT    NOT NULL,
    span_id        TEXT    NOT NULL,
    parent_span_id TEXT,
    service        TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    kind           INTEGER NOT NULL,
    start_ns       INTEGER NOT NULL,
    end_ns         INTEGER NOT NULL,
    status_code    INTEGER NOT NULL,
    status_message TEXT    NOT NULL,
    order_id       TEXT,
    attributes     TEXT    NOT NULL,
    events         TEXT    NOT NULL,
    links          TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_time ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_by_service ON spans (service, start_ns);
CREATE INDEX IF NOT EXISTS spans_by_order ON spans (order_id) WHERE order_id IS NOT NULL;
-- What "failed" means to the recent-traces list: an error status, or an expired seat hold.
CREATE INDEX IF NOT EXISTS spans_failing ON spans (start_ns)
    WHERE status_code = 2 OR name = 'expire_hold';

-- The search's index of span attributes named safiri.*: one row per span and attribute,
-- its value as text (an integer 1032 is '1032', a boolean 'true').
CREATE TABLE IF NOT EXISTS span_attributes (
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id TEXT    NOT NULL,
    span_id  TEXT    NOT NULL,
    PRIMARY KEY (key, value, start_ns, trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS span_attributes_by_time ON span_attributes (start_ns);

CREATE TABLE IF NOT EXISTS logs (
    id         INTEGER PRIMARY KEY,
    time_ns    INTEGER NOT NULL,
    trace_id   TEXT,
    span_id    TEXT,
    service    TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    order_id   TEXT,
    attributes TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_trace ON logs (trace_id, time_ns) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_by_time ON logs (time_ns);
CREATE INDEX IF NOT EXISTS logs_by_service ON logs (service, time_ns);
CREATE INDEX IF NOT EXISTS logs_by_order ON logs (order_id) WHERE order_id IS NOT NULL;
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the store at ``path``; its directory is created too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL loses nothing committed when the process dies (only on power loss).
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version < VERSION:  # a store from before the search: index the spans it holds
        with conn:
            conn.execute(f"{INDEX_ATTRIBUTES} 1")
            conn.execute(f"PRAGMA user_version = {VERSION}")
    return conn
