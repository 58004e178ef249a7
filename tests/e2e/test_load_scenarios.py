"""Each load scenario in a short form (seconds, low rates), against a suite of its own: Locust
runs it, every order ends final, and tickets_sold_total rose by exactly the tickets ticketing's
database holds for the run's orders. The suite's vhost and databases are gone afterwards."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from safiri_load.run import LoadOptions, Target, _check_capacity, run_load_scenario
from safiri_load.scenarios import SCENARIOS
from tests.conftest import POSTGRES

from .conftest import Running

pytestmark = pytest.mark.e2e

# (seconds, peak actions/s): a few purchases a second, so the file runs in about a minute.
SHORT = {
    "baseline": (5.0, 4.0),
    "spike": (6.0, 16.0),  # 1.6/s, then 16/s for 3 s, then 1.6/s
    "sustained": (5.0, 6.0),
    "mixed": (6.0, 10.0),  # 60 actions: 15 purchases, the 10th from a failing number
}
ROUTE_NAMES = {
    "/api/v1/trips",
    "/api/v1/trips [stock]",
    "/api/v1/orders",
    "/api/v1/orders [retry]",
    "/api/v1/orders/{order_id}",
    "final state",
    "no seat on sale",
}


def test_every_scenario_has_a_short_form_here() -> None:
    assert set(SHORT) == set(SCENARIOS)


async def _assert_cleaned_up(result: dict[str, Any]) -> None:
    target = result["target"]
    assert target["self_contained"] is True
    assert target["databases"] and target["vhost"]
    conn = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        left = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])",
            target["databases"],
        )
    finally:
        await conn.close()
    assert left == []
    listing = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", "list_vhosts", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await listing.communicate()
    assert listing.returncode == 0
    assert target["vhost"] not in out.decode().split()


def _assert_passed(result: dict[str, Any], scenario: str) -> None:
    report = json.dumps(result, indent=2)
    assert result["scenario"] == scenario
    assert result["passed"], report
    assert result["agree"] is True, report
    assert result["tickets_sold_total"]["delta"] == result["db_tickets"] > 0, report
    assert result["failures"] == {"requests": 0, "orders": 0, "total": 0}, report
    orders = result["orders"]
    assert orders["recorded"] == orders["found"] > 0 and orders["pending"] == 0, report
    # Every ticket row stands for one confirmed seat.
    assert result["db_tickets"] == orders["seats_confirmed"], report
    # Locust's table has one row per route template, never one per order id.
    assert {e["name"] for e in result["entries"]} <= ROUTE_NAMES, report
    assert result["achieved_rps"] >= 0.5 * result["target_rps"], report
    for key in ("p50", "p95", "p99"):
        assert result["latency_ms"][key] > 0, report


async def _safiri_load_mixed(results: Path) -> dict[str, Any]:
    """``safiri load mixed --self-contained`` as a user runs it; its JSON result."""
    seconds, rate = SHORT["mixed"]
    command = [
        *(sys.executable, "-m", "safiri.cli", "load", "mixed", "--self-contained", "--json"),
        *("--duration", str(seconds), "--rate", str(rate), "--results", str(results)),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 100)
    except TimeoutError:
        process.terminate()  # SIGTERM: the command stops Locust and its suite, then exits
        try:
            _, err = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            _, err = await process.communicate()
        tail = err.decode(errors="replace")[-3000:]
        pytest.fail(f"safiri load mixed did not finish in 100 s; its stderr ended:\n{tail}")
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_the_short_forms_pass_the_check_side_by_side(tmp_path: Path) -> None:
    """All four at once, each with a suite of its own (they must not see each other's orders
    or tickets, and the file takes a quarter of the time); ``mixed`` through the command."""
    names = ("baseline", "spike", "sustained")
    outcomes, mixed = await asyncio.gather(
        asyncio.gather(
            *(
                run_load_scenario(
                    LoadOptions(SCENARIOS[name].scaled(*SHORT[name]), results_root=tmp_path / name)
                )
                for name in names
            )
        ),
        _safiri_load_mixed(tmp_path / "mixed"),
    )
    for name, outcome in zip(names, outcomes, strict=True):
        assert outcome.result_path.exists()
        assert json.loads(outcome.result_path.read_text()) == outcome.result
        _assert_passed(outcome.result, name)
        await _assert_cleaned_up(outcome.result)
    spike = outcomes[1].result
    assert spike["peak_rps"] == SHORT["spike"][1]
    assert [s["rate"] for s in spike["stages"]] == [1.6, 16.0, 1.6]

    _assert_passed(mixed, "mixed")
    names_seen = {e["name"] for e in mixed["entries"]}
    assert {"/api/v1/trips", "/api/v1/orders", "/api/v1/orders/{order_id}"} <= names_seen
    # Every 10th purchase pays from a failing test number, and that order fails as it should.
    by_status = mixed["orders"]["by_status"]
    assert set(by_status) == {"CONFIRMED", "PAYMENT_FAILED"}, by_status
    assert by_status["PAYMENT_FAILED"] == mixed["orders"]["recorded"] // 10
    assert (Path(mixed["results_dir"]) / "result.json").exists()
    await _assert_cleaned_up(mixed)


async def test_the_runner_counts_the_seats_on_sale_through_the_public_api(
    running: Running,
) -> None:
    """The load tool knows the timetable only through GET /trips: enough seats pass, a need
    beyond what is on sale stops the run before it starts."""
    target = Target(
        gateway_url=running.url("gateway", ""),
        ticketing_url=running.url("ticketing", ""),
        ticketing_database_url="",
        api_key=running.api_key,
        trip_days=2,
    )
    await _check_capacity(target, 1)
    with pytest.raises(RuntimeError, match="seats on sale over 2 days"):
        await _check_capacity(target, 10**7)
