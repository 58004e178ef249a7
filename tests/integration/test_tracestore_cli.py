"""``safiri trace`` as a separate process against a running trace store."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from safiri.trace_cli import run_trace
from safiri_tracestore import running_store
from tests.conftest import eventually, free_port
from tests.integration.test_tracestore_scenario import (
    FAILURE,
    SOLD_OUT,
    Purchase,
    export_failed_purchase,
    export_readyz_probe,
    export_refused_purchase,
)
from tests.unit.test_tracestore_cli_args import parse

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
    assert failing.endswith("◀ root cause")
    # a mark is the span's own status: the gateway's 202 and the steps above are not marked
    marked = [
        line.split(": ", 1)[1].split("  ")[0] for line in lines if line[:1] in {"✗", "⊘", "~"}
    ]
    assert marked == ["handle_callback"]
    assert lines[lines.index("marks:") + 1].startswith("  ✗ failed: ")
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
    assert out.startswith("failed orders in the last 10m: 1, newest first:")
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


async def listed(url: str, *argv: str) -> tuple[list[dict[str, Any]], str]:
    """``safiri trace`` (in this process, against the store over HTTP): the list as JSON,
    and as text."""
    out = io.StringIO()
    assert await run_trace(parse(*argv, "--store", url, "--json"), out, io.StringIO()) == 0
    text = io.StringIO()
    assert await run_trace(parse(*argv, "--store", url), text, io.StringIO()) == 0
    traces: list[dict[str, Any]] = json.loads(out.getvalue())["traces"]
    return traces, text.getvalue()


async def test_failed_lists_failed_orders_only_refused_and_probes_apart(tmp_path: Path) -> None:
    """A refused purchase is refused, not failed, and has no root cause; a /readyz probe that
    answered 503 at start-up is no failed order; a failed payment stays failed as before."""
    async with running_store(path=tmp_path / "t.sqlite3") as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)
        refused = await export_refused_purchase(url)
        probe = await export_readyz_probe(url)

        async def stored() -> bool:
            counts = []
            for trace_id in (purchase.trace_id, refused, probe):
                async with http.get(f"{url}/api/traces/{trace_id}") as response:
                    found = (await response.json()).get("spans", [])
                counts.append(len(found))
            return counts == [15, 5, 1]

        await eventually(stored, timeout=10, what="the three traces stored")

        failed, text = await listed(url, "--failed", "--since", "10m")
        assert [t["trace_id"] for t in failed] == [purchase.trace_id]
        assert failed[0]["outcome"] == "failed"
        assert failed[0]["root_cause"]["name"] == "handle_callback"
        assert failed[0]["root_cause"]["cause"] == FAILURE
        assert refused not in text and probe not in text and "GET /readyz" not in text

        said_no, text = await listed(url, "--refused", "--since", "10m")
        assert [(t["trace_id"], t["root_cause"]) for t in said_no] == [(refused, None)]
        refusal = said_no[0]["refusal"]
        assert (refusal["service"], refusal["name"], refusal["cause"]) == (
            "ticketing",
            "hold_seats",
            SOLD_OUT,
        )
        assert f"refused: ticketing → hold_seats: {SOLD_OUT}" in text

        others, text = await listed(url, "--failed", "--other", "--since", "10m")
        assert [(t["trace_id"], t["purchase"]) for t in others] == [(probe, False)]
        assert "ticketing → GET /readyz: answered 503" in text

        code, out, err = await safiri("trace", refused, "--store", url)
    assert code == 0, err
    assert f"refused, not a failure: ticketing → hold_seats: {SOLD_OUT}" in out
    assert "✗" not in out and "root cause:" not in out
