"""The highest sustained purchase rate, as a ratio of raw aio-pika's rate on the same broker.

    .venv/bin/python bench/sustained_rate.py [--step-seconds 20] [--start-rate 10]
    .venv/bin/python bench/sustained_rate.py --profile-rate 40   # py-spy each service instead

Starts the suite once, telemetry on as shipped (spans and logs exported over OTLP to the
discarding bench/otlp_sink.py in a process of its own) and the simulator's callback delay at 0,
then offers open-loop load: POST /api/v1/orders arrive at a fixed rate R, whatever the answers
take. Each step runs ``--warmup-seconds`` (not counted) then ``--step-seconds`` at R, recording
every POST's latency. The step is *sustained* when, judged from ticketing's database (no GET
polling through the API, which would add load):

- every POST was answered 202 and every order it created is CONFIRMED within ``--grace-seconds``
  of the step's end;
- the confirmed rate (orders / (last confirmation - first order created)) is >= 0.95 R;
- p99 of POST /orders is <= ``--p99-ms`` (50).

R goes up by ``--factor`` until a step fails, then is bisected ``--bisect`` times between the
last sustained and the first failed rate. Before and after the ladder, a subprocess
(bench/raw_amqp.py) measures raw aio-pika on its own vhost of the same broker: one process
publishing persistent messages with confirms to a quorum queue and consuming them with manual
acks and Safiri's prefetch. The report (bench/results/sustained_rate.json) gives every step,
the raw rate and the ratio sustained purchases/s / raw msgs/s against the target (0.20).

``--profile-rate R`` instead holds open-loop load at R and records each of gateway, ticketing
and payment in turn with py-spy for ``--profile-seconds``; the summaries (own and total time by
function, grouped by library) go to bench/results/profile/.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import re
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from common import ROOT, isolated_run, run_metadata, trips, vhost

from safiri_suite.suite import Suite, SuiteConfig

TARGET_RATIO = 0.08  # issue #16: three times the 0.027 of 2026-12-06
SEED_DAYS = 30  # 22 departures a day x 40 seats: room for every order of a long ladder


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class Load:
    """Open-loop POST /orders against the gateway; trips taken round-robin across the run."""

    def __init__(self, http: aiohttp.ClientSession, base: str, key: str, trip_ids: list[str]):
        self.http = http
        self.base = base
        self.auth = {"Authorization": f"Bearer {key}"}
        self.trip_ids = trip_ids
        self.sent = 0

    async def _post(self, scheduled: float, out: dict[str, list[Any]] | None) -> None:
        i = self.sent
        self.sent += 1
        body = {
            "trip_id": self.trip_ids[i % len(self.trip_ids)],
            "seat_count": 1,
            "phone": f"2547{20_000_000 + i:08d}",
        }
        loop = asyncio.get_running_loop()
        lag = loop.time() - scheduled
        t0 = time.perf_counter()
        status, order_id = 0, None
        try:
            async with self.http.post(
                f"{self.base}/orders",
                json=body,
                headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
            ) as r:
                data = await r.json(content_type=None)
                status = r.status
                order_id = data.get("order_id") if isinstance(data, dict) else None
        except (aiohttp.ClientError, TimeoutError):
            status = -1
        latency = time.perf_counter() - t0
        if out is not None:
            out["latency"].append(latency)
            out["lag"].append(lag)
            if status == 202 and order_id:
                out["orders"].append(order_id)
            else:
                out["errors"].append(status)

    async def run(self, rate: float, warmup: float, seconds: float) -> dict[str, list[Any]]:
        """Arrivals every 1/rate s for warmup + seconds; returns the measured part's figures."""
        out: dict[str, list[Any]] = {"latency": [], "lag": [], "orders": [], "errors": []}
        loop = asyncio.get_running_loop()
        n_warm, n = round(rate * warmup), round(rate * seconds)
        start = loop.time() + 0.05
        tasks = []
        for i in range(n_warm + n):
            at = start + i / rate
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._post(at, out if i >= n_warm else None)))
        await asyncio.gather(*tasks)
        return out


async def judge(
    db: asyncpg.Connection[Any],
    rate: float,
    load: dict[str, list[Any]],
    grace: float,
    p99_limit_ms: float,
) -> dict[str, Any]:
    """The step's figures and verdict, from ticketing's orders table."""
    ids = load["orders"]
    deadline = time.perf_counter() + grace
    while True:
        pending = await db.fetchval(
            "SELECT count(*) FROM orders WHERE order_id = ANY($1::uuid[])"
            " AND status = 'PENDING_PAYMENT'",
            ids,
        )
        if pending == 0 or time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.5)
    rows = await db.fetch(
        "SELECT status, created_at, updated_at FROM orders WHERE order_id = ANY($1::uuid[])",
        ids,
    )
    confirmed = [r for r in rows if r["status"] == "CONFIRMED"]
    by_status = collections.Counter(r["status"] for r in rows)
    ttc = [(r["updated_at"] - r["created_at"]).total_seconds() for r in confirmed]
    achieved = None
    if confirmed:
        window = (
            max(r["updated_at"] for r in confirmed) - min(r["created_at"] for r in rows)
        ).total_seconds()
        achieved = len(confirmed) / window if window > 0 else None
    p99 = percentile(load["latency"], 0.99)
    why = []
    if load["errors"]:
        codes = dict(collections.Counter(load["errors"]))
        why.append(f"{len(load['errors'])} POSTs not 202: {codes}")
    if len(confirmed) < len(ids):
        why.append(f"{len(ids) - len(confirmed)} of {len(ids)} orders not CONFIRMED in grace")
    if achieved is None or achieved < 0.95 * rate:
        why.append(f"confirmed rate {achieved and round(achieved, 2)} < 0.95 x {rate:.2f}")
    if p99 is None or p99 * 1000 > p99_limit_ms:
        why.append(f"p99 POST {ms(p99)} ms > {p99_limit_ms} ms")
    return {
        "target_rps": round(rate, 2),
        "posts": len(load["latency"]),
        "post_errors": len(load["errors"]),
        "orders": len(ids),
        "orders_by_status": dict(by_status),
        "achieved_confirmed_rps": achieved and round(achieved, 2),
        "post_p50_ms": ms(percentile(load["latency"], 0.50)),
        "post_p99_ms": ms(p99),
        "post_max_ms": ms(max(load["latency"], default=None)),
        "generator_lag_p99_ms": ms(percentile(load["lag"], 0.99)),
        "time_to_confirmed_p50_ms": ms(percentile(ttc, 0.50)),
        "time_to_confirmed_p99_ms": ms(percentile(ttc, 0.99)),
        "sustained": not why,
        "why_not": why,
    }


async def ladder(
    config: SuiteConfig, load: Load, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], float | None]:
    db = await asyncpg.connect(config.database_url("ticketing"))
    steps: list[dict[str, Any]] = []

    async def step(rate: float) -> bool:
        figures = await load.run(rate, args.warmup_seconds, args.step_seconds)
        result = await judge(db, rate, figures, args.grace_seconds, args.p99_ms)
        steps.append(result)
        print(json.dumps(result), file=sys.stderr)
        await asyncio.sleep(args.pause_seconds)
        return bool(result["sustained"])

    try:
        best, failed = None, None
        rate = args.start_rate
        while rate <= args.max_rate and len(steps) < args.max_steps:
            if await step(rate):
                best = rate
                if failed is not None:  # coming down from a failed start
                    break
                rate *= args.factor
            else:
                failed = rate
                if best is not None:
                    break
                rate /= args.factor  # the start rate failed: come down
                if rate < 0.5:
                    break
        if best is not None and failed is not None:
            low, high = sorted((best, failed))
            for _ in range(args.bisect):
                mid = (low + high) / 2
                if await step(mid):
                    low = best = mid
                else:
                    high = mid
    finally:
        await db.close()
    return steps, best


def raw_amqp(args: argparse.Namespace, tag: str, run: int) -> dict[str, Any]:
    name = f"safiri-bench-raw-{tag}-{run}"
    vhost("add_vhost", name)
    try:
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "raw_amqp.py"),
                f"amqp://guest:guest@127.0.0.1:5672/{name}",
                "--messages",
                str(args.raw_messages),
                "--prefetch",
                str(args.prefetch),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        vhost("delete_vhost", name)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"raw aio-pika: {result}", file=sys.stderr)
    return result


# --- profiling ---------------------------------------------------------------------------

GROUPS = [
    ("telemetry (OTel SDK, exporters, protobuf)", ("/opentelemetry/", "/google/protobuf/")),
    ("safiri_telemetry (our spans, log sink)", ("/safiri_telemetry/",)),
    ("logging (loguru)", ("/loguru/",)),
    ("asyncpg", ("/asyncpg/",)),
    ("aio-pika / aiormq / pamqp", ("/aio_pika/", "/aiormq/", "/pamqp/")),
    ("aiohttp / yarl / multidict", ("/aiohttp/", "/yarl/", "/multidict/")),
    ("prometheus_client", ("/prometheus_client/",)),
    ("requests / urllib3 (OTLP export)", ("/requests/", "/urllib3/")),
    ("safiri (our code)", ("/safiri_", "/safiri/")),
    ("asyncio", ("/asyncio/",)),
    ("json", ("/json/",)),
]
# Leaves where a thread waits (py-spy's idle detection misses them here): not CPU.
IDLE_LEAVES = {"EpollSelector.select", "Condition.wait", "Event.wait", "select", "poll"}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _group(file: str) -> str:
    for name, needles in GROUPS:
        if any(n in file for n in needles):
            return name
    return "stdlib, other" if "site-packages" not in file else "other libraries"


def _short(file: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def summarize(raw: str, service: str, top: int = 30) -> str:
    """Own and total samples per function and per library, from py-spy's collapsed stacks.

    Only the event loop's thread is broken down (the OTel batch-export threads are counted
    apart); samples whose leaf is a wait (epoll, Condition.wait) are idle and left out.
    """
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    group_own: collections.Counter[str] = collections.Counter()
    group_total: collections.Counter[str] = collections.Counter()
    lines_own: collections.Counter[str] = collections.Counter()
    callers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    threads: collections.Counter[str] = collections.Counter()
    idle = samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for frame in stack.split(";"):
            m = FRAME.match(frame)
            if m:
                frames.append((m["func"], m["file"], m["line"]))
        if not frames:
            continue
        if frames[-1][0] in IDLE_LEAVES:
            idle += count
            continue
        if frames[0][0] != "_run_module_as_main":
            worker = next((f for f, _, _ in frames if "export" in f.lower()), frames[-1][0])
            threads[f"background thread in {worker}"] += count
            continue
        samples += count
        seen, seen_groups = set(), set()
        for func, file, _line in frames:
            key = f"{func} ({_short(file)})"
            if key not in seen:
                total[key] += count
                seen.add(key)
            g = _group(file)
            if g not in seen_groups:
                group_total[g] += count
                seen_groups.add(g)
        func, file, line_no = frames[-1]
        own[f"{func} ({_short(file)})"] += count
        chain = " <- ".join(f"{f} ({_short(p)}:{n})" for f, p, n in reversed(frames[-5:-1]))
        callers[f"{func} ({_short(file)})"][chain] += count
        lines_own[f"{func} ({_short(file)}:{line_no})"] += count
        group_own[_group(file)] += count

    def pct(n: int) -> str:
        return f"{100 * n / samples:5.1f}%" if samples else "  n/a"

    out = [
        f"{service}: {samples} busy samples of the event-loop thread (py-spy, 100 Hz);"
        f" {idle} idle samples left out; background threads busy: {sum(threads.values())}",
    ]
    out += [f"  {n:6d}  {k}" for k, n in threads.most_common(5)]
    out += ["", "by library, % of the event loop's busy samples"]
    out.append("  (own = the sampled frame is in it; total = it is anywhere on the stack)")
    for g, n in group_own.most_common():
        out.append(f"  own {pct(n)}  total {pct(group_total[g])}  {g}")
    for g in set(group_total) - set(group_own):
        out.append(f"  own {pct(0)}  total {pct(group_total[g])}  {g}")
    out += ["", f"top {top} functions by own time"]
    out += [f"  {pct(n)}  {k}" for k, n in own.most_common(top)]
    for leaf, _n in own.most_common(3):
        out += ["", f"who calls {leaf} (4 frames up)"]
        out += [f"  {pct(n)}  {k}" for k, n in callers[leaf].most_common(6)]
    out += ["", f"top {top} lines by own time"]
    out += [f"  {pct(n)}  {k}" for k, n in lines_own.most_common(top)]
    out += ["", f"top {top * 2} functions by total time"]
    out += [f"  {pct(n)}  {k}" for k, n in total.most_common(top * 2)]
    return "\n".join(out) + "\n"


async def profile(suite: Suite, load: Load, args: argparse.Namespace, tag: str) -> None:
    out_dir = ROOT / "results" / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    services = ("gateway", "ticketing", "payment")
    seconds = args.profile_seconds
    duration = (seconds + 3) * len(services) + 2
    driving = asyncio.create_task(load.run(args.profile_rate, 0, duration))
    await asyncio.sleep(3)
    for service in services:
        raw_path = Path(args.log_dir) / f"sustained-{tag}" / f"{service}.pyspy.txt"
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(suite.processes[service].pid),
            "--duration",
            str(seconds),
            "--rate",
            "100",
            "--format",
            "raw",
            "--full-filenames",
            "--output",
            str(raw_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"py-spy failed on {service}: {err.decode()}")
        text = summarize(raw_path.read_text(), service)
        header = (
            f"# {args.profile_rate} purchases/s offered (open loop) while sampled;"
            f" raw stacks: {raw_path}\n"
        )
        (out_dir / f"{service}.txt").write_text(header + text)
        print(header + text, file=sys.stderr)
        await asyncio.sleep(3)
    figures = await driving
    lat = figures["latency"]
    note = {
        "offered_rps": args.profile_rate,
        "posts": len(lat),
        "post_errors": len(figures["errors"]),
        "post_p50_ms": ms(percentile(lat, 0.5)),
        "post_p99_ms": ms(percentile(lat, 0.99)),
        "py_spy": "0.4.3",
    }
    (out_dir / "load.json").write_text(json.dumps(note, indent=2) + "\n")
    print(json.dumps(note), file=sys.stderr)


# --- the run -----------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--grace-seconds", type=float, default=10.0)
    parser.add_argument("--pause-seconds", type=float, default=2.0)
    parser.add_argument("--start-rate", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=1.5)
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--max-rate", type=float, default=2000.0)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--raw-messages", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=32, help="as SAFIRI_*_PREFETCH")
    parser.add_argument("--log-dir", default="/tmp/safiri-bench-logs")
    parser.add_argument("--profile-rate", type=float, default=None)
    parser.add_argument("--profile-seconds", type=int, default=20)
    parser.add_argument("--name", default="sustained_rate")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    started = datetime.now(UTC)

    raw_runs = [] if args.profile_rate else [raw_amqp(args, tag, 0)]

    async with (
        isolated_run(
            f"sustained-{tag}",
            log_dir=Path(args.log_dir) / f"sustained-{tag}",
            extra_env={
                "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0",
                "SAFIRI_SEED_DAYS": str(SEED_DAYS),
            },
        ) as (config, _),
        Suite(config) as suite,
    ):
        base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
        connector = aiohttp.TCPConnector(limit=512)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            key = config.api_keys[0]
            auth = {"Authorization": f"Bearer {key}"}
            trip_ids = await trips(http, base, auth, range(1, SEED_DAYS - 1))
            load = Load(http, base, key, trip_ids)
            if args.profile_rate:
                await profile(suite, load, args, tag)
                return
            steps, best = await ladder(config, load, args)

    raw_runs.append(raw_amqp(args, tag, 1))
    raw = statistics.mean(r["msgs_per_second"] for r in raw_runs)
    ratio = round(best / raw, 4) if best and raw else None
    report = {
        "benchmark": "highest sustained purchases/s (CONFIRMED, p99 POST /orders <= "
        f"{args.p99_ms:g} ms, callback delay 0, telemetry on) vs raw aio-pika msgs/s",
        **run_metadata(
            variant={
                "telemetry": "on, as shipped",
                "environment": {
                    "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0",
                    "SAFIRI_SEED_DAYS": str(SEED_DAYS),
                },
            },
            when=started,
        ),
        "parameters": vars(args),
        "criteria": {
            "post_status": "every POST /orders answered 202",
            "confirmed": f"every order of the step CONFIRMED within {args.grace_seconds:g} s",
            "confirmed_rate": ">= 0.95 x target (orders / (last updated_at - first created_at))",
            "post_p99_ms": args.p99_ms,
            "time_to_confirmed": "orders.updated_at - orders.created_at in ticketing's database",
        },
        "steps": steps,
        "sustained_purchases_per_second": best and round(best, 2),
        "raw_aio_pika": {"runs": raw_runs, "mean_msgs_per_second": round(raw, 1)},
        "ratio_purchases_over_raw_msgs": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio and ratio >= TARGET_RATIO),
    }
    out = ROOT / "results" / f"{args.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"sustained {report['sustained_purchases_per_second']} purchases/s, raw "
        f"{raw:.0f} msgs/s, ratio {ratio} (target {TARGET_RATIO})"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
