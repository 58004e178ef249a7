"""Does Safiri scale out on this machine? The sustained purchase rate with 1 and 2 replicas of
each service and with 1 and 3 RabbitMQ nodes, as ratios to the one-replica, one-node suite
measured in the same run, and where the CPU goes in each.

    .venv/bin/python bench/scaling.py [--variants 1x1,2x1,1x3,2x3] [--step-seconds 10]

Each variant is a suite of its own (its databases; its vhost on the machine's broker, or its
own RabbitMQ cluster behind HAProxy for 3 nodes; replicas behind HAProxy), telemetry on as
shipped, exporting to a discarding sink. The sustained rate is bench/sustained_rate.py's
ladder (open-loop POST /orders at a rate R; sustained when every POST got 202, every order is
CONFIRMED in time, the confirmed rate >= 0.95 R and POST p99 <= 50 ms). Then the variant is
held at its best rate for ``--cpu-seconds`` while each process's CPU time is read from
/proc: the share of the machine's cores each role used (gateway, ticketing, payment, the
simulator, HAProxy, RabbitMQ, PostgreSQL, the load generator), which says where the
bottleneck is. The variants are run in turn, the baseline first and last (the machine's
speed drifts), and the report (bench/results/scaling.json) gives each variant's rate and its
ratio to the mean of the two baseline runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import ROOT, isolated_run, run_metadata, trips
from sustained_rate import SEED_DAYS, Load, ladder

from safiri_suite.suite import Suite

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12)) / TICKS


def pids_of(command: str) -> list[int]:
    done = subprocess.run(["pgrep", "-f", command], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def _node_of(pid: int) -> str | None:
    """The RabbitMQ node a beam.smp process runs: RABBITMQ_NODENAME in its environment (the
    suite's own nodes), else the machine's broker (named in /etc/rabbitmq)."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "beam.smp":
            return None
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RABBITMQ_NODENAME="):
            return item.split(b"=", 1)[1].decode()
    return "rabbit@localhost"


def roles(suite: Suite) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for name, process in suite.processes.items():
        found.setdefault(suite.slots[name].role, []).append(process.pid)
    for entry in suite.others:
        if entry.pid and entry.role != "rabbitmq":
            found.setdefault(entry.role, []).append(entry.pid)
    # RabbitMQ's work is done by each node's beam.smp (for the suite's own nodes, a child of
    # the runuser process the supervisor holds): found by its node name.
    names = [r.node.name for r in suite.rabbit_nodes] or ["rabbit@localhost"]
    found["rabbitmq"] = [pid for pid in pids_of("beam.smp") if _node_of(pid) in names]
    found["postgresql"] = pids_of("postgres:")
    found["load generator"] = [os.getpid()]
    return found


async def cpu_at(load: Load, rate: float, seconds: float, suite: Suite) -> dict[str, Any]:
    """Hold ``rate`` for ``seconds``; each role's CPU as a share of one core, and the total."""
    who = roles(suite)
    before = {role: sum(cpu_seconds(p) for p in pids) for role, pids in who.items()}
    started = time.monotonic()
    await load.run(rate, 1.0, seconds)
    elapsed = time.monotonic() - started
    after = {role: sum(cpu_seconds(p) for p in pids) for role, pids in who.items()}
    cores = {role: round((after[role] - before[role]) / elapsed, 3) for role in who}
    return {
        "rate": round(rate, 1),
        "seconds": round(elapsed, 1),
        "cores_by_role": dict(sorted(cores.items(), key=lambda kv: -kv[1])),
        "cores_total": round(sum(cores.values()), 2),
        "machine_cores": os.cpu_count(),
    }


# Beside the suite's own configuration, in every variant (recorded in the report).
ENVIRONMENT = {"SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0", "SAFIRI_SEED_DAYS": str(SEED_DAYS)}


async def variant(replicas: int, nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    tag = f"{replicas}x{nodes}-{uuid.uuid4().hex[:4]}"
    async with isolated_run(
        f"scaling-{tag}",
        log_dir=Path(args.log_dir) / f"scaling-{tag}",
        extra_env=ENVIRONMENT,
    ) as (config, _):
        config.replicas, config.rabbitmq_nodes = replicas, nodes
        if nodes > 1:
            config.amqp_url = ""  # the suite's own cluster
        async with Suite(config) as suite:
            base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
            connector = aiohttp.TCPConnector(limit=512)
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                key = config.api_keys[0]
                auth = {"Authorization": f"Bearer {key}"}
                trip_ids = await trips(http, base, auth, range(1, SEED_DAYS - 1))
                load = Load(http, base, key, trip_ids)
                steps, best = await ladder(config, load, args)
                cpu = await cpu_at(load, best, args.cpu_seconds, suite) if best else None
    result = {
        "replicas": replicas,
        "rabbitmq_nodes": nodes,
        "sustained_purchases_per_second": best and round(best, 2),
        "steps": steps,
        "cpu_at_best_rate": cpu,
    }
    print(
        f"{replicas} replica(s), {nodes} node(s): {result['sustained_purchases_per_second']}/s",
        flush=True,
    )
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="1x1,2x1,1x3,2x3", help="REPLICASxNODES,...")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--grace-seconds", type=float, default=10.0)
    parser.add_argument("--pause-seconds", type=float, default=2.0)
    parser.add_argument("--start-rate", type=float, default=30.0)
    parser.add_argument("--factor", type=float, default=1.4)
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--max-rate", type=float, default=2000.0)
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--cpu-seconds", type=float, default=10.0)
    parser.add_argument("--log-dir", default="/tmp/safiri-bench-logs")
    parser.add_argument("--name", default="scaling")
    args = parser.parse_args()
    started = datetime.now(UTC)
    wanted = [tuple(int(x) for x in v.split("x")) for v in args.variants.split(",")]
    baseline = (1, 1)
    order = [baseline, *[v for v in wanted if v != baseline], baseline]
    runs = [await variant(r, n, args) for r, n in order]
    base_rates = [
        r["sustained_purchases_per_second"]
        for r in runs
        if (r["replicas"], r["rabbitmq_nodes"]) == baseline and r["sustained_purchases_per_second"]
    ]
    base = statistics.mean(base_rates) if base_rates else None
    for run in runs:
        rate = run["sustained_purchases_per_second"]
        run["ratio_to_baseline"] = round(rate / base, 3) if rate and base else None
    report = {
        "benchmark": "sustained purchases/s (every POST 202, CONFIRMED, p99 POST <= "
        f"{args.p99_ms:g} ms) by replicas per service x RabbitMQ nodes, as ratios to 1x1",
        **run_metadata(
            variant={
                "replicas_x_rabbitmq_nodes": [f"{r}x{n}" for r, n in order],
                "telemetry": "on, as shipped",
                "environment": ENVIRONMENT,
            },
            when=started,
        ),
        "parameters": vars(args),
        "baseline_runs": base_rates,
        "runs": runs,
    }
    out = ROOT / "results" / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for run in runs:
        cpu = run["cpu_at_best_rate"] or {}
        top = list((cpu.get("cores_by_role") or {}).items())[:4]
        print(
            f"{run['replicas']}x{run['rabbitmq_nodes']}: {run['sustained_purchases_per_second']}/s"
            f" ratio {run['ratio_to_baseline']}; CPU {cpu.get('cores_total')} cores: {top}"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
