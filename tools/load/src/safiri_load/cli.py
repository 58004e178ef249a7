"""``safiri load SCENARIO``: a Locust load scenario, then the metrics-versus-database check,
the error ratio and the scenario's latency gates."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from safiri_suite.interrupt import until_signalled
from safiri_suite.suite import SuiteError

from .check import MetricMissing
from .run import LoadError, LoadOptions, Target, render, run_load_scenario
from .scenarios import DEFAULT_USER_RPS, SCENARIOS

__all__ = ["add_load_command"]

_ENV = os.environ


def _url(variable: str, port: int) -> str:
    return f"http://127.0.0.1:{_ENV.get(variable, str(port))}"


def add_load_command(subparsers: Any) -> None:
    """Register ``load`` on the ``safiri`` command's subparsers."""
    scenarios = "; ".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values())
    load = subparsers.add_parser(
        "load",
        help="run a Locust load scenario and check tickets_sold_total against the database",
        description="Run a load scenario against a running suite (make up: give --api-key or"
        " set SAFIRI_API_KEYS) or, with --self-contained, against a suite of its own; then"
        " check that tickets_sold_total rose by exactly the tickets the database holds for"
        " the run's orders, that few requests failed and that POST /orders and the orders'"
        " time to their final state stayed within the scenario's p99 gates. Scenarios:"
        f" {scenarios}.",
    )
    load.add_argument("scenario", choices=sorted(SCENARIOS))
    load.add_argument(
        "--self-contained",
        action="store_true",
        help="start the suite on free ports with a vhost and databases of its own,"
        " removed afterwards",
    )
    load.add_argument("--duration", type=float, help="seconds (the stages keep their shares)")
    load.add_argument("--rate", type=float, help="peak actions/s (the stages keep their ratios)")
    load.add_argument(
        "--max-error-ratio",
        type=float,
        default=0.01,
        help="fail when failed requests and orders exceed this share (default 0.01)",
    )
    load.add_argument(
        "--post-p99",
        type=float,
        metavar="SECONDS",
        help="fail when POST /orders p99 is above this (default: the scenario's gate)",
    )
    load.add_argument(
        "--final-p99",
        type=float,
        metavar="SECONDS",
        help="fail when the orders' time to their final state, p99, is above this"
        " (default: the scenario's gate)",
    )
    load.add_argument(
        "--settle-timeout",
        type=float,
        help="seconds to wait for the run's orders to be final (default: hold TTL + 30 s)",
    )
    load.add_argument(
        "--user-rps",
        type=float,
        default=DEFAULT_USER_RPS,
        help=f"actions/s one simulated user starts at most (default {DEFAULT_USER_RPS})",
    )
    load.add_argument("--results", type=Path, default=Path("load/results"), help="results root")
    load.add_argument("--gateway-url", default=_url("SAFIRI_GATEWAY_PORT", 8080))
    load.add_argument("--ticketing-url", default=_url("SAFIRI_TICKETING_PORT", 8081))
    load.add_argument(
        "--ticketing-db",
        default=_ENV.get(
            "SAFIRI_TICKETING_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/safiri_ticketing"
        ),
        help="ticketing's database ($SAFIRI_TICKETING_DATABASE_URL)",
    )
    load.add_argument("--api-key", help="an accepted API key (default: first of SAFIRI_API_KEYS)")
    load.add_argument(
        "--trip-days", type=int, default=13, help="buy trips departing within this many days"
    )
    load.add_argument(
        "--hold-ttl",
        type=float,
        default=float(_ENV.get("SAFIRI_HOLD_TTL_SECONDS", 300)),
        help="the suite's seat hold, bounding how long an order can stay pending",
    )
    load.add_argument("--json", action="store_true", help="print the result JSON, not a report")
    load.set_defaults(func=_load)


def _target(args: argparse.Namespace) -> Target | None:
    if args.self_contained:
        return None
    key = args.api_key or next(
        (k.strip() for k in _ENV.get("SAFIRI_API_KEYS", "").split(",") if k.strip()), None
    )
    if not key:
        raise LoadError("give --api-key (the key `make up` printed) or set SAFIRI_API_KEYS")
    return Target(
        gateway_url=args.gateway_url,
        ticketing_url=args.ticketing_url,
        ticketing_database_url=args.ticketing_db,
        api_key=key,
        trip_days=args.trip_days,
        hold_ttl_seconds=args.hold_ttl,
    )


def _load(args: argparse.Namespace) -> int:
    try:
        scenario = (
            SCENARIOS[args.scenario]
            .scaled(args.duration, args.rate)
            .with_gates(args.post_p99, args.final_p99)
        )
        options = LoadOptions(
            scenario=scenario,
            results_root=args.results,
            target=_target(args),
            max_error_ratio=args.max_error_ratio,
            settle_timeout=args.settle_timeout,
            user_rps=args.user_rps,
            log=lambda line: print(f"{datetime.now():%H:%M:%S} {line}", file=sys.stderr),
        )
        outcome = asyncio.run(until_signalled(run_load_scenario(options)))
    except asyncio.CancelledError:
        print("safiri load: interrupted (every process it started is stopped)", file=sys.stderr)
        return 130
    except (ValueError, LoadError, SuiteError, MetricMissing) as exc:
        print(f"safiri load: {exc}", file=sys.stderr)
        return 2
    except (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        aiohttp.ClientError,
        RuntimeError,
    ) as exc:
        print(f"safiri load: cannot set the run up: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(outcome.result, indent=2))
    else:
        print(render(outcome.result))
    return 0 if outcome.passed else 1
