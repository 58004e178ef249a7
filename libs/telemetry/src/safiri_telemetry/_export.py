"""Span export that never slows a request down, whatever the collector is doing.

Ended spans wait in a bounded queue and leave in batches from a background thread (the SDK's
``BatchSpanProcessor``). When the queue is full a span is dropped at once instead of waited for;
when an export fails, its batch is dropped. Either way the spans are counted in
``telemetry_export_failures_total{signal="traces"}`` and reported in one warning per interval,
instead of a log line for every batch and every retry. Shutdown is bounded: a service stops
within seconds even when the collector is unreachable.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from loguru import logger
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, Counter

from ._config import BatchSettings

__all__ = [
    "EXPORT_FAILED",
    "QUEUE_FULL",
    "SHUTDOWN",
    "BoundedBatchSpanProcessor",
    "DroppedSpans",
]

# Why spans were dropped, as the warning reports them.
QUEUE_FULL = "queue_full"
EXPORT_FAILED = "export_failed"
SHUTDOWN = "shutdown"  # still queued when shutdown ran out of time, or ended after it

REPORT_INTERVAL_SECONDS = 30.0
SHUTDOWN_TIMEOUT_SECONDS = 3.0
_ERROR_CHARS = 300

# The OTLP exporters log every retry and every failed batch on these loggers.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)


class DroppedSpans:
    """Spans that never reached the collector.

    Each is counted at once in ``telemetry_export_failures_total{signal="traces"}`` (in
    ``registry``, so on the service's ``/metrics``); a warning reports them at most once per
    ``interval`` seconds, with how many were dropped since the previous warning and why.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        destination: str = "",
        interval: float = REPORT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._total = Counter(
            "telemetry_export_failures",
            "Telemetry items that never reached the collector: the export failed or the queue"
            " was full.",
            ["signal"],
            registry=registry,
        ).labels(signal="traces")
        self._destination = destination
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._unreported: dict[str, int] = {}
        self._last_error: str | None = None
        self._next_report = -math.inf

    def add(self, count: int, cause: str, error: str | None = None) -> None:
        """Count ``count`` dropped spans; warn now if the last warning is old enough."""
        if count <= 0:
            return
        self._total.inc(count)
        with self._lock:
            self._unreported[cause] = self._unreported.get(cause, 0) + count
            if error is not None:
                self._last_error = error
            if self._clock() < self._next_report:
                return
            unreported, last_error = self._take()
        self._warn(unreported, last_error)

    def report(self) -> None:
        """Warn about the spans not yet reported, however recent the last warning (shutdown)."""
        with self._lock:
            if not self._unreported:
                return
            unreported, last_error = self._take()
        self._warn(unreported, last_error)

    def _take(self) -> tuple[dict[str, int], str | None]:
        taken = self._unreported, self._last_error
        self._unreported, self._last_error = {}, None
        self._next_report = self._clock() + self._interval
        return taken

    def _warn(self, unreported: dict[str, int], last_error: str | None) -> None:
        total = sum(unreported.values())
        causes = ", ".join(f"{cause}: {n}" for cause, n in unreported.items())
        logger.bind(
            signal="traces",
            dropped_spans=total,
            dropped_by_cause=unreported,
            export_error=last_error,
            otlp_endpoint=self._destination,
        ).warning(
            f"spans not exported since the last report: {total} ({causes});"
            " telemetry_export_failures_total counts them all"
        )


class _HeldRecords(logging.Filter):
    """Keeps the exporter's per-batch records off the log while one of our exports runs.

    Only records logged on the exporting thread during a wrapped export are held back; they
    become the ``export_error`` of the next periodic warning. Everything else passes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextmanager
    def holding(self) -> Iterator[list[logging.LogRecord]]:
        held: list[logging.LogRecord] = []
        self._local.held = held
        try:
            yield held
        finally:
            self._local.held = None

    def filter(self, record: logging.LogRecord) -> bool:
        held: list[logging.LogRecord] | None = getattr(self._local, "held", None)
        if held is None:
            return True
        held.append(record)
        return False


# One filter per process, like the loggers it is attached to.
_HELD = _HeldRecords()


def _hold_exporter_records() -> _HeldRecords:
    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(_HELD)  # no-op when already attached
    return _HELD


def _first_message(records: list[logging.LogRecord]) -> str | None:
    # The first record names the cause (connection refused, 404); later ones only repeat it.
    return records[0].getMessage()[:_ERROR_CHARS] if records else None


class _ReportingExporter(SpanExporter):
    """Counts the spans of every failed batch; quiet, and stoppable from another thread."""

    def __init__(
        self,
        exporter: SpanExporter,
        dropped: DroppedSpans,
        take: Callable[[int], bool],
        on_failure: Callable[[], None],
    ) -> None:
        self._exporter = exporter
        self._dropped = dropped
        self._take = take
        self._on_failure = on_failure
        self._held = _hold_exporter_records()
        self._lock = threading.Lock()
        self._stopped = False
        self.failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._take(len(spans)):
            return SpanExportResult.FAILURE  # abandoned at shutdown, counted there
        error: str | None = None
        with self._held.holding() as records:
            try:
                result = self._exporter.export(spans)
            except Exception as exc:  # an exporter bug must not kill the export thread
                result, error = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        self.failing = result is not SpanExportResult.SUCCESS
        if self.failing:
            error = error or _first_message(records) or "the exporter reported a failure"
            self._dropped.add(len(spans), EXPORT_FAILED, error)
            self._on_failure()
        return result

    def stop(self) -> None:
        """Shut the exporter down once; this also cuts short a retry that is waiting."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        with self._held.holding():
            self._exporter.shutdown()

    def shutdown(self) -> None:
        self.stop()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class BoundedBatchSpanProcessor(SpanProcessor):
    """The SDK's ``BatchSpanProcessor`` with its queue bound enforced and counted here.

    A span is queued only while fewer than ``max_queue_size`` wait; otherwise it is dropped
    and counted at once, so ending a span never waits for the collector. The SDK's own queue
    never overflows (it would drop silently). ``shutdown`` exports what is queued but returns
    within ``shutdown_timeout`` seconds, dropping and counting whatever is left; once an
    export has failed it drops the rest at once instead of trying the collector again.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        settings: BatchSettings,
        dropped: DroppedSpans,
        *,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT_SECONDS,
    ) -> None:
        self._capacity = settings.max_queue_size
        self._dropped = dropped
        self._shutdown_timeout = shutdown_timeout
        self._lock = threading.Lock()
        self._waiting = 0  # handed to the SDK's queue, not yet taken by an export
        self._closed = False
        self._abandoned = False
        self._exporter = _ReportingExporter(exporter, dropped, self._taken, self._export_failed)
        self._batch = BatchSpanProcessor(
            self._exporter,
            max_queue_size=settings.max_queue_size,
            schedule_delay_millis=settings.schedule_delay_millis,
            max_export_batch_size=settings.max_export_batch_size,
            export_timeout_millis=settings.export_timeout_millis,
        )

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._lock:
            if self._closed:
                cause = SHUTDOWN
            elif self._waiting >= self._capacity:
                cause = QUEUE_FULL
            else:
                self._waiting += 1
                self._batch.on_end(span)  # a deque append: never blocks
                return
        self._dropped.add(1, cause)

    def _taken(self, count: int) -> bool:
        """The export thread took ``count`` spans; False if shutdown already dropped them."""
        with self._lock:
            if self._abandoned:
                return False
            self._waiting -= count
            return True

    def _export_failed(self) -> None:
        with self._lock:
            closed = self._closed
        if closed:
            # Shutting down and the collector just failed us: waiting only delays the exit.
            self._abandon()

    def _abandon(self) -> None:
        with self._lock:
            if self._abandoned:
                return
            self._abandoned = True
            left, self._waiting = self._waiting, 0
        self._dropped.add(left, SHUTDOWN)
        self._exporter.stop()

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._exporter.failing:
            self._abandon()  # the collector did not take the last batch: do not wait for it
        bounded(self._batch.shutdown, self._shutdown_timeout)
        self._abandon()  # whatever the export thread has not taken by now is dropped
        self._dropped.report()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # The SDK's force_flush ignores its timeout and exports everything, however long.
        return bounded(self._batch.force_flush, timeout_millis / 1000)


def bounded(step: Callable[[], object], timeout: float) -> bool:
    """Run ``step`` for at most ``timeout`` seconds; a late step finishes on its own (in a daemon
    thread, so it never holds the process's exit)."""
    worker = threading.Thread(target=step, name="safiri-export-stop", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()
