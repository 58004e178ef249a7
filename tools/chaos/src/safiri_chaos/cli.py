"""``safiri chaos run EXPERIMENT`` and ``safiri chaos check``."""

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
from safiri_suite.suite import BACKUP_SIMULATOR, SuiteError

from .checker import check_suite
from .control import default_api_key
from .experiment import InvalidExperiment
from .history import read_history
from .invariants import Limits
from .invariants.read import Sources
from .prometheus import PrometheusError
from .run import run_chaos_experiment

__all__ = ["add_chaos_command"]

_ENV = os.environ


def add_chaos_command(subparsers: Any) -> None:
    """Register ``chaos`` (with ``run`` and ``check``) on the ``safiri`` command's subparsers."""
    chaos = subparsers.add_parser("chaos", help="chaos experiments and the invariant checker")
    sub = chaos.add_subparsers(dest="chaos_command", required=True)
    _add_run(sub)
    _add_check(sub)


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run one experiment (chaos/*.json) and write its journal and report",
        description="Run a Chaos Toolkit experiment against a running suite (make up: give"
        " --api-key) or, with --self-contained, against a suite of its own.",
    )
    run.add_argument("experiment", type=Path, help="e.g. chaos/provider-outage.json")
    run.add_argument(
        "--self-contained",
        action="store_true",
        help="start the suite and Prometheus on free ports with a vhost and databases of their"
        " own, removed afterwards",
    )
    run.add_argument(
        "--short",
        action="store_true",
        help="the short form (seconds, fast rules), as the tests run it",
    )
    run.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration entry (rate=20, fault_seconds=60, rules=fast, ...)",
    )
    run.add_argument("--results", type=Path, default=Path("chaos/results"), help="results root")
    for flag, key in (
        ("--gateway-url", "gateway_url"),
        ("--simulator-url", "simulator_url"),
        ("--prometheus-url", "prometheus_url"),
        ("--api-key", "api_key"),
        ("--rules", "rules"),
    ):
        run.add_argument(flag, dest=key, default=None)
    run.set_defaults(func=_run)


def _add_check(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        help="check the invariants of the suite's databases, ledger and dead-letter queues",
    )
    pg = "postgresql://postgres@127.0.0.1:5432"
    sim = f"http://127.0.0.1:{_ENV.get('SAFIRI_MPESA_SIM_PORT', '8090')}"
    for name in ("ticketing", "payment", "gateway"):
        variable = f"SAFIRI_{name.upper()}_DATABASE_URL"
        check.add_argument(
            f"--{name}-db", default=_ENV.get(variable, f"{pg}/safiri_{name}"), help=f"${variable}"
        )
    check.add_argument("--ledger-url", default=f"{sim}/simulator/ledger")
    check.add_argument("--no-ledger", action="store_true", help="a real provider: no ledger")
    check.add_argument(
        "--backup-ledger-url",
        default=None,
        help="the backup payment route's simulator ledger (default: the backup-simulator in"
        " the supervisor's state file, $SAFIRI_SUITE_STATE or var/suite.json, if it runs one;"
        " '' for none)",
    )
    check.add_argument(
        "--admin-key", default=_ENV.get("SAFIRI_MPESA_SIM_ADMIN_KEY", "safiri-sim-admin")
    )
    check.add_argument(
        "--amqp-url", default=_ENV.get("SAFIRI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    check.add_argument("--history", type=Path, help="a history.jsonl of recorded purchases")
    check.add_argument(
        "--hold-ttl", type=float, default=float(_ENV.get("SAFIRI_HOLD_TTL_SECONDS", 300))
    )
    check.add_argument("--grace", type=float, default=30.0, help="past the hold, for the sweeper")
    check.add_argument("--healed-at", type=datetime.fromisoformat, help="when the fault healed")
    check.add_argument("--settle-bound", type=float, default=60.0, help="seconds after the heal")
    check.add_argument("--outbox-max-age", type=float, default=30.0)
    check.add_argument("--allow-dead-letters", action="store_true")
    check.add_argument(
        "--api-key",
        help="the key the --history purchases used (default: SAFIRI_CHAOS_API_KEY, the first of"
        " SAFIRI_API_KEYS, or make up's var/api-key): resolves purchases the gateway released",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="fail on nothing to check: an empty database, no ledger, a missing dead-letter queue",
    )
    check.add_argument("--wait", action="store_true", help="let pending orders settle first")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_check)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"safiri chaos: --var {item}: expected KEY=VALUE", file=sys.stderr)
            return 2
        overrides[key.strip()] = value
    for key in ("gateway_url", "simulator_url", "prometheus_url", "api_key", "rules"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    try:
        outcome = asyncio.run(
            until_signalled(
                run_chaos_experiment(
                    args.experiment,
                    self_contained=args.self_contained,
                    short=args.short,
                    overrides=overrides,
                    results_root=args.results,
                    log=lambda line: print(f"{datetime.now():%H:%M:%S} {line}", file=sys.stderr),
                )
            )
        )
    except asyncio.CancelledError:
        print("safiri chaos: interrupted (the rollbacks were played)", file=sys.stderr)
        return 130
    except (InvalidExperiment, SuiteError, PrometheusError) as exc:
        print(f"safiri chaos: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, RuntimeError) as exc:
        print(f"safiri chaos: cannot set the run up: {exc}", file=sys.stderr)
        return 2
    print(outcome.report.read_text())
    print(f"results: {outcome.results_dir}")
    return 0 if outcome.passed else 1


def _backup_ledger_url(given: str | None) -> str | None:
    """The backup route's ledger: as given, else the supervisor's backup-simulator (`make up`
    runs one; `make demo` does not), else none."""
    if given is not None:
        return given or None
    state = Path(_ENV.get("SAFIRI_SUITE_STATE", "var/suite.json"))
    try:
        processes = json.loads(state.read_text())["processes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ports = [p["port"] for p in processes if p.get("role") == BACKUP_SIMULATOR]
    return f"http://127.0.0.1:{ports[0]}/simulator/ledger" if ports else None


def _check(args: argparse.Namespace) -> int:
    sources = Sources(
        ticketing_database_url=args.ticketing_db,
        payment_database_url=args.payment_db,
        gateway_database_url=args.gateway_db,
        ledger_url=None if args.no_ledger else args.ledger_url,
        backup_ledger_url=None if args.no_ledger else _backup_ledger_url(args.backup_ledger_url),
        simulator_admin_key=args.admin_key,
        amqp_url=args.amqp_url,
    )
    limits = Limits(
        hold_ttl_seconds=args.hold_ttl,
        final_grace_seconds=args.grace,
        settle_bound_seconds=args.settle_bound,
        healed_at=args.healed_at,
        outbox_max_age_seconds=args.outbox_max_age,
        allow_dead_letters=args.allow_dead_letters,
        strict=args.strict,
    )
    ops = list(read_history(args.history)) if args.history else None
    try:
        report = asyncio.run(
            check_suite(
                sources,
                limits,
                ops,
                api_key=args.api_key or default_api_key(_ENV),
                wait_for_in_flight=args.wait,
            )
        )
    except (OSError, asyncpg.PostgresError, aiohttp.ClientError) as exc:
        print(f"safiri chaos check: cannot read the suite's state: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.render())
    return 0 if report.ok else 1
