"""Unit tests export nothing unless they ask to, and leave no OpenTelemetry export thread behind.

A Telemetry set up with the default exporters and never shut down keeps a batch-export thread
retrying an endpoint nobody listens on; its backoff draws on the global ``random`` module, and a
later hypothesis test then failed at random ("Do not use the `random` module inside
strategies"). So unit tests run with ``OTEL_TRACES_EXPORTER=none`` and ``OTEL_LOGS_EXPORTER=none``
in the environment (a test of exporting passes its own ``env``), and a test that still leaves an
export thread running fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


def _export_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("OtelBatch") and t.is_alive()}


@pytest.fixture(autouse=True)
def no_export_thread_left_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    before = _export_threads()
    yield
    left = _export_threads() - before
    if left:
        pytest.fail(
            f"the test left {sorted(t.name for t in left)} running: shut its Telemetry down,"
            " or set it up to export nothing (OTEL_TRACES_EXPORTER/OTEL_LOGS_EXPORTER=none, or"
            " a span_processor of its own)"
        )
