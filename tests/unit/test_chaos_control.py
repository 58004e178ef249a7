"""Safiri's Chaos Toolkit control, under Chaos Toolkit's own runner (chaoslib, in process):
a failed activity of the method stops the run, rollbacks always play, the journal and the
report land in the results folder, and the defaults fill what the environment leaves empty.
Also the parts of the extension that need no suite: the history, the load's pacing, the report.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chaoslib.experiment import run_experiment

from safiri_chaos import control
from safiri_chaos.history import HistoryRecorder, Op, read_history
from safiri_chaos.impact import customer_impact
from safiri_chaos.load import run_load
from safiri_chaos.run_report import failures, render_report

pytestmark = pytest.mark.unit

CALLS: list[str] = []
BACKGROUND_DONE = threading.Event()


# Providers the experiments below call (a Python provider is a module-level function).
def probe(value: Any, configuration: Mapping[str, Any]) -> Any:
    CALLS.append(f"probe {value} {configuration['where']}")
    return value


def action(name: str, secrets: Mapping[str, Any] | None = None) -> str:
    CALLS.append(f"action {name} {dict(secrets or {})}")
    return name


def background() -> str:
    BACKGROUND_DONE.wait(timeout=10)
    CALLS.append("background done")
    return "bg"


def release() -> None:
    CALLS.append("release")
    BACKGROUND_DONE.set()


def broken() -> None:
    BACKGROUND_DONE.set()  # the method stops here: let the background load end now
    raise RuntimeError("the alert never fired")


def python(func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": __name__, "func": func, "arguments": arguments}


def experiment(before: Any = True, symptom: str = "release") -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "title": "t",
        "description": "d",
        "steady-state-hypothesis": {
            "title": "h",
            "probes": [
                {
                    "type": "probe",
                    "name": "ok",
                    "tolerance": True,
                    "provider": python("probe", value="${ok}"),
                }
            ],
        },
        "method": [
            {"type": "action", "name": "bg", "background": True, "provider": python("background")},
            {
                "type": "action",
                "name": "inject",
                "provider": {**python("action", name="${fault}"), "secrets": ["safiri"]},
            },
            {"type": "probe", "name": "symptom", "provider": python(symptom)},
            {"type": "action", "name": "release", "provider": python("release")},
        ],
        "rollbacks": [
            {"type": "action", "name": "heal", "provider": python("action", name="heal")}
        ],
        "configuration": {"ok": before, "fault": "outage", "where": "here", "results_dir": ""},
        "secrets": {"safiri": {"api_key": "k", "simulator_admin_key": ""}},
        "runtime": {"rollbacks": {"strategy": "always"}},
        "controls": [
            {"name": "safiri", "provider": {"type": "python", "module": "safiri_chaos.control"}}
        ],
        "extensions": [{"name": "safiri", "id": "unit"}],
    }


CHECKED: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    CALLS.clear()
    BACKGROUND_DONE.clear()
    CHECKED.clear()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # no trace store here

    def final_check(configuration: Mapping[str, Any], secrets: Mapping[str, Any]) -> int:
        # The invariant checker reads a suite's databases: out of a unit test's reach.
        CHECKED.append(dict(configuration))
        results = Path(configuration["results_dir"])
        results.mkdir(parents=True, exist_ok=True)
        (results / "invariants.json").write_text(json.dumps({"ok": True, "violations": 0}))
        (results / "invariants.txt").write_text("invariants HOLD\n")
        return 0

    monkeypatch.setattr(control, "invariant_violations", final_check)
    monkeypatch.chdir(tmp_path)


def run(exp: dict[str, Any], **configuration: Any) -> dict[str, Any]:
    """``chaos run`` as chaostoolkit's CLI does it (the experiment's runtime, its vars)."""
    settings = {"runtime": exp["runtime"]}
    journal: dict[str, Any] = run_experiment(
        exp, settings=settings, experiment_vars=(configuration, None)
    )
    return journal


def results_of(journal: dict[str, Any]) -> Path:
    [results] = Path("chaos/results").iterdir()
    return results


def test_a_passing_run_has_the_journal_chaos_toolkit_writes() -> None:
    journal = run(experiment())
    assert journal["status"] == "completed"
    assert journal["deviated"] is False
    assert set(journal) >= {"experiment", "start", "end", "duration", "steady_states", "run"}
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["steady_states"]["after"]["probes"][0]["tolerance_met"] is True
    assert [r["activity"]["name"] for r in journal["run"]] == ["bg", "inject", "symptom", "release"]
    assert journal["run"][0]["output"] == "bg"
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["heal"]
    assert CALLS[0] == "probe True here"
    assert "action outage {'api_key': 'k', 'simulator_admin_key': 'safiri-sim-admin'}" in CALLS
    assert CALLS.index("release") < CALLS.index("background done")
    results = results_of(journal)
    assert results.name.startswith("unit-")
    assert json.loads((results / "journal.json").read_text())["status"] == "completed"
    assert (results / "report.md").read_text().startswith("# t\n\nResult: PASSED")
    assert len(CHECKED) == 1


def test_a_steady_state_not_met_before_skips_the_method_but_still_heals() -> None:
    journal = run(experiment(), ok=False)
    assert journal["status"] == "failed"
    assert journal["run"] == []
    assert journal["rollbacks"][0]["status"] == "succeeded"
    assert failures(journal) == [
        "the experiment ended failed",
        "steady state before the method not met: ok",
    ]


def test_a_symptom_that_never_showed_interrupts_the_run_and_still_heals() -> None:
    journal = run(experiment(symptom="broken"))
    assert journal["status"] == "interrupted"
    [failed] = [r for r in journal["run"] if r["status"] == "failed"]
    assert "RuntimeError: the alert never fired" in failed["exception"][-1]
    assert [r["activity"]["name"] for r in journal["run"]][-1] == "symptom"  # release never ran
    assert journal["rollbacks"][0]["status"] == "succeeded"
    assert "symptom failed: RuntimeError: the alert never fired" in failures(journal)


def test_without_the_control_chaos_toolkit_would_complete_the_same_broken_run() -> None:
    """Why the control is there: plain chaos run records a failed symptom and carries on."""
    plain = experiment(symptom="broken")
    del plain["controls"]
    journal = run(plain)
    assert journal["status"] == "completed"


def test_a_missing_api_key_stops_the_run_before_the_steady_state_saying_where_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SAFIRI_CHAOS_API_KEY", "SAFIRI_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    exp = experiment()
    exp["secrets"]["safiri"]["api_key"] = ""
    journal = run(exp)
    assert journal["status"] == "interrupted"
    assert journal["steady_states"]["before"] is None
    assert CALLS == ["action heal {}"]  # the rollback only
    assert not CHECKED  # nothing to check: the run never reached the suite


def test_defaults_come_from_the_environment_then_make_up_s_key_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def resolved(env: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
        configuration: dict[str, Any] = {"results_dir": "", "gateway_url": "http://g"}
        secrets: dict[str, Any] = {"safiri": {"api_key": "", "simulator_admin_key": ""}}
        problems = control.resolve_defaults(configuration, secrets, experiment(), env)
        return {**configuration, **secrets["safiri"]}, problems

    got, problems = resolved({"SAFIRI_CHAOS_API_KEY": "a", "SAFIRI_API_KEYS": "b,c"})
    assert (got["api_key"], got["simulator_admin_key"], problems) == ("a", "safiri-sim-admin", [])
    assert got["results_dir"].startswith("chaos/results/unit-")
    assert resolved({"SAFIRI_API_KEYS": " b ,c"})[0]["api_key"] == "b"
    assert resolved({"SAFIRI_MPESA_SIM_ADMIN_KEY": "z"})[0]["simulator_admin_key"] == "z"
    got, problems = resolved({})
    assert got["api_key"] == "" and "SAFIRI_CHAOS_API_KEY" in problems[0]
    Path("var").mkdir()
    Path("var/api-key").write_text("sk_local_made_up\n")
    assert resolved({})[0]["api_key"] == "sk_local_made_up"


def test_the_report_names_what_failed(tmp_path: Path) -> None:
    journal = run(experiment(symptom="broken"))
    report = render_report(journal, tmp_path)
    assert "Result: FAILED" in report
    assert "✗ symptom" in report
    assert "Injected: nothing" in report


def test_the_history_recorder_keeps_every_operation_from_every_thread(tmp_path: Path) -> None:
    recorder = HistoryRecorder(tmp_path / "h" / "history.jsonl")

    def buyer(n: int) -> None:
        for i in range(50):
            recorder.record("invoke", f"p{n}", f"{n}-{i}", trip_id="t")
            recorder.record("unknown", f"p{n}", f"{n}-{i}", error="TimeoutError()")

    threads = [threading.Thread(target=buyer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = list(read_history(recorder.path))
    assert len(ops) == 400
    assert {o.type for o in ops} == {"invoke", "unknown"}
    assert ops[0].trip_id == "t"


class FakeBuyer:
    def __init__(self) -> None:
        self.trips: list[str] = []

    async def purchase(self, process: str, trip_id: str) -> Op:
        self.trips.append(trip_id)
        await asyncio.sleep(0)
        return Op("ok", process, process, "now", order_id="o")


async def test_the_load_keeps_its_rate_and_stops_when_told() -> None:
    buyer = FakeBuyer()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    summary = await run_load(
        buyer,  # type: ignore[arg-type]
        ["a", "b"],
        rate=40,
        max_seconds=10,
        should_stop=stop.is_set,
        check_every=0.05,
    )
    assert 10 <= summary["purchases"] <= 25
    assert summary["ok"] == summary["purchases"]
    assert buyer.trips[:4] == ["a", "b", "a", "b"]


async def test_the_load_stops_at_its_time_limit() -> None:
    summary = await run_load(
        FakeBuyer(),  # type: ignore[arg-type]
        ["a"],
        rate=50,
        max_seconds=0.2,
        should_stop=lambda: False,
    )
    assert summary["seconds"] <= 0.3
    assert summary["purchases"] <= 11


def test_the_report_says_what_was_injected_what_fired_and_when(tmp_path: Path) -> None:
    journal = run(experiment())
    start = datetime.fromisoformat(journal["start"])
    lines = [
        ("fault_injected", 3.0, {"faults": {"outage": "http_503"}}),
        ("alert_pending", 6.5, {"alert": "SafiriPaymentProviderFailing"}),
        ("alert_firing", 8.5, {"alert": "SafiriPaymentProviderFailing"}),
        ("fault_healed", 9.0, {}),
        ("alert_resolved", 14.0, {"alert": "SafiriPaymentProviderFailing"}),
    ]
    (tmp_path / "events.jsonl").write_text(
        "".join(
            json.dumps({"event": name, "at": (start + timedelta(seconds=s)).isoformat(), **data})
            + "\n"
            for name, s, data in lines
        )
    )
    report = render_report(journal, tmp_path)
    assert 'Injected: {"outage": "http_503"} at' in report
    assert "(t+3.0 s)" in report
    assert "Healed:   " in report and "after 6.0 s of fault" in report
    assert (
        "Fired:    SafiriPaymentProviderFailing: pending 3.5 s after the fault,"
        " firing 5.5 s after the fault, resolved 5.0 s after healing"
    ) in report
    assert "Impact:" not in report  # no impact.json: nothing is claimed
    impact = customer_impact(
        [
            Op("invoke", "p", "k1", (start + timedelta(seconds=4)).isoformat()),
            Op("fail", "p", "k1", (start + timedelta(seconds=4)).isoformat(), status=503),
            Op("invoke", "p", "k2", (start + timedelta(seconds=12)).isoformat()),
            Op("ok", "p", "k2", (start + timedelta(seconds=12)).isoformat(), order_id="o2"),
        ],
        {"o2": "PAYMENT_FAILED"},
        start + timedelta(seconds=3),
        start + timedelta(seconds=9),
    )
    (tmp_path / "impact.json").write_text(json.dumps(impact.to_dict()))
    assert (
        "Impact:   2 of 2 purchases failed for their customer (during 1 of 1, after 1 of 1);"
        " kept failing 3 s after the heal"
    ) in render_report(journal, tmp_path)


def test_a_run_whose_final_check_never_ran_or_whose_steady_state_was_skipped_fails(
    tmp_path: Path,
) -> None:
    journal = run(experiment())
    assert failures(journal, results_of(journal)) == []
    assert failures(journal, tmp_path) == [
        "the final invariant check did not run (no invariants.json)"
    ]
    skipped = {**journal, "steady_states": {"before": None, "after": None, "during": []}}
    assert failures(skipped) == [
        "the steady state before the method was never checked",
        "the steady state after the method was never checked",
    ]
