"""Chaos experiments for Safiri and the invariant checker that judges every run.

- ``check_suite(Sources(...), Limits(...))`` → an ``InvariantReport`` (``safiri chaos check``);
- ``run_chaos_experiment(path, self_contained=...)`` plays a Chaos Toolkit experiment from
  ``chaos/`` and writes its journal and report (``safiri chaos run``);
- ``actions`` and ``probes`` are the experiments' Python providers (``chaos run`` calls them too).
"""

from __future__ import annotations

from .checker import check_suite
from .invariants import InvariantReport, Limits
from .invariants.read import Sources
from .run import RunOutcome, run_chaos_experiment

__all__ = [
    "InvariantReport",
    "Limits",
    "RunOutcome",
    "Sources",
    "check_suite",
    "run_chaos_experiment",
]
