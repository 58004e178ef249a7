"""``safiri``: the operator's command line (``up``, ``demo``, ``trace``, ``chaos``, ``load``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from pathlib import Path

import asyncpg

from .chaos.cli import add_chaos_command
from .load.cli import add_load_command
from .suite import Suite, SuiteConfig, SuiteError
from .trace_cli import add_trace_command
from .tracestore import StoreSettings, running_store

__all__ = ["main"]


def _config(args: argparse.Namespace) -> tuple[SuiteConfig, str]:
    keys = [k.strip() for k in os.environ.get("SAFIRI_API_KEYS", "").split(",") if k.strip()]
    if not keys:
        keys = [f"sk_local_{secrets.token_urlsafe(18)}"]
    env = os.environ
    config = SuiteConfig(
        api_keys=keys,
        gateway_port=int(env.get("SAFIRI_GATEWAY_PORT", 8080)),
        ticketing_port=int(env.get("SAFIRI_TICKETING_PORT", 8081)),
        payment_port=int(env.get("SAFIRI_PAYMENT_PORT", 8082)),
        mpesa_port=int(env.get("SAFIRI_MPESA_SIM_PORT", 8090)),
        amqp_url=env.get("SAFIRI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        log_dir=args.log_dir,
    )
    return config, keys[0]


async def _up(args: argparse.Namespace) -> int:
    config, key = _config(args)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return await _run_until_stopped(config, key)
    # No collector configured: the embedded trace store takes the services' spans and logs
    # on the standard OTLP port, and `safiri trace` reads them back.
    store = StoreSettings.from_env()
    async with contextlib.AsyncExitStack() as stack:
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
        print(
            f"safiri: traces and logs → {url} (open it in a browser; `safiri trace ORDER_ID`)",
            file=sys.stderr,
            flush=True,
        )
        return await _run_until_stopped(config, key)


async def _run_until_stopped(config: SuiteConfig, key: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    suite = Suite(config)
    await suite.start()
    print(
        f"safiri: up. Gateway http://127.0.0.1:{config.gateway_port}/api/v1"
        f"  API key: {key}\nsafiri: Ctrl-C stops every process.",
        file=sys.stderr,
        flush=True,
    )
    exited = asyncio.ensure_future(
        asyncio.wait(
            [asyncio.ensure_future(p.wait()) for p in suite.processes.values()],
            return_when=asyncio.FIRST_COMPLETED,
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not stop.is_set():
        dead = [s for s, p in suite.processes.items() if p.returncode is not None]
        print(f"safiri: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
        code = 1
    exited.cancel()
    stopping.cancel()
    await suite.stop()
    print("safiri: stopped.", file=sys.stderr)
    return code


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
    demo = sub.add_parser("demo", help="start the suite, buy tickets twice, print, stop")
    demo.add_argument("--log-dir", type=Path, default=None)
    add_trace_command(sub)
    add_chaos_command(sub)
    add_load_command(sub)
    args = parser.parse_args(argv)
    if args.command in ("trace", "chaos", "load"):
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
