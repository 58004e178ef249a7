"""Where POST /orders' latency goes: each span's duration at a fixed open-loop rate.

.venv/bin/python bench/latency_breakdown.py --rate 20 --seconds 30

Starts an isolated suite exporting to the discarding sink (bench/otlp_sink.py), drives
POST /orders at ``--rate`` (open loop, as bench/sustained_rate.py's load), and reports the
client's POST latency beside the p50/p99 of every span the services exported during the
measured window, by service and span name. A span's duration is its own wall time including
its children; the gateway's server span is the part of the client's latency the gateway saw.
Writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench's modules, also under tests

import aiohttp
from common import ROOT, isolated_run, run_metadata, trips
from sustained_rate import SEED_DAYS, Load, ms, percentile

from safiri_suite.suite import Suite

# A span as the sink's GET /spans gives it: service, name, trace id, span id, parent span id,
# start and end (ns since the epoch).
SpanRow = Sequence[Any]


def _covered(intervals: Iterable[tuple[int, int]]) -> int:
    """How much of the time line the intervals cover, overlaps counted once."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def own_times(spans: Iterable[SpanRow]) -> dict[str, list[float]]:
    """Each span's own time in ms by "service name": its duration less the part of it its
    children (same trace, parent span id = its span id) cover, clipped to the span."""
    rows = list(spans)
    children: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for _service, _name, trace_id, _span_id, parent, start, end in rows:
        if parent:
            children.setdefault((trace_id, parent), []).append((start, end))
    own: dict[str, list[float]] = {}
    for service, name, trace_id, span_id, _parent, start, end in rows:
        inside = [
            (max(s, start), min(e, end))
            for s, e in children.get((trace_id, span_id), [])
            if min(e, end) > max(s, start)
        ]
        own.setdefault(f"{service} {name}", []).append((end - start - _covered(inside)) / 1e6)
    return own


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5) or 0.0, 3),
        "p99_ms": round(percentile(values, 0.99) or 0.0, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--log-dir", default="/tmp/safiri-bench-logs")
    parser.add_argument("--name", default="latency_breakdown")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every service")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    started = datetime.now(UTC)
    extra = dict(e.split("=", 1) for e in args.env)
    env = {"SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0", "SAFIRI_SEED_DAYS": str(SEED_DAYS), **extra}
    async with (
        isolated_run(
            f"latency-{tag}", log_dir=Path(args.log_dir) / f"latency-{tag}", extra_env=env
        ) as (config, sink),
        Suite(config),
    ):
        base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            key = config.api_keys[0]
            trip_ids = await trips(
                http, base, {"Authorization": f"Bearer {key}"}, range(1, SEED_DAYS - 1)
            )
            load = Load(http, base, key, trip_ids)
            await load.run(args.rate, 0, args.warmup_seconds)
            await asyncio.sleep(2)  # the warm-up's spans exported before recording starts
            async with http.post(f"{sink}/durations/start"):
                pass
            out = await load.run(args.rate, 0, args.seconds)
            await asyncio.sleep(7)  # the batch span processors' 5 s schedule
            async with http.get(f"{sink}/durations") as r:
                spans = await r.json()
            async with http.get(f"{sink}/spans") as r:
                own = own_times(await r.json())
    report = {
        "benchmark": f"POST /orders latency and span durations at {args.rate:g}/s, open loop",
        **run_metadata(variant={"environment": env}, when=started),
        "parameters": vars(args),
        "post": {
            "n": len(out["latency"]),
            "errors": len(out["errors"]),
            "p50_ms": ms(percentile(out["latency"], 0.5)),
            "p99_ms": ms(percentile(out["latency"], 0.99)),
        },
        "spans": {name: _summary(v) for name, v in sorted(spans.items())},
        # Each span's own time: its duration less its children's (where a span's time goes
        # when it is not in a child: the gateway's own work, a call's wire and framing).
        "own": {name: _summary(v) for name, v in sorted(own.items())},
    }
    path = ROOT / "results" / f"{args.name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["post"]))
    for name, s in sorted(report["spans"].items(), key=lambda kv: -kv[1]["p50_ms"]):
        own_s = report["own"].get(name, {})
        print(
            f"{s['p50_ms']:9.2f} {s['p99_ms']:9.2f} own {own_s.get('p50_ms', 0):7.2f}"
            f" {s['n']:6d}  {name}"
        )


if __name__ == "__main__":
    asyncio.run(main())
