"""Runs an experiment the way ``chaos run`` does, and keeps the same journal.

Steady-state hypothesis, method (background activities in threads of their own), the
hypothesis again, then the rollbacks. One difference, on purpose: the rollbacks always play,
so a fault is healed even when the run failed or was interrupted (``chaos run
--rollback-strategy=always``).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from .activity import Run, execute_activity
from .experiment import Experiment, all_activities
from .tolerance import within_tolerance

__all__ = ["Journal", "run_experiment"]

Journal = dict[str, Any]
Log = Callable[[str], None]


def run_experiment(
    experiment: Experiment,
    configuration: Mapping[str, Any],
    secrets: Mapping[str, dict[str, Any]],
    log: Log = lambda _: None,
) -> Journal:
    started = datetime.now(UTC)
    journal: Journal = {
        "chaoslib-version": None,
        "platform": platform.platform(),
        "node": platform.node(),
        "experiment": experiment,
        "start": started.isoformat(),
        "status": None,
        "deviated": False,
        "steady_states": {"before": None, "after": None, "during": []},
        "run": [],
        "rollbacks": [],
    }
    named = {a["name"]: a for a in all_activities(experiment) if "name" in a}

    def play(activity: Mapping[str, Any]) -> Run:
        activity = named[activity["ref"]] if "ref" in activity else activity
        log(f"{activity['type']}: {activity['name']}")
        run = execute_activity(activity, configuration, secrets)
        log(f"  → {run['status']}: {_short(run)}")
        return run

    try:
        before = _hypothesis(experiment, play)
        journal["steady_states"]["before"] = before
        if before is not None and not before["steady_state_met"]:
            journal["status"] = "failed"
        else:
            journal["run"] = _method(experiment, play)
            after = _hypothesis(experiment, play)
            journal["steady_states"]["after"] = after
            if after is not None and not after["steady_state_met"]:
                journal["status"], journal["deviated"] = "failed", True
            else:
                journal["status"] = "completed"
    except KeyboardInterrupt:
        journal["status"] = "interrupted"
        log("interrupted: rolling back")
    finally:
        journal["rollbacks"] = [play(a) for a in experiment.get("rollbacks", [])]
        ended = datetime.now(UTC)
        journal["end"] = ended.isoformat()
        journal["duration"] = round((ended - started).total_seconds(), 3)
    return journal


def _hypothesis(experiment: Experiment, play: Callable[[Mapping[str, Any]], Run]) -> Any:
    hypothesis = experiment.get("steady-state-hypothesis")
    if not hypothesis:
        return None
    state: dict[str, Any] = {"steady_state_met": True, "probes": []}
    for probe in hypothesis.get("probes", []):
        run = play(probe)
        state["probes"].append(run)
        met = run["status"] == "succeeded" and within_tolerance(probe["tolerance"], run["output"])
        run["tolerance_met"] = met
        if not met:
            state["steady_state_met"] = False
            break
    return state


def _method(experiment: Experiment, play: Callable[[Mapping[str, Any]], Run]) -> list[Run]:
    method = experiment["method"]
    background = sum(1 for a in method if a.get("background"))
    runs: list[Run | Future[Run]] = []
    with ThreadPoolExecutor(max(1, background), thread_name_prefix="chaos-bg") as pool:
        for activity in method:
            runs.append(
                pool.submit(play, activity) if activity.get("background") else play(activity)
            )
    return [r.result() if isinstance(r, Future) else r for r in runs]


def _short(run: Run) -> str:
    if run["status"] == "failed":
        return "".join(run.get("exception", [])).strip()
    text = repr(run["output"])
    return text if len(text) <= 160 else text[:157] + "..."
