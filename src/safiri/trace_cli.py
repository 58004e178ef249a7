"""``safiri trace ORDER_ID | TRACE_ID``: a failed payment's cross-service trace in one command.

Reads the embedded trace store (``--store``, ``SAFIRI_TRACE_STORE_URL``, default
http://127.0.0.1:4318) or Tempo (``--tempo URL``). ``--failed`` lists recent failed orders (a
server error, a failed payment, an expired hold), ``--refused`` the orders the client or the
business said no to (a 4xx answer, seats unavailable, an unknown trip); with ``--other``, the
traces that hold no order instead (/readyz probes, start-up, searches).
Marks: ✗ failed (an error that is the failure), ⊘ said no (a refusal or a 4xx answer),
~ an error status that is no failure (the provider's "still processing").
Exit status: 0 shown, 1 nothing found, 2 bad arguments, 3 the source is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TextIO

import aiohttp

from safiri_tracestore.client import DEFAULT_STORE_URL, StoreClient
from safiri_tracestore.model import Outcome
from safiri_tracestore.params import (
    MAX_LIMIT,
    RecentQuery,
    is_order_id,
    is_trace_id,
    parse_duration,
)
from safiri_tracestore.source import SourceUnavailable, TraceNotFound, TraceSource
from safiri_tracestore.tempo import TempoClient
from safiri_tracestore.terminal import render_recent, render_trace, trace_document

__all__ = ["add_trace_command", "run_trace", "trace_command"]

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def add_trace_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``trace`` to ``safiri``'s subcommands; its handler is ``args.func(args) -> int``."""
    parser = subparsers.add_parser(
        "trace",
        help="show an order's or a trace's cross-service waterfall, root cause and logs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("id", nargs="?", metavar="ORDER_ID|TRACE_ID")
    listing = parser.add_mutually_exclusive_group()
    listing.add_argument(
        "--failed",
        action="store_const",
        const=Outcome.FAILED,
        dest="outcome",
        help="list recent failed orders (a server error, a failed payment, an expired hold)",
    )
    listing.add_argument(
        "--refused",
        action="store_const",
        const=Outcome.REFUSED,
        dest="outcome",
        help="list recent refused orders (a 4xx answer, seats unavailable, an unknown trip)",
    )
    parser.add_argument(
        "--other",
        action="store_true",
        help="with --failed or --refused: the traces that hold no order (probes, start-up)",
    )
    parser.add_argument(
        "--since",
        default=None,
        help="how far back: the lists (default 1h); --tempo searches for an order (24h)",
    )
    parser.add_argument("--limit", type=int, default=20, help="with a list: at most N traces")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--store", metavar="URL", help="the trace store's URL")
    parser.add_argument("--tempo", metavar="URL", help="read from Tempo's HTTP API instead")
    parser.set_defaults(func=trace_command)


def trace_command(args: argparse.Namespace) -> int:
    """The synchronous handler (runs its own event loop)."""
    return asyncio.run(run_trace(args))


def _source(
    args: argparse.Namespace, session: aiohttp.ClientSession, since_s: float | None
) -> TraceSource:
    if args.tempo:
        return TempoClient(session, args.tempo, lookback_s=since_s or 86400.0)
    url = args.store or os.environ.get("SAFIRI_TRACE_STORE_URL") or DEFAULT_STORE_URL
    return StoreClient(session, url)


def _usage(message: str, err: TextIO) -> int:
    print(f"safiri trace: {message}", file=err)
    return EXIT_USAGE


async def run_trace(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """The handler for callers already inside an event loop; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    colour = out.isatty() and "NO_COLOR" not in os.environ
    ident = (args.id or "").strip()
    try:
        since_s = parse_duration(args.since) if args.since else None
    except ValueError as exc:
        return _usage(f"--since: {exc}", err)
    listing = args.outcome is not None
    query = RecentQuery(args.outcome, since_s or 3600.0, args.limit, purchases=not args.other)
    if args.other and not listing:
        return _usage("--other goes with --failed or --refused", err)
    if listing and not 1 <= args.limit <= MAX_LIMIT:
        return _usage(f"--limit must be within 1..{MAX_LIMIT}", err)
    if not listing and not (is_order_id(ident) or is_trace_id(ident)):
        return _usage(
            f"{ident!r} is neither an order id (a UUID) nor a trace id (32 hex digits)", err
        )
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        source = _source(args, session, since_s)
        try:
            if listing:
                summaries = await source.recent(query)
                if args.json:
                    print(json.dumps({"traces": [s.to_dict() for s in summaries]}), file=out)
                else:
                    text = render_recent(summaries, query, args.since or "1h", colour=colour)
                    print(text, file=out)
                return EXIT_OK
            if is_order_id(ident):
                view = await source.order(ident)
            else:
                view = await source.trace(ident.lower())
        except TraceNotFound as exc:
            print(f"safiri trace: not found: {exc}", file=err)
            return EXIT_NOT_FOUND
        except SourceUnavailable as exc:
            print(f"safiri trace: {exc}", file=err)
            return EXIT_UNAVAILABLE
    if args.json:
        print(json.dumps(trace_document(view)), file=out)
    else:
        print(render_trace(view, colour=colour, holds_logs=source.holds_logs), file=out)
    return EXIT_OK
