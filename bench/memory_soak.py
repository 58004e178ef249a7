"""Each process's RSS over a sustained purchase run, telemetry on and off (#16's memory target).

    .venv/bin/python bench/memory_soak.py [--rate 50] [--minutes 10] [--variants on,off]

For each variant in turn (the environments of bench/purchase_throughput.py's VARIANTS: "on" is
telemetry as shipped, "off" OTEL_SDK_DISABLED=true for gateway, ticketing and payment; the M-Pesa
simulator's telemetry is on in both), starts an isolated suite (the simulator's callback delay 0,
enough timetable days for every order), records each process's RSS once ready and idle, then
offers POST /orders at ``--rate`` (open loop, bench/sustained_rate.py's load) for ``--minutes``,
the first ``--warmup-seconds`` of them the warm-up. Every ``--sample-seconds`` (and exactly at
the end of warm-up and of the run) it reads each process's VmRSS from /proc/<pid>/status,
beside the POSTs answered so far and the orders CONFIRMED in ticketing's database.

The report (bench/results/<name>.json) has, per variant, the time series and per process the
RSS idle, at the end of warm-up and at the end, the growth end / end of warm-up and the max
under load, the same for the sum of the three services and of the whole suite, and #16's
targets evaluated: each service <= 100 MB under load, growth <= 1.10, and RSS with telemetry
on <= 1.10 x off (idle and max under load). MB here is MiB (VmRSS kB / 1024).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SERVICES = ("gateway", "ticketing", "payment")
# This script's own process: the load generator, and the suite's log shipper (safiri_suite.
# logship) when the services print their log lines. Sampled, not summed, not judged.
SUPERVISOR = "supervisor"
LIMIT_MB = 100.0
GROWTH_LIMIT = 1.10
TELEMETRY_LIMIT = 1.10
IDLE_SETTLE_SECONDS = 5.0  # after every /readyz answers 200, before the idle reading
GRACE_SECONDS = 30.0  # for the last orders to be settled after the load stops
SEATS_PER_DAY = 22 * 40  # the timetable's departures a day x SEATS_PER_BUS (ticketing)

Series = Sequence[tuple[float, Mapping[str, float | None]]]


# --- the pure part: readings, figures, targets ---------------------------------------------------


def status_mb(text: str, field: str = "VmRSS") -> float | None:
    """``field`` of a /proc/<pid>/status text in MiB (None if absent: a kernel thread)."""
    m = re.search(rf"^{field}:\s*(\d+)\s*kB", text, re.MULTILINE)
    return round(int(m[1]) / 1024, 2) if m else None


def sample_times(duration: float, step: float, warmup: float) -> list[float]:
    """Every ``step`` s from 0, and exactly the end of warm-up and the end of the run."""
    times = {min(k * step, duration) for k in range(math.floor(duration / step) + 1)}
    return sorted(times | {warmup, duration})


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _figures(
    idle: float | None, values: list[tuple[float, float | None]], warmup: float
) -> dict[str, Any]:
    present = [mb for _, mb in values if mb is not None]
    at_warmup = next((mb for t, mb in values if t >= warmup), None)
    after = [mb for t, mb in values if t >= warmup and mb is not None]
    end = values[-1][1] if values else None
    return {
        "idle_mb": idle,
        "at_warmup_mb": at_warmup,
        "at_end_mb": end,
        "growth": _ratio(end, at_warmup),
        "max_under_load_mb": max(present, default=None),
        "max_after_warmup_mb": max(after, default=None),
        "peak_growth": _ratio(max(after, default=None), at_warmup),
    }


def _total(readings: Mapping[str, float | None], names: Iterable[str]) -> float | None:
    values = [readings.get(n) for n in names]
    if not values or any(v is None for v in values):
        return None  # a process missing from the reading: no sum rather than a low one
    return round(sum(v for v in values if v is not None), 2)


def variant_figures(
    idle: Mapping[str, float | None], series: Series, warmup_seconds: float
) -> dict[str, Any]:
    """Per process (and for the services' and the suite's sums): RSS idle, at the end of
    warm-up (the first sample at or after it) and at the end, growth end / end of warm-up, and
    the max under load; with the series itself, as [[t, {process: MB}], ...]."""
    names = list(dict.fromkeys([*idle, *(p for _, r in series for p in r)]))
    suite = [n for n in names if n != SUPERVISOR]

    def of(name: str) -> dict[str, Any]:
        return _figures(idle.get(name), [(t, r.get(name)) for t, r in series], warmup_seconds)

    def summed(group: Sequence[str]) -> dict[str, Any]:
        values = [(t, _total(r, group)) for t, r in series]
        return _figures(_total(idle, group), values, warmup_seconds)

    return {
        "series": [[t, dict(r)] for t, r in series],
        "processes": {n: of(n) for n in names},
        "services_total": summed(SERVICES),
        "suite_total": summed(suite),
    }


def _check(
    target: str, what: str, variant: str, process: str, value: Any, limit: float
) -> dict[str, Any]:
    return {
        "target": target,
        "what": what,
        "variant": variant,
        "process": process,
        "value": value,
        "limit": limit,
        "met": value is not None and value <= limit,
    }


def evaluate(variants: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """#16's targets for each service: max under load <= 100 MB and growth <= 1.10 in every
    variant; each variant's idle and max RSS <= 1.10 x the "off" variant's, if "off" was run."""
    checks = []
    for v, figures in variants.items():
        for s in SERVICES:
            p = figures["processes"].get(s, {})
            m = p.get("max_under_load_mb")
            checks.append(_check("max_under_load_mb", "max under load MB", v, s, m, LIMIT_MB))
            g = p.get("growth")
            checks.append(_check("growth", "growth end/warm-up", v, s, g, GROWTH_LIMIT))
    not_evaluated = []
    if "off" in variants:
        off = variants["off"]["processes"]
        for v, figures in variants.items():
            if v == "off":
                continue
            for s in SERVICES:
                p, o = figures["processes"].get(s, {}), off.get(s, {})
                for key, target, what in (
                    ("max_under_load_mb", "telemetry_max_ratio", "max under load"),
                    ("idle_mb", "telemetry_idle_ratio", "idle"),
                ):
                    ratio = _ratio(p.get(key), o.get(key))
                    what = f"telemetry {v}/off, {what}"
                    checks.append(_check(target, what, v, s, ratio, TELEMETRY_LIMIT))
    else:
        not_evaluated.append("telemetry on/off: variant off was not run")
    return {
        "limits": {
            "max_under_load_mb": LIMIT_MB,
            "growth": GROWTH_LIMIT,
            "telemetry_ratio": TELEMETRY_LIMIT,
        },
        "checks": checks,
        "met": all(c["met"] for c in checks),
        "not_evaluated": not_evaluated,
    }


# --- the run --------------------------------------------------------------------------------------


def seed_days(orders: int, least: int) -> int:
    """Timetable days for ``orders`` one-seat orders round-robin over the trips listed (days 1
    to seed_days - 2), with a tenth of the seats to spare."""
    listed = math.ceil(orders / (SEATS_PER_DAY * 0.9))
    return min(max(least, listed + 2), 366)


async def _one(variant: str, args: Any, tag: str, days: int) -> dict[str, Any]:
    import asyncio
    import collections
    import os
    from pathlib import Path

    import aiohttp
    import asyncpg
    from common import isolated_run, trips
    from purchase_throughput import SIMULATOR_ENV, VARIANTS
    from sustained_rate import Load, ms, percentile

    from safiri_suite.suite import Suite

    class Watched(Load):
        """The load, its figures so far readable while it runs."""

        out: dict[str, list[Any]] | None = None

        async def _post(self, scheduled: float, out: dict[str, list[Any]] | None) -> None:
            self.out = out
            await super()._post(scheduled, out)

    def rss(suite: Suite, field: str = "VmRSS") -> dict[str, float | None]:
        pids = {n: p.pid for n, p in suite.processes.items() if p.returncode is None}
        pids[SUPERVISOR] = os.getpid()
        out: dict[str, float | None] = {}
        for name in [*suite.processes, SUPERVISOR]:
            try:
                out[name] = status_mb(Path(f"/proc/{pids[name]}/status").read_text(), field)
            except (KeyError, OSError):
                out[name] = None  # exited (the suite starts it again), or not yet
        return out

    async def orders(db: asyncpg.Connection[Any]) -> dict[str, int]:
        rows = await db.fetch("SELECT status, count(*) AS n FROM orders GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    duration = args.minutes * 60
    env = {
        "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0",
        "SAFIRI_SEED_DAYS": str(days),
        **VARIANTS[variant],
    }
    name = f"memory-{tag}-{variant}"
    async with (
        isolated_run(
            name, log_dir=Path(args.log_dir) / name, extra_env=env, service_env=SIMULATOR_ENV
        ) as (config, _),
        Suite(config) as suite,
    ):
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        idle = rss(suite)
        print(f"{variant}: idle {idle}", flush=True)
        base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
        connector = aiohttp.TCPConnector(limit=512)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            key = config.api_keys[0]
            trip_ids = await trips(
                http, base, {"Authorization": f"Bearer {key}"}, range(1, days - 1)
            )
            planned = round(args.rate * duration)
            if len(trip_ids) * 40 < planned:
                raise SystemExit(f"{len(trip_ids)} trips x 40 seats < {planned} orders")
            load = Watched(http, base, key, trip_ids)
            db = await asyncpg.connect(config.database_url("ticketing"))
            try:
                loop = asyncio.get_running_loop()
                origin = loop.time()
                driving = asyncio.create_task(load.run(args.rate, 0, duration))
                series: list[tuple[float, dict[str, float | None]]] = []
                progress: list[list[Any]] = []
                lateness = 0.0
                for t in sample_times(duration, args.sample_seconds, args.warmup_seconds):
                    delay = origin + t - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    lateness = max(lateness, loop.time() - origin - t)
                    reading = rss(suite)
                    out = load.out or {"latency": [], "orders": [], "errors": []}
                    by_status = await orders(db)
                    counts = {
                        "posts_sent": load.sent,
                        "answered": len(out["latency"]),
                        "accepted_202": len(out["orders"]),
                        "post_errors": len(out["errors"]),
                        "confirmed": by_status.get("CONFIRMED", 0),
                        "pending": by_status.get("PENDING_PAYMENT", 0),
                    }
                    series.append((t, reading))
                    progress.append([t, counts])
                    shown = ", ".join(f"{n} {mb}" for n, mb in reading.items())
                    print(f"{variant} t={t:g}s: {shown}; {counts}", flush=True)
                figures = await driving
                deadline = loop.time() + GRACE_SECONDS
                while True:  # the last orders settled, as bench/sustained_rate.py's judge
                    final = await orders(db)
                    if not final.get("PENDING_PAYMENT") or loop.time() > deadline:
                        break
                    await asyncio.sleep(0.5)
            finally:
                await db.close()
            peak = rss(suite, "VmHWM")
            restarts = dict(suite.restarts)
    result = variant_figures(idle, series, args.warmup_seconds)
    errors = collections.Counter(figures["errors"])
    return {
        "environment": env,
        "service_environment": SIMULATOR_ENV,
        **result,
        "progress": progress,
        "peak_rss_mb_kernel": peak,  # VmHWM at the end of the load: the peak between samples
        "restarts": restarts,
        "sample_lateness_max_s": round(lateness, 3),
        "load": {
            "posts": len(figures["latency"]),
            "post_errors": len(figures["errors"]),
            "post_error_statuses": {str(k): n for k, n in errors.items()},
            "orders_by_status": final,
            "confirmed": final.get("CONFIRMED", 0),
            "post_p50_ms": ms(percentile(figures["latency"], 0.5)),
            "post_p99_ms": ms(percentile(figures["latency"], 0.99)),
            "generator_lag_p99_ms": ms(percentile(figures["lag"], 0.99)),
        },
    }


async def main() -> None:
    import argparse
    import json
    import uuid
    from datetime import UTC, datetime

    from common import ROOT, run_metadata
    from purchase_throughput import SIMULATOR_ENV, VARIANTS
    from sustained_rate import SEED_DAYS

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="POST /orders per second")
    parser.add_argument("--minutes", type=float, default=10.0, help="of load, warm-up included")
    parser.add_argument("--warmup-seconds", type=float, default=120.0)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--variants", default="on,off", help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--log-dir", default="/tmp/safiri-bench-logs")
    parser.add_argument("--name", default="memory_soak")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown}; from {', '.join(VARIANTS)}")
    if not 0 <= args.warmup_seconds < args.minutes * 60 or args.sample_seconds <= 0:
        parser.error("need 0 <= --warmup-seconds < --minutes x 60 and --sample-seconds > 0")
    tag = uuid.uuid4().hex[:6]
    started = datetime.now(UTC)
    days = seed_days(round(args.rate * args.minutes * 60), SEED_DAYS)

    results = {}
    for variant in variants:
        results[variant] = await _one(variant, args, tag, days)
    targets = evaluate(results)
    report = {
        "benchmark": f"each process's RSS over {args.minutes:g} min at {args.rate:g} purchases/s"
        " (open loop), telemetry variants",
        **run_metadata(
            variant={
                "variants": {v: VARIANTS[v] for v in variants},
                "environment": {
                    "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0",
                    "SAFIRI_SEED_DAYS": str(days),
                },
                "service_environment": SIMULATOR_ENV,
            },
            when=started,
        ),
        "parameters": vars(args),
        "method": {
            "rss": "VmRSS of /proc/<pid>/status, kB / 1024 (MiB, written MB)",
            "idle": f"{IDLE_SETTLE_SECONDS:g} s after every process answered /readyz, no request"
            " made yet",
            "series": "[t seconds from the load's start, {process: MB}]; samples every"
            " --sample-seconds and exactly at the end of warm-up and of the load",
            "at_warmup_mb": "the first sample at or after --warmup-seconds",
            "growth": "at_end_mb / at_warmup_mb",
            "max_under_load_mb": "the largest sample from the load's start to its end",
            "supervisor": "this script's process: the load generator and the suite's log shipper;"
            " not in the sums, not judged",
            "confirmed": "orders CONFIRMED in ticketing's database (its own, for this run)",
        },
        "variants": results,
        "targets": targets,
    }
    path = ROOT / "results" / f"{args.name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")

    for variant, r in results.items():
        print(f"\n{variant}: {r['load']}")
        print(f"  {'process':22} {'idle':>7} {'warm-up':>8} {'end':>7} {'growth':>7} {'max':>7}")
        rows = {**r["processes"], "services (sum)": r["services_total"]}
        rows["suite (sum)"] = r["suite_total"]
        for name, f in rows.items():
            cells = [f[k] for k in ("idle_mb", "at_warmup_mb", "at_end_mb", "growth")]
            cells.append(f["max_under_load_mb"])
            print(f"  {name:22} " + " ".join(f"{'—' if c is None else c:>7}" for c in cells))
    failed = [c for c in targets["checks"] if not c["met"]]
    print(f"\ntargets: {len(targets['checks']) - len(failed)} of {len(targets['checks'])} met")
    for c in failed:
        print(f"  not met: {c['what']} {c['process']} ({c['variant']}) {c['value']} > {c['limit']}")
    for note in targets["not_evaluated"]:
        print(f"  not evaluated: {note}")
    print(f"written to {path}")


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())
