"""One experiment, end to end: configuration, the suite (its own or a running one), the run,
and the results folder (journal.json, report.md, events, history, invariants, logs)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .activity import execute_activity
from .experiment import (
    InvalidExperiment,
    load_experiment,
    resolve_configuration,
    resolve_secrets,
    safiri_extension,
)
from .probes import invariant_violations
from .prometheus import experiment_prometheus
from .run_report import passed, write_results
from .runner import Journal, run_experiment
from .selfcontained import self_contained_suite
from .threads import in_daemon_thread

__all__ = ["RunOutcome", "run_chaos_experiment"]


@dataclass(frozen=True)
class RunOutcome:
    journal: Journal
    results_dir: Path
    report: Path

    @property
    def passed(self) -> bool:
        return passed(self.journal, self.results_dir)


async def run_chaos_experiment(
    path: Path,
    *,
    self_contained: bool,
    short: bool = False,
    overrides: Mapping[str, Any] | None = None,
    results_root: Path = Path("chaos/results"),
    log: Callable[[str], None] = lambda _: None,
) -> RunOutcome:
    """Run the experiment at ``path``; ``overrides`` are ``--var`` values (they win)."""
    experiment = load_experiment(path)
    run_dir = results_root / f"{path.stem}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    chosen = {**(safiri_extension(experiment).get("short_form", {}) if short else {})}
    chosen.update(overrides or {})
    chosen["results_dir"] = str(run_dir)
    configuration = resolve_configuration(experiment.get("configuration", {}), chosen)
    secrets = resolve_secrets(experiment.get("secrets", {}), chosen)
    if not self_contained and not any(group.get("api_key") for group in secrets.values()):
        raise InvalidExperiment(
            "no API key for the running suite: give the one `make up` printed (--api-key or"
            " SAFIRI_CHAOS_API_KEY), or run --self-contained"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    async with _target(self_contained, run_dir, configuration, log) as (more, more_secrets):
        configuration.update(more)
        for group in secrets.values():
            group.update({k: v for k, v in more_secrets.items() if k in group})
        log(f"running {experiment['title']} → {run_dir}")
        abandoned = threading.Event()

        def thread_log(line: str) -> None:
            if not abandoned.is_set():
                log(line)

        try:
            journal = await in_daemon_thread(
                run_experiment, experiment, configuration, secrets, thread_log
            )
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Interrupted (Ctrl-C): never leave a fault on. The experiment's thread is a
            # daemon and dies with the process; its rollbacks are played here instead.
            abandoned.set()
            log("interrupted: playing the rollbacks")
            for rollback in experiment.get("rollbacks", []):
                run = await asyncio.to_thread(execute_activity, rollback, configuration, secrets)
                log(f"  {rollback['name']}: {run['status']}")
            raise
        # The final invariant check runs whatever happened to the steady state before it.
        log("final invariant check")
        flat = {k: v for group in secrets.values() for k, v in group.items()}
        violations = await asyncio.to_thread(invariant_violations, configuration, flat)
        log(f"  → {violations} violation(s)")
    report = write_results(journal, run_dir)
    return RunOutcome(journal, run_dir, report)


@contextlib.asynccontextmanager
async def _target(
    self_contained: bool, run_dir: Path, configuration: dict[str, Any], log: Callable[[str], None]
) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    if self_contained:
        log("starting a suite of the run's own (free ports, own vhost and databases)")
        async with self_contained_suite(run_dir, configuration) as suite:
            log(f"suite up: gateway {suite.configuration['gateway_url']}")
            yield suite.configuration, suite.secrets
        log("suite stopped; its vhost and databases removed")
    elif configuration.get("prometheus_url"):
        yield {}, {}
    else:
        # A running suite without a Prometheus of its own (`make up`): bring one that scrapes it.
        targets = {
            service: urlsplit(str(configuration[f"{key}_url"])).netloc
            for service, key in _SCRAPED.items()
        }
        async with experiment_prometheus(targets, run_dir, configuration) as url:
            log(f"prometheus {url} scraping {', '.join(targets.values())}")
            yield {"prometheus_url": url}, {}


_SCRAPED = {
    "gateway": "gateway",
    "ticketing": "ticketing",
    "payment": "payment",
    "mpesa-simulator": "simulator",
}
