"""The short human report of one run: what was injected, what fired and when, what held."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from .events import (
    ALERT_FIRING,
    ALERT_PENDING,
    ALERT_RESOLVED,
    FAULT_HEALED,
    FAULT_INJECTED,
    EventLog,
)

__all__ = ["Journal", "failures", "passed", "render_report", "why_failed", "write_results"]

Journal = dict[str, Any]  # a Chaos Toolkit journal, as `chaos run` writes it


def failures(journal: Journal, results_dir: Path | None = None) -> list[str]:
    """Why the run failed; empty when it passed.

    Stricter than ``chaos run``, which only fails on the steady state: here a symptom probe of
    the method that failed (the alert never fired) or a rollback that failed fails the run too.
    """
    out = []
    if journal["status"] != "completed":
        out.append(f"the experiment ended {journal['status']}")
    for phase in ("before", "after"):
        state = journal["steady_states"][phase]
        if state and not state["steady_state_met"]:
            probe = state["probes"][-1]
            out.append(f"steady state {phase} the method not met: {probe['activity']['name']}")
    hypothesis = journal.get("experiment", {}).get("steady-state-hypothesis")
    if hypothesis and journal["status"] == "completed":
        for phase in ("before", "after"):
            if not journal["steady_states"][phase]:
                out.append(f"the steady state {phase} the method was never checked")
    if results_dir is not None:
        invariants = results_dir / "invariants.json"
        if not invariants.exists():
            out.append("the final invariant check did not run (no invariants.json)")
        else:
            found = json.loads(invariants.read_text())
            if not found["ok"]:
                out.append(f"the final invariant check found {found['violations']} violation(s)")
    for kind in ("run", "rollbacks"):
        for run in journal[kind]:
            if run["status"] != "succeeded":
                name = run["activity"]["name"]
                out.append(f"{name} failed: {why_failed(run)}")
    return out


def why_failed(run: dict[str, Any]) -> str:
    """A failed activity's error, one line (Chaos Toolkit keeps the whole traceback)."""
    lines = [line.strip() for line in run.get("exception", []) if line.strip()]
    last = lines[-1].splitlines()[-1] if lines else "failed"
    return last.removeprefix("chaoslib.exceptions.ActivityFailed: ")


def passed(journal: Journal, results_dir: Path | None = None) -> bool:
    return not failures(journal, results_dir)


def render_report(journal: Journal, results_dir: Path) -> str:
    why = failures(journal, results_dir)
    lines = [
        f"# {journal['experiment']['title']}",
        "",
        f"Result: {'PASSED' if not why else 'FAILED'}" + "".join(f"\n  - {w}" for w in why),
        f"Ran {journal['start']} for {journal['duration']:.1f} s (journal.json, events.jsonl,"
        " history.jsonl, invariants.txt, logs/)",
        "",
        *_summary(journal, EventLog(results_dir)),
        *_impact(results_dir),
    ]
    for phase in ("before", "after"):
        state = journal["steady_states"][phase]
        if state:
            met = "met" if state["steady_state_met"] else "NOT met"
            lines += ["", f"Steady state {phase} the method: {met}"]
            lines += [_run_line(r) for r in state["probes"]]
    lines += ["", "Method:", *(_run_line(r) for r in journal["run"])]
    lines += ["", "Rollbacks:", *(_run_line(r) for r in journal["rollbacks"])]
    invariants = results_dir / "invariants.json"
    if invariants.exists():
        lines += [
            "",
            "Final invariant check:",
            (results_dir / "invariants.txt").read_text().rstrip(),
        ]
    return "\n".join(lines) + "\n"


def _summary(journal: Journal, events: EventLog) -> list[str]:
    start = datetime.fromisoformat(journal["start"])
    injected = events.last(FAULT_INJECTED)
    if injected is None:
        return ["Injected: nothing (the method did not reach the fault)"]
    healed = events.first(FAULT_HEALED, after=injected.at)
    lines = [
        f"Injected: {json.dumps(injected.data.get('faults'))} at {_at(injected.at, start)}",
        f"Healed:   {_at(healed.at, start) if healed else 'not by the method'}"
        + (f", after {_seconds(healed.at, injected.at)} of fault" if healed else ""),
    ]
    after = [e for e in events.read() if e.at >= injected.at]
    for alert in dict.fromkeys(e.data["alert"] for e in after if "alert" in e.data):
        seen = {e.name: e for e in after if e.data.get("alert") == alert}
        parts = [
            f"{label} {_seconds(seen[name].at, injected.at)} after the fault"
            for name, label in ((ALERT_PENDING, "pending"), (ALERT_FIRING, "firing"))
            if name in seen
        ]
        if ALERT_RESOLVED in seen and healed is not None:
            parts.append(f"resolved {_seconds(seen[ALERT_RESOLVED].at, healed.at)} after healing")
        lines.append(f"Fired:    {alert}: {', '.join(parts) or 'never'}")
    for run in journal["run"]:
        func = run["activity"].get("provider", {}).get("func")
        if func == "metric_rose" and run["status"] == "succeeded":
            lines.append(f"Moved:    {run['activity']['name']}: +{run['output']:g}")
        elif func == "time_after_fault" and run["status"] == "succeeded":
            name, after = run["activity"]["name"], run["output"]
            lines.append(f"Moved:    {name}: {after:g} s after the fault")
        elif func == "buy_tickets" and run["status"] == "succeeded":
            lines.append(f"Load:     {_flat(run['output'])}")
        elif func == "orders_final" and run["status"] == "succeeded":
            lines.append(f"Orders:   {_flat(run['output'])}")
    return lines


def _impact(results_dir: Path) -> list[str]:
    """The customers' side (impact.json, written with the final invariant check)."""
    path = results_dir / "impact.json"
    if not path.exists():
        return []
    impact = json.loads(path.read_text())
    phases = ", ".join(
        f"{phase} {p['failed']} of {p['all']}"
        for phase, p in impact["by_phase"].items()
        if p["all"]
    )
    after = impact["failing_after_heal_s"]
    tail = f"; kept failing {after:g} s after the heal" if after else "; none failed after the heal"
    return [
        f"Impact:   {impact['failed']} of {impact['purchases']} purchases failed for their"
        f" customer ({phases}){tail}"
    ]


def _at(at: datetime, start: datetime) -> str:
    return f"{at:%H:%M:%S} (t+{_seconds(at, start)})"


def _seconds(later: datetime, earlier: datetime) -> str:
    return f"{(later - earlier).total_seconds():.1f} s"


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_flat(v)}" for k, v in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)


def _run_line(run: dict[str, Any]) -> str:
    mark = "✓" if run["status"] == "succeeded" and run.get("tolerance_met", True) else "✗"
    output = run["output"] if run["status"] == "succeeded" else why_failed(run)
    return f"  {mark} {run['activity']['name']}: {json.dumps(output, default=str)}"


def write_results(journal: Journal, results_dir: Path) -> Path:
    """journal.json and report.md in ``results_dir``; returns the report's path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str) + "\n")
    report = results_dir / "report.md"
    report.write_text(render_report(journal, results_dir))
    return report
