"""Chaos Toolkit experiment files: loading, checking, configuration, secrets, substitution.

The format is Chaos Toolkit's (https://chaostoolkit.org/reference/api/experiment/). Safiri's
own additions live where the format allows vendor data, in an ``extensions`` entry named
``safiri``: the short form's configuration (what the test suite runs).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "Experiment",
    "InvalidExperiment",
    "all_activities",
    "load_experiment",
    "resolve_configuration",
    "resolve_secrets",
    "safiri_extension",
    "substitute",
]

Experiment = dict[str, Any]
_WHOLE = re.compile(r"^\$\{([A-Za-z0-9_.-]+)\}$")
_PART = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")


class InvalidExperiment(ValueError):
    pass


def load_experiment(path: Path) -> Experiment:
    try:
        experiment = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidExperiment(f"{path}: {exc}") from None
    _validate(experiment, str(path))
    return dict(experiment)


def _validate(experiment: Any, where: str) -> None:
    if not isinstance(experiment, dict):
        raise InvalidExperiment(f"{where}: an experiment is a JSON object")
    for key in ("title", "description", "method"):
        if key not in experiment:
            raise InvalidExperiment(f"{where}: the experiment has no {key!r}")
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    for probe in hypothesis.get("probes", []):
        if "tolerance" not in probe and "ref" not in probe:
            raise InvalidExperiment(
                f"{where}: hypothesis probe {probe.get('name')} has no tolerance"
            )
    for activity in all_activities(experiment):
        if "ref" in activity:
            continue
        if activity.get("type") not in ("probe", "action") or not activity.get("name"):
            raise InvalidExperiment(f"{where}: every activity needs a type and a name: {activity}")
        provider = activity.get("provider") or {}
        if provider.get("type") not in ("python", "process"):
            raise InvalidExperiment(
                f"{where}: {activity['name']}: provider type {provider.get('type')!r}"
                " (this runner plays python and process providers)"
            )


def all_activities(experiment: Experiment) -> list[dict[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    return [*hypothesis.get("probes", []), *experiment["method"], *experiment.get("rollbacks", [])]


def safiri_extension(experiment: Experiment) -> dict[str, Any]:
    for extension in experiment.get("extensions", []):
        if extension.get("name") == "safiri":
            return dict(extension)
    return {}


def _resolve(name: str, spec: Any, env: Mapping[str, str]) -> Any:
    if isinstance(spec, dict) and spec.get("type") == "env":
        if spec["key"] in env:
            return env[spec["key"]]
        if "default" in spec:
            return spec["default"]
        raise InvalidExperiment(f"{name}: set the environment variable {spec['key']}")
    return spec


def resolve_configuration(
    spec: Mapping[str, Any], overrides: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Each entry's value: an override (``--var``) first, then its variable, then its default."""
    env = os.environ if env is None else env
    resolved = {k: overrides[k] if k in overrides else _resolve(k, v, env) for k, v in spec.items()}
    return {**resolved, **{k: v for k, v in overrides.items() if k not in spec}}


def resolve_secrets(
    spec: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    env = os.environ if env is None else env
    return {
        group: {
            k: overrides[k] if k in overrides else _resolve(f"{group}.{k}", v, env)
            for k, v in entries.items()
        }
        for group, entries in spec.items()
    }


def substitute(value: Any, configuration: Mapping[str, Any], secrets: Mapping[str, Any]) -> Any:
    """``${name}`` replaced from the configuration (then the secrets), recursively.

    A string that is nothing but one ``${name}`` takes the value itself, number or object.
    """
    names: dict[str, Any] = {}
    for group in secrets.values():
        names.update(group)
    names.update(configuration)
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole and whole.group(1) in names:
            return names[whole.group(1)]
        return _PART.sub(lambda m: str(names.get(m.group(1), m.group(0))), value)
    if isinstance(value, dict):
        return {k: substitute(v, configuration, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, configuration, secrets) for v in value]
    return value
