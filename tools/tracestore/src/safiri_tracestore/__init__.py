"""Safiri's embedded trace store: the default OTLP/HTTP endpoint when no collector is set.

It keeps the spans and log lines the services export in a SQLite file, answers "what
happened to this trace / this order" over HTTP (``/api/...``) and draws waterfalls (``/``).
Start it with ``async with running_store(host, port, path) as url:`` or
``python -m safiri_tracestore``.
"""

from __future__ import annotations

from .app import create_app, running_store
from .model import LogRow, RootCause, SpanRow, TraceSummary, TraceView
from .settings import StoreSettings

__all__ = [
    "LogRow",
    "RootCause",
    "SpanRow",
    "StoreSettings",
    "TraceSummary",
    "TraceView",
    "create_app",
    "running_store",
]
