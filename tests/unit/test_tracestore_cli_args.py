"""``safiri trace`` refuses what it cannot look up before it reaches for the network."""

from __future__ import annotations

import argparse
import io

import pytest

from safiri.trace_cli import add_trace_command, run_trace

pytestmark = pytest.mark.unit


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="safiri")
    add_trace_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["trace", *argv])


def test_the_subcommand_has_a_handler_and_the_documented_options() -> None:
    args = parse("86eb6b9bdf6f8c51aa7eb7c988a82f4b", "--json", "--store", "http://x:1")
    assert callable(args.func) and args.json and args.store == "http://x:1"
    args = parse("--failed", "--since", "10m", "--tempo", "http://tempo:3200")
    assert args.outcome == "failed" and args.since == "10m" and args.tempo == "http://tempo:3200"
    args = parse("--refused", "--other")
    assert args.outcome == "refused" and args.other


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "neither an order id"),
        (("order-42",), "neither an order id"),
        (("86eb6b9b",), "neither an order id"),
        (("--failed", "--since", "a while"), "--since"),
        (("--failed", "--limit", "0"), "--limit"),
        (("--refused", "--limit", "0"), "--limit"),
        (("--other",), "--other goes with --failed or --refused"),
    ],
)
async def test_bad_arguments_exit_2_with_a_reason(argv: tuple[str, ...], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await run_trace(parse(*argv), out, err) == 2
    assert message in err.getvalue() and out.getvalue() == ""
