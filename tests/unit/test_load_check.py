"""The load scenarios' pure parts: the scenarios and their scaling, Locust's statistics, the
tickets_sold_total parsing and the verdict (a disagreement, a run too slow for its latency
gates, a figure that was never measured and requests refused by the rate limit must fail)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from safiri_gateway.settings import Settings as GatewaySettings
from safiri_load.check import (
    LatencyGate,
    MetricMissing,
    OrdersState,
    Verdict,
    counter_total,
    duration_text,
    wait_until_final,
)
from safiri_load.run import _run_dir, _seed_days, latency_gates, render
from safiri_load.scenarios import (
    FAILING_PHONES,
    SCENARIOS,
    LatencyGates,
    RateLimit,
    Scenario,
    Stage,
    scenario_from_env_value,
    users_for,
)
from safiri_load.stats import RATE_LIMITED, percentile, rate_limited, summarize, top_failures

pytestmark = pytest.mark.unit


# --- scenarios ---------------------------------------------------------------------------


def test_the_full_forms_are_the_seed_004_lengths() -> None:
    baseline, spike, sustained = SCENARIOS["baseline"], SCENARIOS["spike"], SCENARIOS["sustained"]
    assert (baseline.duration, baseline.peak_rate) == (120, 10)
    assert (sustained.duration, sustained.peak_rate) == (300, 50)
    assert spike.peak_rate == 100
    assert sum(s.seconds for s in spike.stages if s.rate == 100) == 30
    mixed = SCENARIOS["mixed"]
    assert mixed.browse_weight > 0 and mixed.failure_share > 0 and max(mixed.seat_counts) > 1


def test_rate_over_time_follows_the_stages_and_ends() -> None:
    spike = SCENARIOS["spike"]
    assert spike.rate_at(0) == 10
    assert spike.rate_at(14.9) == 10
    assert spike.rate_at(15) == 100
    assert spike.rate_at(44.9) == 100
    assert spike.rate_at(45) == 10
    assert spike.rate_at(60) is None
    assert spike.mean_rate == pytest.approx((15 * 10 + 30 * 100 + 15 * 10) / 60)


def test_scaling_keeps_the_shape() -> None:
    short = SCENARIOS["spike"].scaled(duration=6, peak_rate=20)
    assert short.duration == pytest.approx(6)
    assert [s.rate for s in short.stages] == [2, 20, 2]
    assert [s.seconds for s in short.stages] == pytest.approx([1.5, 3, 1.5])
    assert short.name == "spike" and short != SCENARIOS["spike"]
    assert SCENARIOS["baseline"].scaled() == SCENARIOS["baseline"]


def test_scenario_round_trips_through_json_and_the_environment() -> None:
    mixed = SCENARIOS["mixed"].scaled(duration=5)
    assert Scenario.from_json(mixed.to_json()) == mixed
    assert scenario_from_env_value(mixed.to_json()) == mixed
    assert scenario_from_env_value(" sustained ") == SCENARIOS["sustained"]
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_from_env_value("soak")


@pytest.mark.parametrize(
    "bad",
    [
        {"stages": ()},
        {"stages": (Stage(0, 1),)},
        {"stages": (Stage(1, -1),)},
        {"failure_share": 1.5},
        {"seat_counts": (7,)},
        {"buy_weight": 0},
    ],
)
def test_invalid_scenarios_are_refused(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "name": "x",
        "summary": "",
        "stages": (Stage(1, 1),),
        "gates": LatencyGates(1, 5),
        **bad,
    }
    with pytest.raises(ValueError, match="x: "):
        Scenario(**fields)


def test_users_carry_the_rate() -> None:
    assert users_for(10, 0.5) == 20
    assert users_for(1, 0.5) == 2
    assert users_for(0.1, 0.5) == 1
    assert users_for(3, 0.4) == 8  # ceil(7.5): never fewer users than the rate needs
    with pytest.raises(ValueError, match="positive"):
        users_for(0)


def test_seats_needed_and_seed_days_cover_the_run() -> None:
    mixed = SCENARIOS["mixed"]
    # 20/s for 120 s, a quarter of the actions buy, at most 3 seats each.
    assert mixed.seats_needed() == math.ceil(20 * 120 * 0.25 * 3)
    sustained = SCENARIOS["sustained"]
    assert sustained.seats_needed() == 15_000
    per_day = 22 * 40  # departures a day x seats per bus
    assert _seed_days(sustained) * per_day >= sustained.seats_needed() * 1.25


def test_the_run_directory_is_absolute_because_locust_runs_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = _run_dir(Path("load/results"), SCENARIOS["spike"])
    assert run_dir.is_absolute() and run_dir.is_dir()
    assert run_dir.parent == tmp_path / "load" / "results"
    assert "-spike-" in run_dir.name


def test_failing_phones_are_the_simulators_failing_test_numbers() -> None:
    assert set(FAILING_PHONES) == {"254700000001", "254700001032", "254700001037", "254700002001"}
    assert "254700009999" not in FAILING_PHONES  # its callback never comes


# --- Locust's statistics -------------------------------------------------------------------


def _entry(method: str, name: str, times: dict[int, int], failures: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "method": method,
        "num_requests": sum(times.values()),
        "num_failures": failures,
        # JSON keys are strings, as in the file Locust writes.
        "response_times": {str(k): v for k, v in times.items()},
        "start_time": 1000.0,
        "last_request_timestamp": 1010.0,
    }


def test_percentile_is_locusts() -> None:
    # Locust's rule: the smallest time with at most (1 - percent) of the requests above it.
    times = {10: 51, 20: 39, 100: 9, 900: 1}
    assert percentile(times, 0.50) == 10
    assert percentile(times, 0.89) == 20
    assert percentile(times, 0.90) == 100
    assert percentile(times, 0.98) == 100
    assert percentile(times, 0.99) == 900
    assert percentile({10: 50, 20: 50}, 0.50) == 20
    assert percentile({}, 0.5) == 0


def test_summary_counts_actions_requests_and_order_checks() -> None:
    stats = summarize(
        [
            _entry("POST", "/api/v1/orders", {20: 30}, failures=1),
            _entry("POST", "/api/v1/orders [retry]", {30: 1}),
            _entry("GET", "/api/v1/trips", {5: 70}),
            _entry("GET", "/api/v1/trips [stock]", {5: 3}),
            _entry("GET", "/api/v1/orders/{order_id}", {4: 100}, failures=2),
            _entry("ORDER", "final state", {800: 29}, failures=3),
        ]
    )
    assert stats.elapsed_seconds == 10
    assert stats.actions == 100  # 30 purchases + 70 browses; stock searches and retries aren't
    assert stats.http_requests == 204
    assert stats.requests_rps == pytest.approx(20.4)
    assert (stats.http_failures, stats.order_checks, stats.order_failures) == (3, 29, 3)
    assert stats.error_ratio == pytest.approx(6 / (204 + 29))
    assert stats.p50_ms == 5  # over HTTP requests only: the 800 ms order checks are not in it
    final = stats.entry("ORDER", "final state")
    assert final is not None and final.p50_ms == 800


def test_an_empty_run_has_no_rate() -> None:
    stats = summarize([])
    assert (stats.requests_rps, stats.error_ratio, stats.actions) == (0.0, 0.0, 0)


def test_top_failures_come_from_the_failures_csv() -> None:
    text = (
        "Method,Name,Error,Occurrences\n"
        "POST,/api/v1/orders,504 upstream-timeout,3\n"
        "GET,/api/v1/orders/{order_id},500,7\n"
    )
    assert [f["occurrences"] for f in top_failures(text)] == [7, 3]
    assert top_failures(text, limit=1)[0]["name"] == "/api/v1/orders/{order_id}"


# --- tickets_sold_total -----------------------------------------------------------------

EXPOSITION = """\
# HELP tickets_sold_total Tickets issued for confirmed orders, by route.
# TYPE tickets_sold_total counter
tickets_sold_total{route="Nairobi-Mombasa"} 7.0
tickets_sold_total{route="Nakuru-Nairobi"} 5.0
# HELP tickets_sold_created Tickets issued for confirmed orders, by route.
# TYPE tickets_sold_created gauge
tickets_sold_created{route="Nairobi-Mombasa"} 1.7e9
# HELP orders_final_total Orders that reached a final state, by status.
# TYPE orders_final_total counter
orders_final_total{status="CONFIRMED"} 99.0
"""


def test_the_counter_is_summed_over_its_labels() -> None:
    assert counter_total(EXPOSITION) == 12
    assert counter_total(EXPOSITION, "orders_final_total") == 99


def test_a_declared_counter_without_samples_is_zero() -> None:
    text = "# HELP tickets_sold_total x\n# TYPE tickets_sold_total counter\n"
    assert counter_total(text) == 0


def test_a_missing_counter_is_an_error_not_zero() -> None:
    with pytest.raises(MetricMissing):
        counter_total("# TYPE http_requests_total counter\nhttp_requests_total 3\n")


# --- the verdict --------------------------------------------------------------------------


def _verdict(**changes: Any) -> Verdict:
    fields: dict[str, Any] = {
        "metric_before": 10.0,
        "metric_after": 52.0,
        "db_tickets": 42,
        "pending_orders": 0,
        "error_ratio": 0.0,
        "max_error_ratio": 0.01,
        "latency": (
            LatencyGate("POST /orders p99", 1.0, 610),
            LatencyGate("order to final state p99", 5.0, 2300),
        ),
    }
    return Verdict(**{**fields, **changes})


def test_metric_and_database_agreeing_passes() -> None:
    verdict = _verdict()
    assert verdict.metric_delta == 42
    assert verdict.agree and verdict.passed and verdict.reasons == []


@pytest.mark.parametrize("after", [51.0, 53.0, 94.0])
def test_a_disagreement_is_caught(after: float) -> None:
    verdict = _verdict(metric_after=after)
    assert not verdict.agree
    assert not verdict.passed
    assert "tickets_sold_total rose by" in verdict.reasons[0]


def test_an_empty_run_proves_nothing() -> None:
    verdict = _verdict(metric_after=10.0, db_tickets=0)
    assert verdict.agree and not verdict.passed
    assert verdict.reasons == ["no ticket was sold: the check proves nothing"]


def test_too_many_errors_or_pending_orders_fail_the_run() -> None:
    assert _verdict(error_ratio=0.011).reasons[0].startswith("error ratio 1.10%")
    assert _verdict(error_ratio=0.01).passed
    assert not _verdict(pending_orders=1).passed


def test_pending_counts_orders_the_database_does_not_have() -> None:
    state = OrdersState(recorded=5, found=4, by_status={"CONFIRMED": 3, "PENDING_PAYMENT": 1})
    assert state.pending == 2
    assert state.to_dict()["pending"] == 2


async def test_waiting_for_final_orders_polls_until_none_is_pending() -> None:
    states = iter(
        [
            OrdersState(3, 3, {"PENDING_PAYMENT": 2, "CONFIRMED": 1}),
            OrdersState(3, 3, {"PENDING_PAYMENT": 1, "CONFIRMED": 2}),
            OrdersState(3, 3, {"CONFIRMED": 3}, tickets=3),
        ]
    )
    reads = 0

    async def read() -> OrdersState:
        nonlocal reads
        reads += 1
        return next(states)

    state = await wait_until_final(read, timeout=5, interval=0.01)
    assert (state.pending, state.tickets, reads) == (0, 3, 3)


async def test_waiting_for_final_orders_gives_up_at_the_deadline() -> None:
    async def read() -> OrdersState:
        return OrdersState(1, 1, {"PENDING_PAYMENT": 1})

    loop = asyncio.get_running_loop()
    started = loop.time()
    state = await wait_until_final(read, timeout=0.2, interval=0.05)
    assert state.pending == 1
    assert 0.2 <= loop.time() - started < 2


def _result(**changes: Any) -> dict[str, Any]:
    """A result as ``_result`` writes it (through JSON, as result.json holds it)."""
    result = {
        "scenario": "baseline",
        "summary": "s",
        "full_form": False,
        "stages": [{"seconds": 4, "rate": 3}],
        "target_rps": 3,
        "peak_rps": 3,
        "achieved_rps": 2.9,
        "elapsed_seconds": 4,
        "requests": 40,
        "requests_rps": 10,
        "latency_ms": {"p50": 5, "p95": 20, "p99": 30},
        "purchase_latency_ms": {"p50": 20, "p95": 40, "p99": 50},
        "time_to_final_ms": None,
        "failures": {"requests": 0, "orders": 0, "total": 0, "rate_limited": 0},
        "error_ratio": 0,
        "max_error_ratio": 0.01,
        "latency_gates": [g.to_dict() for g in _verdict().latency],
        "latency_gates_are_the_scenarios": True,
        "rate_limit": {
            "set_by_the_run": {"per_second": 60, "burst": 120},
            "needed": {"per_second": 60, "burst": 120},
            "buyers_send_at_most_rps": 48.0,
            "refused": 0,
            "met": None,
        },
        "orders": {"recorded": 12, "by_status": {"CONFIRMED": 12}},
        "tickets_sold_total": {"before": 0, "after": 12, "delta": 12},
        "db_tickets": 12,
        "agree": True,
        "passed": True,
        "reasons": [],
        "top_failures": [],
        "orders_not_recorded_by_the_run": {"orders": 0, "confirmed_seats": 0},
        "results_dir": "/tmp/x",
        "target": {"self_contained": True},
    }
    result.update(changes)
    loaded: dict[str, Any] = json.loads(json.dumps(result))
    return loaded


def test_the_report_says_disagree_and_why() -> None:
    report = render(
        _result(
            tickets_sold_total={"before": 0, "after": 13, "delta": 13},
            agree=False,
            passed=False,
            reasons=["tickets_sold_total rose by 13 but the database holds 12 tickets"],
            orders_not_recorded_by_the_run={"orders": 1, "confirmed_seats": 1},
        )
    )
    assert "shortened to 4 s" in report
    assert "DISAGREE" in report
    assert "1 orders the run was never told of" in report
    assert "no other client" in report
    assert report.splitlines()[-1].startswith("  FAILED")


# --- latency gates ------------------------------------------------------------------------


def test_every_scenario_has_latency_gates_no_looser_than_the_spikes() -> None:
    spike = SCENARIOS["spike"].gates
    for scenario in SCENARIOS.values():
        assert scenario.gates.post_p99 > 0 and scenario.gates.final_p99 > 0
        assert scenario.gates.post_p99 <= spike.post_p99
        assert scenario.gates.final_p99 <= spike.final_p99
        assert scenario.gates.post_p99 < scenario.gates.final_p99  # the POST is part of it


def test_scaling_keeps_the_gates_and_the_command_line_replaces_them() -> None:
    spike = SCENARIOS["spike"]
    assert spike.scaled(duration=6, peak_rate=16).gates == spike.gates
    changed = spike.with_gates(post_p99=0.5)
    assert changed.gates == LatencyGates(0.5, spike.gates.final_p99)
    assert spike.with_gates() == spike
    with pytest.raises(ValueError, match="positive"):
        spike.with_gates(final_p99=0)


@pytest.mark.parametrize(("measured_ms", "passed"), [(999, True), (1000, True), (1001, False)])
def test_a_latency_gate_passes_at_or_under_its_threshold(measured_ms: int, passed: bool) -> None:
    gate = LatencyGate("POST /orders p99", 1.0, measured_ms)
    assert gate.passed is passed
    assert (gate.reason is None) is passed


def test_a_run_over_a_latency_gate_fails_with_the_figure_and_the_threshold() -> None:
    verdict = _verdict(
        latency=(
            LatencyGate("POST /orders p99", 1.0, 2400),
            LatencyGate("order to final state p99", 5.0, 6300),
        )
    )
    assert not verdict.passed
    assert verdict.reasons == [
        "POST /orders p99 2.40 s is above the allowed 1 s",
        "order to final state p99 6.30 s is above the allowed 5 s",
    ]


def test_a_figure_never_measured_fails_the_gate_rather_than_passing_as_zero() -> None:
    gate = LatencyGate("order to final state p99", 5.0, None)
    assert not gate.passed
    assert gate.reason is not None and "was not measured" in gate.reason
    assert gate.to_dict() == {
        "name": "order to final state p99",
        "measured_ms": None,
        "max_ms": 5000,
        "passed": False,
    }
    assert not _verdict(latency=(gate,)).passed


def test_a_verdict_without_latency_gates_fails() -> None:
    verdict = _verdict(latency=())
    assert verdict.reasons == ["no latency gate was given: the run's speed is not judged"]


def test_the_gates_read_the_runs_post_and_final_state_figures() -> None:
    stats = summarize(
        [
            _entry("POST", "/api/v1/orders", {20: 98, 700: 1, 1300: 1}),
            _entry("POST", "/api/v1/orders [retry]", {2900: 5}),  # not the buyer's first POST
            _entry("ORDER", "final state", {900: 99, 5400: 1}),
        ]
    )
    post, final = latency_gates(SCENARIOS["baseline"], stats)
    assert (post.measured_ms, post.max_seconds) == (1300, SCENARIOS["baseline"].gates.post_p99)
    assert (final.measured_ms, final.max_seconds) == (5400, SCENARIOS["baseline"].gates.final_p99)
    assert not post.passed and not final.passed


def test_no_purchase_and_no_order_followed_means_no_figure_not_zero() -> None:
    # A run whose every request was refused before a purchase: Locust has no POST row and no
    # order row; the gates must not read the empty histograms' 0 ms as fast.
    stats = summarize([_entry("GET", "/api/v1/trips [stock]", {3: 10}, failures=10)])
    assert [g.measured_ms for g in latency_gates(SCENARIOS["spike"], stats)] == [None, None]
    zero_requests = summarize([{**_entry("POST", "/api/v1/orders", {}), "num_requests": 0}])
    assert latency_gates(SCENARIOS["spike"], zero_requests)[0].measured_ms is None


def test_the_report_prints_each_gate_with_its_figure_and_threshold() -> None:
    gates = [
        LatencyGate("POST /orders p99", 1.0, 49).to_dict(),
        LatencyGate("order to final state p99", 5.0, None).to_dict(),
    ]
    report = render(_result(latency_gates=gates, latency_gates_are_the_scenarios=False))
    assert "  gates      POST /orders p99 49 ms <= 1 s  pass" in report.splitlines()
    assert (
        "             order to final state p99 not measured (allowed 5 s)  FAIL"
        "  (thresholds from the command line, not the scenario's)"
    ) in report.splitlines()


def test_the_gates_travel_with_the_scenario_to_locust() -> None:
    short = SCENARIOS["spike"].scaled(duration=6).with_gates(final_p99=7)
    assert Scenario.from_json(short.to_json()).gates == LatencyGates(
        SCENARIOS["spike"].gates.post_p99, 7
    )


# --- the gateway's rate limit ---------------------------------------------------------------


def test_the_spike_needs_more_than_the_gateways_default_limit() -> None:
    """Why a suite of the run's own sets the limit: at the default the spike is refused."""
    default = GatewaySettings.rate_limit_per_second
    assert SCENARIOS["spike"].requests_per_second_at_most() > default
    assert SCENARIOS["baseline"].requests_per_second_at_most() <= default


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_runs_own_limit_covers_its_buyers_with_headroom(name: str) -> None:
    scenario = SCENARIOS[name]
    most = scenario.requests_per_second_at_most()
    limit = scenario.rate_limit()
    assert limit.per_second >= most * 1.25
    assert limit.burst >= 2 * limit.per_second
    # The users are what make the rate: each sends at most one request per poll interval.
    assert most == users_for(scenario.peak_rate) / 0.25
    assert limit.env() == {
        "SAFIRI_RATE_LIMIT_PER_SECOND": str(limit.per_second),
        "SAFIRI_RATE_LIMIT_BURST": str(limit.burst),
    }
    assert scenario.rate_limit(user_rps=0.5).per_second < limit.per_second


def _failures_csv(*rows: tuple[str, str, str, int]) -> str:
    """Locust's failures file: its Error column holds ``repr`` of the failure (a
    ``CatchResponseError`` for ``response.failure(text)``; importing Locust here would
    monkey-patch the test process, so the e2e run reads a file Locust wrote)."""
    lines = ["Method,Name,Error,Occurrences"]
    for method, name, text, n in rows:
        error = f"CatchResponseError({text!r})".replace('"', '""')
        lines.append(f'{method},{name},"{error}",{n}')
    return "\n".join(lines) + "\n"


def test_refusals_by_the_rate_limit_are_counted_apart_with_the_limit_named() -> None:
    detail = "This API key may send 200 requests per second (bursts of 400); retry after 1 s."
    text = _failures_csv(
        ("POST", "/api/v1/orders", f"{RATE_LIMITED}: {detail}", 30),
        ("GET", "/api/v1/orders/{order_id}", f"{RATE_LIMITED}: {detail}", 12),
        ("POST", "/api/v1/orders", "504 upstream-timeout", 3),
    )
    assert rate_limited(text) == (42, detail)
    assert rate_limited(_failures_csv(("POST", "/api/v1/orders", "504 x", 3))) == (0, None)


def test_a_refused_run_fails_and_says_which_settings_the_scenario_needs() -> None:
    needed = "SAFIRI_RATE_LIMIT_PER_SECOND=2000 SAFIRI_RATE_LIMIT_BURST=4000"
    verdict = _verdict(
        rate_limited=42,
        rate_limit_met="This API key may send 200 requests per second (bursts of 400)",
        rate_limit_needed=needed,
    )
    assert not verdict.passed
    (reason,) = verdict.reasons
    assert reason.startswith("42 requests were refused with 429")
    assert "(This API key may send 200 requests per second (bursts of 400))" in reason
    assert needed in reason


def test_the_report_names_the_limit_the_run_met_or_set() -> None:
    limit = {
        "set_by_the_run": None,
        "needed": RateLimit(2000, 4000).to_dict(),
        "buyers_send_at_most_rps": 1600.0,
        "refused": 42,
        "met": "This API key may send 200 requests per second (bursts of 400)",
    }
    report = render(
        _result(
            rate_limit=limit,
            failures={"requests": 42, "orders": 0, "total": 42, "rate_limited": 42},
            target={"self_contained": False},
        )
    )
    assert (
        "  rate limit the suite's (this scenario needs SAFIRI_RATE_LIMIT_PER_SECOND=2000"
        " SAFIRI_RATE_LIMIT_BURST=4000); 42 requests refused (429): This API key may send"
        " 200 requests per second (bursts of 400)"
    ) in report.splitlines()
    assert "  failures   42 requests (42 refused by the rate limit), 0 orders;" in report
    own = render(_result())
    assert (
        "  rate limit set by the run: 60/s per API key, bursts of 120 (the buyers send at"
        " most 48/s); 0 requests refused (429)"
    ) in own.splitlines()


def test_the_readmes_table_of_limits_is_the_scenarios() -> None:
    """load/README.md tells a `make up` user which limit each scenario needs: the figures
    must be the ones a run of its own sets."""
    readme = (Path(__file__).resolve().parents[2] / "load" / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in SCENARIOS:
            rows[cells[0]] = tuple(int(c) for c in cells[1:])
    assert rows == {
        name: (
            users_for(s.peak_rate),
            int(s.requests_per_second_at_most()),
            s.rate_limit().per_second,
            s.rate_limit().burst,
        )
        for name, s in SCENARIOS.items()
    }


def test_durations_read_in_ms_under_a_second_and_in_seconds_from_one() -> None:
    assert [duration_text(ms) for ms in (12, 999, 1000, 2400)] == [
        "12 ms",
        "999 ms",
        "1.00 s",
        "2.40 s",
    ]
