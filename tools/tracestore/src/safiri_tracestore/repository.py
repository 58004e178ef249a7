"""The store as the event loop sees it: every SQLite call runs on a thread of its own.

One writer thread holds the only connection that writes (SQLite allows one writer); one
reader thread holds another, so queries never wait behind a large insert (WAL lets readers
run beside the writer).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .database import Database, Search
from .model import LogRow, SpanRow, TraceSummary, TraceView
from .params import RecentQuery
from .schema import connect
from .waterfall import summarise

__all__ = ["TraceRepository"]

T = TypeVar("T")
_PAGE = 200  # candidate traces classified per query
_MAX_CANDIDATES = 20 * _PAGE


class _DatabaseThread:
    def __init__(self, path: Path, name: str) -> None:
        self._db: Database | None = None
        self._executor = ThreadPoolExecutor(1, name, initializer=self._open, initargs=(path,))

    def _open(self, path: Path) -> None:
        self._db = Database(connect(path))

    async def run(self, query: Callable[[Database], T]) -> T:
        def call() -> T:
            if self._db is None:
                raise RuntimeError("the trace store database did not open")
            return query(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        try:
            await self.run(Database.close)
        finally:
            self._executor.shutdown(wait=False)


class TraceRepository:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer: _DatabaseThread | None = None
        self._reader: _DatabaseThread | None = None

    async def open(self) -> None:
        self._writer = _DatabaseThread(self._path, "tracestore-writer")
        await self._writer.run(Database.ping)  # creates the file and schema before any read
        self._reader = _DatabaseThread(self._path, "tracestore-reader")

    async def close(self) -> None:
        for thread in (self._reader, self._writer):
            if thread is not None:
                await thread.close()

    def _threads(self) -> tuple[_DatabaseThread, _DatabaseThread]:
        if self._writer is None or self._reader is None:
            raise RuntimeError("TraceRepository.open() was not awaited")
        return self._writer, self._reader

    async def add(self, spans: Sequence[SpanRow], logs: Sequence[LogRow]) -> None:
        await self._threads()[0].run(lambda db: db.add(spans, logs))

    async def trace(self, trace_ids: Sequence[str], order_id: str | None = None) -> TraceView:
        def query(db: Database) -> TraceView:
            spans = db.spans(trace_ids) if trace_ids else []
            logs = db.logs(trace_ids, order_id)
            order = order_id or next((s.order_id for s in spans if s.order_id), None)
            return TraceView(list(trace_ids), spans, logs, order)

        return await self._threads()[1].run(query)

    async def order(self, order_id: str) -> TraceView:
        trace_ids = await self._threads()[1].run(lambda db: db.trace_ids_of_order(order_id))
        return await self.trace(trace_ids, order_id)

    async def recent(self, query: RecentQuery) -> list[TraceSummary]:
        """The traces ``query`` asks for, each classified on all its spans."""

        since_ns, until_ns = query.window_ns
        search = Search(until_ns, query.service, query.attributes, query.min_duration_ns or None)

        def page(db: Database, *, offset: int) -> tuple[list[TraceSummary], int]:
            trace_ids = db.recent_trace_ids(
                since_ns,
                _PAGE,
                offset,
                outcome=query.outcome,
                purchases=query.purchases,
                search=search,
            )
            spans = db.spans(trace_ids) if trace_ids else []
            by_trace: dict[str, list[SpanRow]] = {t: [] for t in trace_ids}
            for span in spans:
                by_trace[span.trace_id].append(span)
            return [summarise(t, s) for t, s in by_trace.items()], len(trace_ids)

        found: list[TraceSummary] = []
        offset = 0
        # The SQL's candidates are a superset (a refused trace may look failed from its error
        # spans alone): read pages until enough match, within a bound on the work done.
        while len(found) < query.limit and offset < _MAX_CANDIDATES:
            summaries, read = await self._threads()[1].run(functools.partial(page, offset=offset))
            found += [s for s in summaries if query.admits(s)]
            offset += read
            if read < _PAGE:
                break
        return found[: query.limit]

    async def services(self) -> list[str]:
        """The services with stored spans (the search's choices)."""
        return await self._threads()[1].run(Database.services)

    async def prune(self, retention_s: float, max_rows: int) -> int:
        cutoff = time.time_ns() - int(retention_s * 1e9)
        return await self._threads()[0].run(lambda db: db.prune(cutoff, max_rows))

    async def ping(self) -> None:
        await self._threads()[1].run(Database.ping)
