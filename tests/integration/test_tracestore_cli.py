"""``safiri trace`` as a separate process against a running trace store."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from safiri.tracestore import running_store
from tests.conftest import eventually, free_port
from tests.integration.test_tracestore_scenario import (
    FAILURE,
    Purchase,
    export_failed_purchase,
)

pytestmark = pytest.mark.integration

# The smallest ``safiri`` with only the trace command, as ``cli.py`` will wire it.
SAFIRI = """
import argparse, sys
from safiri.trace_cli import add_trace_command
parser = argparse.ArgumentParser(prog="safiri")
add_trace_command(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
raise SystemExit(args.func(args))
"""


async def safiri(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SAFIRI,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture
async def stored(tmp_path: Path) -> AsyncIterator[tuple[str, Purchase]]:
    async with running_store(path=tmp_path / "t.sqlite3") as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)

        async def whole() -> bool:
            async with http.get(f"{url}/api/traces/{purchase.trace_id}") as response:
                return len((await response.json())["spans"]) == 15

        await eventually(whole, timeout=10, what="the purchase stored")
        yield url, purchase


async def test_an_order_id_prints_the_tree_the_root_cause_and_the_log_lines(
    stored: tuple[str, Purchase],
) -> None:
    url, purchase = stored
    code, out, err = await safiri("trace", purchase.order_id, "--store", url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"order {purchase.order_id} · trace {purchase.trace_id} · 15 spans")
    for service, names in purchase.span_names.items():
        for name in names:
            assert any(f"{service}: {name}" in line for line in lines), (service, name)
    (failing,) = [line for line in lines if "payment: handle_callback" in line]
    assert failing.startswith("✗ ") and f"ERROR {FAILURE}" in failing
    marked = [line.split(": ", 1)[1].split("  ")[0] for line in lines if line.startswith("✗")]
    assert marked == [
        "POST /api/v1/orders",
        "process payment.requests",
        "request_payment",
        "handle_callback",
    ]
    assert f"root cause: payment → handle_callback: {FAILURE}" in lines
    logs = lines[lines.index("logs (4):") + 1 :]
    assert [next(b for b in purchase.log_bodies if b in line) for line in logs] == (
        purchase.log_bodies
    )
    assert "\x1b[" not in out  # stdout is a pipe, not a terminal


async def test_a_trace_id_works_as_well_and_the_store_url_can_come_from_the_environment(
    stored: tuple[str, Purchase],
) -> None:
    url, purchase = stored
    code, out, err = await safiri(
        "trace", purchase.trace_id.upper(), env={"SAFIRI_TRACE_STORE_URL": url}
    )
    assert code == 0, err
    assert f"root cause: payment → handle_callback: {FAILURE}" in out


async def test_json_prints_one_document(stored: tuple[str, Purchase]) -> None:
    url, purchase = stored
    code, out, err = await safiri("trace", purchase.order_id, "--store", url, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["trace_ids"] == [purchase.trace_id]
    assert document["root_cause"]["line"] == f"payment → handle_callback: {FAILURE}"
    assert len(document["spans"]) == 15 and len(document["logs"]) == 4
    assert document["spans"][0]["depth"] == 0


async def test_failed_lists_recent_failed_orders_with_their_traces(
    stored: tuple[str, Purchase],
) -> None:
    url, purchase = stored
    code, out, err = await safiri("trace", "--failed", "--since", "10m", "--store", url)
    assert code == 0, err
    assert out.startswith("1 failed traces in the last 10m")
    assert purchase.order_id in out and purchase.trace_id in out and FAILURE in out
    code, out, _ = await safiri("trace", "--failed", "--since", "10m", "--store", url, "--json")
    (listed,) = json.loads(out)["traces"]
    assert (listed["order_id"], listed["trace_id"]) == (purchase.order_id, purchase.trace_id)


async def test_what_cannot_be_shown_says_why_with_its_exit_status(
    stored: tuple[str, Purchase],
) -> None:
    url, _ = stored
    code, _, err = await safiri("trace", str(uuid.uuid4()), "--store", url)
    assert code == 1 and "not found" in err
    code, _, err = await safiri("trace", "order-42", "--store", url)
    assert code == 2 and "neither an order id" in err
    dead = f"http://127.0.0.1:{free_port()}"
    code, _, err = await safiri("trace", uuid.uuid4().hex, "--store", dead)
    assert code == 3 and "cannot read the trace store" in err
