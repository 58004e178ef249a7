"""The runner plays an experiment as ``chaos run`` does and keeps the same journal; the
history recorder and the load generator behave."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from safiri.chaos.history import HistoryRecorder, Op, read_history
from safiri.chaos.load import run_load
from safiri.chaos.run_report import failures, passed, render_report
from safiri.chaos.runner import run_experiment
from safiri.chaos.threads import in_daemon_thread

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
    raise RuntimeError("the alert never fired")


def python(func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": __name__, "func": func, "arguments": arguments}


def experiment(before: Any = True, symptom: str = "release") -> dict[str, Any]:
    return {
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
        "configuration": {"ok": before, "fault": "outage", "where": "here"},
    }


@pytest.fixture(autouse=True)
def _fresh() -> None:
    CALLS.clear()
    BACKGROUND_DONE.clear()


def run(exp: dict[str, Any], **configuration: Any) -> dict[str, Any]:
    return run_experiment(
        exp, {**exp["configuration"], **configuration}, {"safiri": {"api_key": "k"}}
    )


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
    assert "action outage {'api_key': 'k'}" in CALLS
    assert CALLS.index("release") < CALLS.index("background done")
    assert passed(journal)


def test_a_steady_state_not_met_before_skips_the_method_but_still_heals() -> None:
    journal = run(experiment(), ok=False)
    assert journal["status"] == "failed"
    assert journal["run"] == []
    assert journal["rollbacks"][0]["status"] == "succeeded"
    assert failures(journal) == [
        "the experiment ended failed",
        "steady state before the method not met: ok",
    ]


def test_a_symptom_that_never_showed_fails_the_run_though_chaos_toolkit_completes() -> None:
    journal = run(experiment(symptom="broken"))
    assert journal["status"] == "completed"
    [failed] = [r for r in journal["run"] if r["status"] == "failed"]
    assert "RuntimeError: the alert never fired" in failed["exception"][-1]
    assert failures(journal) == ["symptom failed: RuntimeError: the alert never fired"]


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


async def test_blocking_work_in_a_daemon_thread_hands_back_its_result_or_error() -> None:
    assert await in_daemon_thread(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await in_daemon_thread(divmod, 1, 0)


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
