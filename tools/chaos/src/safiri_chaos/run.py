"""``safiri chaos run``: one experiment played by the real ``chaos run``, with conveniences.

The experiment is run by Chaos Toolkit's own command line (the ``chaos`` of the same virtual
environment), so what the tests prove is what a user's ``chaos run`` does. This module only
prepares around it: the short form's configuration (``--short``), ``--var`` overrides, and
with ``--self-contained`` a suite and a Prometheus of the run's own, whose addresses reach the
experiment through a ``--var-file``. The results folder then holds Chaos Toolkit's
``journal.json`` and log, and what Safiri's control writes (``report.md``, the invariants).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .experiment import InvalidExperiment, load_experiment, safiri_extension
from .prometheus import experiment_prometheus
from .run_report import Journal, passed
from .selfcontained import self_contained_suite

__all__ = ["RunOutcome", "chaos_command", "run_chaos_experiment"]

# Chaos Toolkit plays the rollbacks after an interrupt; give them this long before giving up.
ROLLBACK_GRACE_SECONDS = 180.0


@dataclass(frozen=True)
class RunOutcome:
    journal: Journal
    results_dir: Path
    report: Path
    exit_code: int

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and passed(self.journal, self.results_dir)


def chaos_command() -> list[str]:
    """Chaos Toolkit's CLI of this environment."""
    return [str(Path(sys.executable).parent / "chaos")]


async def run_chaos_experiment(
    path: Path,
    *,
    self_contained: bool,
    short: bool = False,
    overrides: Mapping[str, Any] | None = None,
    results_root: Path = Path("chaos/results"),
    log: Callable[[str], None] = lambda _: None,
) -> RunOutcome:
    """Run the experiment at ``path`` with ``chaos run``; ``overrides`` (``--var``) win."""
    from chaoslib.configuration import load_configuration

    experiment = load_experiment(path)
    run_dir = results_root / f"{path.stem}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    extension = safiri_extension(experiment)
    # A cluster experiment's own suite runs its replicas and RabbitMQ nodes (cluster mode).
    chosen = {**extension.get("suite", {})}
    chosen.update(extension.get("short_form", {}) if short else {})
    chosen.update(overrides or {})
    secret_keys = ("api_key", "simulator_admin_key")
    secrets = {k: chosen.pop(k) for k in secret_keys if chosen.get(k)}
    chosen["results_dir"] = str(run_dir)
    try:
        configuration = {**load_configuration(experiment.get("configuration", {})), **chosen}
    except Exception as exc:
        raise InvalidExperiment(f"{path}: {exc}") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    async with _target(self_contained, run_dir, configuration, log) as (more, more_secrets):
        configuration.update(more)
        secrets.update(more_secrets)
        var_file = run_dir / "vars.json"  # holds the API key: readable by its owner only
        var_file.touch(mode=0o600)
        var_file.write_text(
            json.dumps(
                {
                    "configuration": configuration,
                    "secrets": {"safiri": {k: secrets.get(k, "") for k in secret_keys}},
                },
                indent=2,
            )
        )
        log(f"chaos run {path} → {run_dir}")
        code = await _chaos_run(path, run_dir, var_file, log)
    journal_path = run_dir / "journal.json"
    if not journal_path.exists():
        raise RuntimeError(f"chaos run exited {code} without a journal (see {run_dir})")
    journal: Journal = json.loads(journal_path.read_text())
    return RunOutcome(journal, run_dir, run_dir / "report.md", code)


async def _chaos_run(path: Path, run_dir: Path, var_file: Path, log: Callable[[str], None]) -> int:
    process = await asyncio.create_subprocess_exec(
        *chaos_command(),
        "--no-version-check",
        "--log-file",
        str(run_dir / "chaostoolkit.log"),
        "run",
        "--journal-path",
        str(run_dir / "journal.json"),
        "--var-file",
        str(var_file),
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        async for line in process.stdout:
            log(line.decode(errors="replace").rstrip())
        return await process.wait()
    except asyncio.CancelledError:
        # Interrupted (Ctrl-C): Chaos Toolkit plays the rollbacks on SIGINT (the experiments
        # ask for them always), so the fault is healed before the suite is taken down.
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), ROLLBACK_GRACE_SECONDS)
            if process.returncode is None:
                process.kill()
        raise


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
        # A running suite without a Prometheus (`safiri up --no-monitoring`): bring one.
        targets = {
            service: urlsplit(str(configuration[f"{key}_url"])).netloc
            for service, key in _SCRAPED.items()
            if configuration.get(f"{key}_url")
        }
        async with experiment_prometheus(targets, run_dir, configuration) as url:
            log(f"prometheus {url} scraping {', '.join(targets.values())}")
            yield {"prometheus_url": url}, {}


_SCRAPED = {
    "gateway": "gateway",
    "ticketing": "ticketing",
    "payment": "payment",
    "mpesa-simulator": "simulator",
    "backup-simulator": "backup_simulator",  # when the experiment names one
}
