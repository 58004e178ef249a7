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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import ROOT, isolated_run, run_metadata, trips
from sustained_rate import SEED_DAYS, Load, ms, percentile

from safiri_suite.suite import Suite


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
    }
    path = ROOT / "results" / f"{args.name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["post"]))
    for name, s in sorted(report["spans"].items(), key=lambda kv: -kv[1]["p50_ms"]):
        print(f"{s['p50_ms']:9.2f} {s['p99_ms']:9.2f} {s['n']:6d}  {name}")


if __name__ == "__main__":
    asyncio.run(main())
