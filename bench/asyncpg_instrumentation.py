"""CPU per PostgreSQL query with and without opentelemetry-instrumentation-asyncpg.

    .venv/bin/python bench/asyncpg_instrumentation.py [--queries 3000] [--rounds 5]

Against the machine's PostgreSQL (127.0.0.1:5432, a database of its own, dropped after), one
connection runs the same short statement (a primary-key lookup, the shape of most of a
purchase's queries) ``--queries`` times, with the SDK recording every span into a batch
processor whose exporter discards (so the figure is the instrumentation's and the SDK's, not a
collector's). Variants alternate within each round; the process's CPU time is counted.

Figures (µs of CPU per query, the instrumented/plain ratio, and the machine) go to
bench/results/asyncpg_instrumentation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from provenance import run_metadata

RESULTS = Path(__file__).resolve().parent / "results" / "asyncpg_instrumentation.json"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _queries(dsn: str, count: int) -> float:
    connection = await asyncpg.connect(dsn)
    try:
        tracer = trace.get_tracer("bench")
        started = time.process_time()
        for i in range(count):
            with tracer.start_as_current_span("purchase"):  # a parent, as in a request
                await connection.fetchrow("SELECT id, seats FROM trips WHERE id = $1", i % 100)
        return (time.process_time() - started) / count * 1e6
    finally:
        await connection.close()


async def main(queries: int, rounds: int) -> dict[str, object]:
    name = f"bench_asyncpg_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{POSTGRES}/{name}"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=100_000))
    trace.set_tracer_provider(provider)
    instrumentor = AsyncPGInstrumentor()
    runs: dict[str, list[float]] = {"plain": [], "instrumented": []}
    try:
        setup = await asyncpg.connect(dsn)
        await setup.execute("CREATE TABLE trips (id int PRIMARY KEY, seats int NOT NULL)")
        await setup.execute("INSERT INTO trips SELECT g, 44 FROM generate_series(0, 99) g")
        await setup.close()
        await _queries(dsn, queries // 10)  # warm up
        for _ in range(rounds):
            runs["plain"].append(round(await _queries(dsn, queries), 2))
            instrumentor.instrument(tracer_provider=provider)
            runs["instrumented"].append(round(await _queries(dsn, queries), 2))
            instrumentor.uninstrument()
            provider.force_flush()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        provider.shutdown()
    best = {variant: min(values) for variant, values in runs.items()}
    return {
        "benchmark": "CPU µs per query (process time), best of rounds; variants alternate",
        **run_metadata(
            variant={
                "plain": "asyncpg, no instrumentation",
                "instrumented": "opentelemetry-instrumentation-asyncpg, the SDK recording"
                " into a discarding exporter",
            }
        ),
        "parameters": {"queries": queries, "rounds": rounds},
        "runs_us_per_query": runs,
        "best_us_per_query": best,
        "instrumented_over_plain": round(best["instrumented"] / best["plain"], 2),
        "added_us_per_query": round(best["instrumented"] - best["plain"], 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(main(args.queries, args.rounds))
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: figures[k] for k in ("best_us_per_query", "instrumented_over_plain")}))
