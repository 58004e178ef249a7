"""Purchases per second through the real suite, with telemetry on and off, alternating.

    .venv/bin/python bench/purchase_throughput.py --orders 400 --concurrency 16 --rounds 3

Each round starts the four processes twice — once with telemetry (spans and logs exported over
OTLP to a discarding endpoint in a process of its own, as a collector would be) and once with
``OTEL_SDK_DISABLED=true`` for gateway, ticketing and payment — and drives the same load through
the gateway: ``--orders`` purchases, ``--concurrency`` POSTs at a time. The M-Pesa simulator
stands in for the provider, which is not Safiri's to instrument: its telemetry is the same (on)
in both variants.

``--completion db`` (the default) counts a purchase when ticketing's database shows its order
CONFIRMED, watched from outside the services, so the figure is what the purchase pipeline
sustains. ``--completion poll`` has each buyer poll ``GET /orders/{id}`` every
``--poll-interval`` seconds instead, as a client would; at 0.02 s (the first version of this
benchmark) the polls, three spans each, outnumber the purchase's own spans.

The figures and the machine go to bench/results/<name>.json. The ratios are taken within each
round (a variant against "off" of the same round) and their median reported: these machines are
shared and their speed drifts by tens of per cent from one minute to the next. ``--together``
goes further: each round runs every variant's suite at the same time, each under its own load,
so all of them see the same drift; their CPU per purchase is then the figure to compare (the
throughput of a variant that finishes later is helped by the machine the others left it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from common import ROOT, isolated_run, run_metadata, trips

from safiri_suite.suite import Suite, SuiteConfig


async def _drive(config: SuiteConfig, key: str, args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
    auth = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    confirmed_at: list[float] = []
    order_ids: list[str] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as http:
        trip_ids = await trips(http, base, auth)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(args.orders):
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
                order_ids.append(data["order_id"])
                if args.completion == "db":
                    continue
                while True:
                    async with http.get(f"{base}/orders/{data['order_id']}", headers=auth) as r:
                        status = (await r.json())["status"]
                    if status != "PENDING_PAYMENT":
                        break
                    await asyncio.sleep(args.poll_interval)
                if status == "CONFIRMED":
                    confirmed_at.append(time.perf_counter())
                else:
                    failures += 1

        await asyncio.gather(*(buyer() for _ in range(args.concurrency)))
    if args.completion == "db":
        confirmed, seconds = await _confirmed_in_database(config, order_ids)
        failures += len(order_ids) - confirmed
    else:
        confirmed = len(confirmed_at)
        seconds = (max(confirmed_at) if confirmed_at else time.perf_counter()) - started
    latencies.sort()
    return {
        "confirmed": confirmed,
        "failed": failures,
        "seconds": round(seconds, 3),
        "purchases_per_second": round(confirmed / seconds, 2),
        "post_orders_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "post_orders_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


async def _confirmed_in_database(config: SuiteConfig, order_ids: list[str]) -> tuple[int, float]:
    """Wait until every order is final; the confirmed ones and the seconds from the first
    order's creation to the last confirmation, both by the database's own clock."""
    conn = await asyncpg.connect(config.database_url("ticketing"))
    try:
        deadline = time.monotonic() + 120
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'CONFIRMED') AS confirmed,"
                " count(*) FILTER (WHERE status = 'PENDING_PAYMENT') AS pending,"
                " extract(epoch FROM max(updated_at) FILTER (WHERE status = 'CONFIRMED')"
                "   - min(created_at)) AS seconds"
                " FROM orders WHERE order_id = ANY($1::uuid[])",
                order_ids,
            )
            assert row is not None
            if row["pending"] == 0 or time.monotonic() > deadline:
                return int(row["confirmed"]), float(row["seconds"] or 0.0)
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


# Safiri's own processes: the simulator stands in for the provider and is not measured.
MEASURED = ("gateway", "ticketing", "payment")


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU time of each process so far (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


async def _exported(sink_url: str, purchases: int) -> dict[str, dict[str, float]]:
    """Spans and log records the sink received per purchase, by service, and spans by name."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sink_url}/counts") as response:
            counts: dict[str, dict[str, int]] = await response.json()
        async with http.get(f"{sink_url}/counts", params={"by": "name"}) as response:
            counts["span_names"] = await response.json()
    return {
        kind: {s: round(n / max(purchases, 1), 2) for s, n in sorted(by_service.items())}
        for kind, by_service in counts.items()
    }


# Each variant is a set of environment variables for gateway, ticketing and payment. "on" and
# "off" are the comparison the benchmark exists for; the others take telemetry apart to show
# what each piece costs (``--variants on,off,no-log-export,not-sampled``).
VARIANTS: dict[str, dict[str, str]] = {
    "on": {"OTEL_SDK_DISABLED": "false"},
    "off": {"OTEL_SDK_DISABLED": "true"},
    # Spans exported, log records only printed.
    "no-log-export": {"OTEL_SDK_DISABLED": "false", "OTEL_LOGS_EXPORTER": "none"},
    # Spans recorded and ended as shipped, none exported (no batch processor, no encoding, no
    # HTTP): how much of the spans' cost is their export.
    "no-span-export": {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "none"},
    # Every span sampled out: context propagation, metrics and logs, no span recorded.
    "not-sampled": {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_SAMPLER": "always_off"},
    # As "not-sampled", and log records only printed: what the tracing machinery costs alone.
    "not-sampled-no-log-export": {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_SAMPLER": "always_off",
        "OTEL_LOGS_EXPORTER": "none",
    },
    # As "not-sampled", through the parent-based sampler the ratio variant uses.
    "parentbased-off": {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_SAMPLER": "parentbased_always_off",
    },
    # The event loop, telemetry on as shipped (#16's first lever): "on" runs the default loop.
    "asyncio-loop": {"OTEL_SDK_DISABLED": "false", "SAFIRI_EVENT_LOOP": "asyncio"},
    "uvloop": {"OTEL_SDK_DISABLED": "false", "SAFIRI_EVENT_LOOP": "uvloop"},
    # One purchase in ten traced (decided at the gateway, followed downstream); logs all exported.
    "sampled-10pct": {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}


# Every variant's processes get these beside the variant's own variables (recorded in the report).
SIMULATOR_ENV = {"mpesa-simulator": {"OTEL_SDK_DISABLED": "false"}}


def _common_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0",
        "SAFIRI_SEED_DAYS": "4",
        "SAFIRI_LOG_LEVEL": "WARNING" if args.quiet_logs else "INFO",
    }


async def _one(
    variant: str, args: argparse.Namespace, tag: str, start: asyncio.Barrier | None = None
) -> dict[str, Any]:
    async with isolated_run(
        f"{tag}-{variant}",
        log_dir=Path(args.log_dir) / f"{tag}-{variant}",
        extra_env={**_common_env(args), **VARIANTS[variant]},
        service_env=SIMULATOR_ENV,
    ) as (config, otlp_url):
        async with Suite(config) as suite:
            pids = {s: suite.processes[s].pid for s in MEASURED}
            if start is not None:
                await start.wait()  # --together: every variant's load starts at once
            cpu_before = _cpu_seconds(pids)
            result = await _drive(config, config.api_keys[0], args)
            cpu_after = _cpu_seconds(pids)
            per_purchase = {
                s: round((cpu_after[s] - cpu_before[s]) * 1000 / max(result["confirmed"], 1), 2)
                for s in MEASURED
            }
            result["services_cpu_ms_per_purchase"] = round(sum(per_purchase.values()), 2)
            result["cpu_ms_per_purchase_by_service"] = per_purchase
        if variant != "off":  # the suite has stopped: everything is flushed
            result["exported_per_purchase"] = await _exported(otlp_url, result["confirmed"])
        return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-dir", default="/tmp/safiri-bench-logs")
    parser.add_argument("--quiet-logs", action="store_true")
    parser.add_argument("--name", default="telemetry_overhead")
    parser.add_argument("--completion", choices=("db", "poll"), default="db")
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument(
        "--variants",
        default="on,off",
        help=f"comma-separated, from {', '.join(VARIANTS)}; the baseline is always run",
    )
    parser.add_argument(
        "--baseline",
        default="off",
        help="the variant every other is compared with, round by round (default off: telemetry's"
        " cost); e.g. --baseline asyncio-loop --variants uvloop for a lever's A/B",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="run the variants' suites at the same time, sharing the machine's drift: compare"
        " CPU per purchase (throughput then measures a race, not a rate)",
    )
    args = parser.parse_args()
    # The baseline is what every variant is compared with: always run, and first.
    base = args.baseline
    variants = [base] + [v for v in dict.fromkeys(args.variants.split(",")) if v != base]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    tag = uuid.uuid4().hex[:6]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for round_no in range(args.rounds):
        if args.together:
            start = asyncio.Barrier(len(variants))
            results = await asyncio.gather(
                *(_one(v, args, f"{tag}{round_no}", start) for v in variants)
            )
            for variant, result in zip(variants, results, strict=True):
                runs[variant].append(result)
                print(f"round {round_no} telemetry {variant}: {result}", file=sys.stderr)
            continue
        # Alternate the order so no variant always runs first (or last) in a round.
        order = variants if round_no % 2 == 0 else variants[::-1]
        for variant in order:
            result = await _one(variant, args, f"{tag}{round_no}")
            runs[variant].append(result)
            print(f"round {round_no} telemetry {variant}: {result}", file=sys.stderr)
    rates = {v: statistics.median(r["purchases_per_second"] for r in runs[v]) for v in runs}
    cpu = {v: statistics.median(r["services_cpu_ms_per_purchase"] for r in runs[v]) for v in runs}
    # The machine's speed drifts between rounds (a shared host: the same variant has run 40 %
    # slower ten minutes later), so each variant is compared with "off" of its own round, and
    # the median of those per-round ratios is the figure.
    by_round = {
        v: [
            (variant["purchases_per_second"], variant["services_cpu_ms_per_purchase"])
            for variant in runs[v]
        ]
        for v in runs
    }
    pairs = {v: list(zip(by_round[v], by_round[base], strict=True)) for v in runs}
    ratio = {v: round(statistics.median(a[0] / b[0] for a, b in pairs[v]), 3) for v in runs}
    # The same question asked of CPU instead of throughput: how much of the services' CPU per
    # purchase is left for the work when telemetry is on (1.0 = telemetry is free).
    cpu_ratio = {v: round(statistics.median(b[1] / a[1] for a, b in pairs[v]), 3) for v in runs}
    report = {
        "benchmark": "purchase throughput, telemetry on vs OTEL_SDK_DISABLED=true"
        if base == "off"
        else f"purchase throughput and CPU per purchase, variants against {base}",
        **run_metadata(
            variant={
                "variants": {v: VARIANTS[v] for v in variants},
                "together": args.together,
                "environment": _common_env(args),
                "service_environment": SIMULATOR_ENV,
            }
        ),
        "parameters": vars(args),
        "runs": runs,
        "median_purchases_per_second": rates,
        "median_services_cpu_ms_per_purchase": cpu,
        "baseline": base,
        # Per-round ratios to the baseline, their median: throughput variant/baseline, and CPU
        # per purchase baseline/variant (above 1: the variant costs less CPU per purchase).
        "ratio_over_baseline": ratio,
        "cpu_ratio_baseline_over": cpu_ratio,
    }
    if base == "off":  # the names telemetry's write-ups read
        report |= {
            "ratio_on_over_off": ratio.get("on"),
            "ratio_over_off": ratio,
            "cpu_ratio_off_over_on": cpu_ratio.get("on"),
            "cpu_ratio_off_over": cpu_ratio,
        }
    out = ROOT / "results" / f"{args.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("purchases/s", json.dumps(rates), f"per-round ratio to {base}", json.dumps(ratio))
    print("CPU ms/purchase", json.dumps(cpu), f"per-round {base}/variant", json.dumps(cpu_ratio))
    print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
