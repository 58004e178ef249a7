"""Chaos Toolkit experiment files, read for what Safiri keeps in them.

The format is Chaos Toolkit's (https://chaostoolkit.org/reference/api/experiment/) and
``chaos run`` plays them. Safiri's own additions live where the format allows vendor data, in
an ``extensions`` entry named ``safiri``: the experiment's ``id``, its ``short_form`` (the
configuration the test suite runs) and what it ``expects`` (the alert, the metric).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["Experiment", "InvalidExperiment", "load_experiment", "safiri_extension"]

Experiment = dict[str, Any]


class InvalidExperiment(ValueError):
    pass


def load_experiment(path: Path) -> Experiment:
    """The experiment at ``path``, checked by Chaos Toolkit's own validation."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    try:
        experiment: Experiment = json.loads(path.read_text())
        ensure_experiment_is_valid(experiment)
    except (OSError, ValueError, ChaosException) as exc:
        raise InvalidExperiment(f"{path}: {exc}") from None
    return experiment


def safiri_extension(experiment: Experiment) -> dict[str, Any]:
    for extension in experiment.get("extensions", []):
        if extension.get("name") == "safiri":
            return dict(extension)
    return {}
