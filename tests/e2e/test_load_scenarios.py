"""Each load scenario in a short form (seconds, low rates), against a suite of its own: Locust
runs it, every order ends final, tickets_sold_total rose by exactly the tickets ticketing's
database holds for the run's orders, and the scenario's latency gates held (their figures are
printed). The suite's vhost and databases are gone afterwards. A suite of the run's own has
the gateway limit the scenario needs; against a suite with a lower one, the refusals are
counted apart with the limit the gateway named, and a latency gate below the run's figures
fails the run."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from safiri_load.check import duration_text
from safiri_load.run import (
    LoadOptions,
    Target,
    _check_capacity,
    own_suite,
    render,
    run_load_scenario,
)
from safiri_load.scenarios import SCENARIOS, RateLimit
from tests.conftest import POSTGRES

from .conftest import HOLD_TTL_SECONDS, Running, suite_of_its_own

# serial: the scenarios' latency gates judge the suite with both cores to itself.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

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
    assert result["failures"] == {"requests": 0, "orders": 0, "total": 0, "rate_limited": 0}, report
    orders = result["orders"]
    assert orders["recorded"] == orders["found"] > 0 and orders["pending"] == 0, report
    # Every ticket row stands for one confirmed seat.
    assert result["db_tickets"] == orders["seats_confirmed"], report
    # Locust's table has one row per route template, never one per order id.
    assert {e["name"] for e in result["entries"]} <= ROUTE_NAMES, report
    assert result["achieved_rps"] >= 0.5 * result["target_rps"], report
    for key in ("p50", "p95", "p99"):
        assert result["latency_ms"][key] > 0, report
    # The scenario's own latency gates, each judged on a figure the run measured.
    gates = SCENARIOS[scenario].gates
    assert result["latency_gates_are_the_scenarios"] is True, report
    assert [(g["name"], g["max_ms"]) for g in result["latency_gates"]] == [
        ("POST /orders p99", round(gates.post_p99 * 1000)),
        ("order to final state p99", round(gates.final_p99 * 1000)),
    ], report
    assert all(g["measured_ms"] and g["passed"] for g in result["latency_gates"]), report
    # The run's own gateway had the limit its scenario needs, and refused nothing.
    limit = result["rate_limit"]
    assert limit["set_by_the_run"] == limit["needed"], report
    assert limit["set_by_the_run"]["per_second"] >= limit["buyers_send_at_most_rps"], report
    assert limit["refused"] == result["failures"]["rate_limited"] == 0, report
    print("\n" + render(result))


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


async def test_the_gateway_limit_a_run_sets_and_the_limit_it_meets(
    run_id: str, tmp_path: Path
) -> None:
    """Both halves side by side (each with a suite of its own), to keep the file's time."""
    await asyncio.gather(
        _a_suite_of_the_runs_own_has_the_limit_its_scenario_needs(tmp_path / "own"),
        _against_a_lower_limit_refusals_are_explained_and_slow_fails(run_id, tmp_path / "met"),
    )


async def _a_suite_of_the_runs_own_has_the_limit_its_scenario_needs(tmp_path: Path) -> None:
    """The gateway of a run's own suite refuses past the limit sized from the scenario, and
    not before: a scenario small enough that the limit is a handful of requests shows it."""
    scenario = SCENARIOS["baseline"].scaled(duration=1, peak_rate=0.25)
    limit = scenario.rate_limit()
    assert limit.burst < 200  # far under the gateway's default, so the default cannot pass
    async with (
        own_suite(tmp_path, scenario) as target,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {target.api_key}"}) as http,
    ):
        assert target.rate_limit == limit
        statuses = []
        for _ in range(limit.burst + 1):
            async with http.get(f"{target.gateway_url}/api/v1/trips") as response:
                statuses.append(response.status)
                answer = await response.json()
    # Refused by the limit, not before it (the search's own answer does not matter here).
    assert 429 not in statuses[:-1] and statuses[-1] == 429, statuses
    assert f"{limit.per_second} requests per second (bursts of {limit.burst})" in answer["detail"]


async def _against_a_lower_limit_refusals_are_explained_and_slow_fails(
    run_id: str, tmp_path: Path
) -> None:
    """Against a suite it did not start, the run meets that suite's limit: its 429s are
    counted apart, the limit is named as the gateway stated it and the settings the scenario
    needs are given. Latency gates set below any real figure fail the run with their lines."""
    met = RateLimit(per_second=2, burst=10)
    scenario = SCENARIOS["baseline"].scaled(duration=2, peak_rate=4).with_gates(0.001, 0.001)
    async with suite_of_its_own(run_id, "load-limit", tmp_path / "logs", **met.env()) as suite:
        target = Target(
            gateway_url=suite.url("gateway", ""),
            ticketing_url=suite.url("ticketing", ""),
            ticketing_database_url=suite.config.database_url("ticketing"),
            api_key=suite.api_key,
            trip_days=2,
            hold_ttl_seconds=HOLD_TTL_SECONDS,
        )
        options = LoadOptions(
            scenario, results_root=tmp_path, target=target, settle_timeout=20, final_timeout=2
        )
        outcome = await run_load_scenario(options)
    result, report = outcome.result, render(outcome.result)
    print("\n" + report)
    assert not outcome.passed, report
    limit = result["rate_limit"]
    assert limit["set_by_the_run"] is None and limit["refused"] > 0, report
    assert result["failures"]["rate_limited"] == limit["refused"] <= result["failures"]["requests"]
    assert f"{met.per_second} requests per second (bursts of {met.burst})" in limit["met"], report
    needed = scenario.rate_limit()
    settings = (
        f"SAFIRI_RATE_LIMIT_PER_SECOND={needed.per_second} SAFIRI_RATE_LIMIT_BURST={needed.burst}"
    )
    assert any(
        r.startswith(f"{limit['refused']} requests were refused with 429") and settings in r
        for r in result["reasons"]
    ), report
    assert f"rate limit the suite's (this scenario needs {settings})" in report
    post = result["latency_gates"][0]
    assert post["name"] == "POST /orders p99" and post["measured_ms"], report
    assert not post["passed"], report
    line = f"POST /orders p99 {duration_text(post['measured_ms'])} is above the allowed 0.001 s"
    assert line in result["reasons"], report
    assert f"  FAILED     {line}" in report.splitlines()
