"""Purchases per second through the real suite, with telemetry on and off, alternating.

    .venv/bin/python bench/purchase_throughput.py --orders 400 --concurrency 16 --rounds 3

Each round starts the four processes twice — once with telemetry (spans and logs exported over
OTLP to a discarding endpoint in a process of its own, as a collector would be) and once with
``OTEL_SDK_DISABLED=true`` — and drives the same load through the gateway: ``--orders``
purchases, ``--concurrency`` at a time, each counted when its order reaches CONFIRMED. The
figures and the machine go to bench/results/<name>.json; compare the variants as the ratio
within one run (these machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import ROOT, machine, otlp_sink, suite_config, trips, vhost

from safiri.suite import Suite, SuiteConfig, drop_databases


async def _drive(config: SuiteConfig, key: str, orders: int, concurrency: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
    auth = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    confirmed_at: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as http:
        trip_ids = await trips(http, base, auth)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(orders):
            queue.put_nowait(i)
        started = time.perf_counter()

        async def buyer() -> None:
            nonlocal failures
            while not queue.empty():
                i = queue.get_nowait()
                body = {
                    "trip_id": trip_ids[i % len(trip_ids)],
                    "seat_count": 1,
                    "phone": f"2547{20_000_000 + i:08d}",
                }
                t0 = time.perf_counter()
                async with http.post(
                    f"{base}/orders",
                    json=body,
                    headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                ) as r:
                    data = await r.json(content_type=None)
                latencies.append(time.perf_counter() - t0)
                if r.status != 202:
                    failures += 1
                    continue
                while True:
                    async with http.get(f"{base}/orders/{data['order_id']}", headers=auth) as r:
                        status = (await r.json())["status"]
                    if status != "PENDING_PAYMENT":
                        break
                    await asyncio.sleep(0.02)
                if status == "CONFIRMED":
                    confirmed_at.append(time.perf_counter())
                else:
                    failures += 1

        await asyncio.gather(*(buyer() for _ in range(concurrency)))
    elapsed = (max(confirmed_at) if confirmed_at else time.perf_counter()) - started
    latencies.sort()
    return {
        "confirmed": len(confirmed_at),
        "failed": failures,
        "seconds": round(elapsed, 3),
        "purchases_per_second": round(len(confirmed_at) / elapsed, 2),
        "post_orders_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "post_orders_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


async def _one(variant: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    vhost_name = f"safiri-bench-{tag}-{variant}"
    vhost("add_vhost", vhost_name)
    key = secrets.token_urlsafe(12)
    try:
        async with otlp_sink() as otlp_url:
            config = suite_config(
                key=key,
                database_prefix=f"safiri_bench_{tag}_{variant}",
                vhost_name=vhost_name,
                otlp_endpoint=otlp_url,
                log_dir=Path(args.log_dir) / f"{tag}-{variant}",
                extra_env={
                    "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0",
                    "SAFIRI_SEED_DAYS": "4",
                    "OTEL_SDK_DISABLED": "true" if variant == "off" else "false",
                    "SAFIRI_LOG_LEVEL": "WARNING" if args.quiet_logs else "INFO",
                },
            )
            try:
                async with Suite(config):
                    result = await _drive(config, key, args.orders, args.concurrency)
            finally:
                await drop_databases(config)
            return result
    finally:
        vhost("delete_vhost", vhost_name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-dir", default="/tmp/safiri-bench-logs")
    parser.add_argument("--quiet-logs", action="store_true")
    parser.add_argument("--name", default="telemetry_overhead")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for round_no in range(args.rounds):
        order = ("on", "off") if round_no % 2 == 0 else ("off", "on")
        for variant in order:
            result = await _one(variant, args, f"{tag}{round_no}")
            runs[variant].append(result)
            print(f"round {round_no} telemetry {variant}: {result}", file=sys.stderr)
    on = statistics.median(r["purchases_per_second"] for r in runs["on"])
    off = statistics.median(r["purchases_per_second"] for r in runs["off"])
    report = {
        "benchmark": "purchase throughput, telemetry on vs OTEL_SDK_DISABLED=true",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": vars(args),
        "runs": runs,
        "median_purchases_per_second": {"on": on, "off": off},
        "ratio_on_over_off": round(on / off, 3) if off else None,
    }
    out = ROOT / "results" / f"{args.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["median_purchases_per_second"]), "ratio", report["ratio_on_over_off"])
    print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
