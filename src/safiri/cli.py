"""``safiri``: the operator's command line (``up``, ``demo``, ``trace``, ``chaos``, ``load``,
``canary``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg

from safiri_chaos.cli import add_chaos_command
from safiri_chaos.prometheus import (
    PrometheusError,
    running_alertmanager,
    running_prometheus,
    write_rules,
)
from safiri_load.cli import add_load_command
from safiri_suite.ps import add_ps_command
from safiri_suite.suite import ProcessEntry, Suite, SuiteConfig, SuiteError
from safiri_tracestore import StoreSettings, running_store

from .canary import add_canary_command
from .trace_cli import add_trace_command

__all__ = ["main"]


STATE_PATH = Path(os.environ.get("SAFIRI_SUITE_STATE", "var/suite.json"))
KEY_PATH = Path("var/api-key")


def _api_keys() -> tuple[list[str], bool]:
    """The accepted keys, and whether ``safiri up`` made the key up (kept in var/api-key)."""
    keys = [k.strip() for k in os.environ.get("SAFIRI_API_KEYS", "").split(",") if k.strip()]
    if keys:
        return keys, False
    if KEY_PATH.exists():
        return [KEY_PATH.read_text().strip()], True
    key = f"sk_local_{secrets.token_urlsafe(18)}"
    KEY_PATH.parent.mkdir(parents=True, exist_ok=True)
    KEY_PATH.touch(mode=0o600)
    KEY_PATH.write_text(key + "\n")
    return [key], True


def _config(args: argparse.Namespace) -> tuple[SuiteConfig, list[str], bool]:
    keys, made_up = _api_keys()
    env = os.environ
    config = SuiteConfig(
        api_keys=keys,
        gateway_port=int(env.get("SAFIRI_GATEWAY_PORT", 8080)),
        ticketing_port=int(env.get("SAFIRI_TICKETING_PORT", 8081)),
        payment_port=int(env.get("SAFIRI_PAYMENT_PORT", 8082)),
        mpesa_port=int(env.get("SAFIRI_MPESA_SIM_PORT", 8090)),
        fleet_port=int(env.get("SAFIRI_FLEET_SIM_PORT", 8091)),
        amqp_url=env.get("SAFIRI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        log_dir=args.log_dir,
        ledger_path=Path(env.get("SAFIRI_MPESA_SIM_LEDGER_PATH", "var/mpesa-ledger.jsonl")),
        # The backup payment route's simulator (the provider-switch game day's second route).
        backup_port=int(env.get("SAFIRI_BACKUP_SIM_PORT", 8092)),
        backup_ledger_path=Path(
            env.get("SAFIRI_BACKUP_SIM_LEDGER_PATH", "var/backup-ledger.jsonl")
        ),
    )
    return config, keys, made_up


async def _up(args: argparse.Namespace) -> int:
    config, keys, made_up = _config(args)
    config.state_path = STATE_PATH
    config.replicas = args.replicas
    config.rabbitmq_nodes = args.rabbitmq_nodes
    if config.replicas > 1 or config.rabbitmq_nodes > 1:
        config.log_dir = config.log_dir or Path("var/cluster")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        others: list[ProcessEntry] = []
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            # No collector configured: the embedded trace store takes the services' spans and
            # logs on the standard OTLP port, and `safiri trace` reads them back.
            store = StoreSettings.from_env()
            try:
                url = await stack.enter_async_context(
                    running_store(
                        store.host,
                        store.port,
                        store.path,
                        retention_hours=store.retention_hours,
                        max_spans=store.max_spans,
                    )
                )
            except OSError as exc:
                raise SuiteError(
                    f"the trace store cannot listen on {store.host}:{store.port}: {exc}"
                    " (set SAFIRI_TRACE_STORE_PORT)"
                ) from None
            config.otlp_endpoint = url
            others.append(ProcessEntry("trace-store", 0, os.getpid(), store.port, "/"))
            print(
                f"safiri: traces and logs → {url} (open it in a browser; `safiri trace ORDER_ID`)",
                file=sys.stderr,
                flush=True,
            )
        suite = await stack.enter_async_context(Suite(config))
        suite.others[:0] = others
        if not args.no_monitoring:
            try:
                await stack.enter_async_context(_monitoring(suite))
            except PrometheusError as exc:
                raise SuiteError(f"{exc} (or run with --no-monitoring)") from None
        suite.write_state()
        key = f"  API key: {keys[0]} (made up; kept in {KEY_PATH})" if made_up else ""
        shape = ""
        if config.replicas > 1 or config.rabbitmq_nodes > 1:
            shape = (
                f"\nsafiri: {config.replicas} replica(s) of each service behind HAProxy,"
                f" {config.rabbitmq_nodes} RabbitMQ node(s) ({config.amqp_url})"
            )
        print(
            f"safiri: up. Gateway http://127.0.0.1:{config.gateway_port}/api/v1{key}{shape}\n"
            "safiri: a process that dies is started again (`safiri ps`);"
            " Ctrl-C stops every process.",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    print("safiri: stopped.", file=sys.stderr)
    return 0


@contextlib.asynccontextmanager
async def _monitoring(suite: Suite) -> AsyncIterator[None]:
    """Alertmanager and Prometheus (Debian's) with the repository's rules, scraping every
    replica of the suite (and its RabbitMQ nodes)."""
    env = os.environ
    workdir = Path(env.get("SAFIRI_MONITORING_DIR", "var/monitoring"))
    am_port = int(env.get("SAFIRI_ALERTMANAGER_PORT", 9093))
    prom_port = int(env.get("SAFIRI_PROMETHEUS_PORT", 9090))

    def started(role: str, health: str) -> Callable[[int, int], None]:
        return lambda pid, port: suite.others.append(ProcessEntry(role, 0, pid, port, health))

    async with (
        running_alertmanager(
            workdir / "alertmanager", port=am_port, on_started=started("alertmanager", "/-/ready")
        ) as am_url,
        running_prometheus(
            suite.scrape_targets(),
            write_rules(workdir / "rules", fast=False),
            workdir / "prometheus",
            "15s",
            port=prom_port,
            alertmanager=f"127.0.0.1:{am_port}",
            on_started=started("prometheus", "/-/ready"),
        ) as prom_url,
    ):
        print(
            f"safiri: Prometheus {prom_url} (the repository's rules), Alertmanager {am_url}",
            file=sys.stderr,
            flush=True,
        )
        yield


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="safiri", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the suite in the foreground until Ctrl-C")
    up.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="write each service's JSON log to DIR/<service>.log instead of stdout",
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("SAFIRI_REPLICAS", 1)),
        help="replicas of gateway, ticketing and payment, behind HAProxy on the usual ports",
    )
    up.add_argument(
        "--rabbitmq-nodes",
        type=int,
        default=int(os.environ.get("SAFIRI_RABBITMQ_NODES", 1)),
        help="RabbitMQ nodes of the suite's own, clustered (1: the machine's broker)",
    )
    up.add_argument(
        "--no-monitoring",
        action="store_true",
        help="run no Prometheus (127.0.0.1:9090) and Alertmanager (127.0.0.1:9093)",
    )
    demo = sub.add_parser("demo", help="start the suite, buy tickets twice, print, stop")
    demo.add_argument("--log-dir", type=Path, default=None)
    add_trace_command(sub)
    add_chaos_command(sub)
    add_load_command(sub)
    add_ps_command(sub, STATE_PATH)
    add_canary_command(sub)
    args = parser.parse_args(argv)
    if args.command in ("trace", "chaos", "load", "ps", "canary"):
        raise SystemExit(args.func(args))
    runner = {"up": _up, "demo": _demo}[args.command]
    try:
        raise SystemExit(asyncio.run(runner(args)))
    except SuiteError as exc:
        print(f"safiri: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except (OSError, asyncpg.PostgresError) as exc:
        print(
            f"safiri: cannot reach a dependency: {exc}\n"
            "safiri: RabbitMQ must listen on 127.0.0.1:5672 and PostgreSQL on 127.0.0.1:5432"
            " (see README: make deps)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
