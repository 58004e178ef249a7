"""Safiri's Chaos Toolkit control: declared in every experiment under ``controls``.

What it adds to ``chaos run``:

- **Defaults and checks** (``configure_control``, before anything runs): a results folder of
  the run's own (``chaos/results/<experiment>-<UTC time>``, or ``SAFIRI_CHAOS_RESULTS_DIR``);
  the API key from ``SAFIRI_CHAOS_API_KEY``, else the first of ``SAFIRI_API_KEYS``, else the
  one ``make up`` made up (``var/api-key``); the simulator's admin key from
  ``SAFIRI_MPESA_SIM_ADMIN_KEY`` or its default. A value that cannot be found stops the run
  before the steady state with a message that says which and where from (Chaos Toolkit
  swallows a control's start-up error, so it is raised from ``before_experiment_control``).
- **Strictness**: an activity of the method that fails (the alert never fired, the metric did
  not move, a fault could not be injected) interrupts the run, where plain Chaos Toolkit only
  records it; a failed rollback or a violated invariant at the end fails it.
- **Results**: after the rollbacks, the final invariant check (``invariants.{txt,json}``),
  then ``journal.json`` and the human ``report.md`` in the results folder.
- **Spans**: the experiment and each activity become spans (``chaos.experiment``,
  ``chaos.activity``) sent over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` or the
  ``otlp_endpoint`` configuration entry (``make up``'s trace store by default), so a game
  day's injected fault shows up in the trace store beside the traces it broke.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode

from .experiment import safiri_extension
from .probes import invariant_violations
from .run_report import failures, why_failed, write_results

__all__ = [
    "after_activity_control",
    "after_experiment_control",
    "before_activity_control",
    "before_experiment_control",
    "configure_control",
    "default_api_key",
    "resolve_defaults",
]

SECRETS_GROUP = "safiri"
API_KEY_FILE = Path("var/api-key")
DEFAULT_ADMIN_KEY = "safiri-sim-admin"
DEFAULT_OTLP = "http://127.0.0.1:4318"


@dataclass
class _Run:
    problems: list[str] = field(default_factory=list)
    provider: TracerProvider | None = None
    experiment_span: Span | None = None
    spans: dict[tuple[int, str], Span] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_run = _Run()


def default_api_key(env: Mapping[str, str]) -> str | None:
    """SAFIRI_CHAOS_API_KEY, else the first of SAFIRI_API_KEYS, else `make up`'s own key."""
    keys = [k.strip() for k in env.get("SAFIRI_API_KEYS", "").split(",") if k.strip()]
    if env.get("SAFIRI_CHAOS_API_KEY"):
        return env["SAFIRI_CHAOS_API_KEY"]
    if keys:
        return keys[0]
    if API_KEY_FILE.exists():
        return API_KEY_FILE.read_text().strip()
    return None


def resolve_defaults(
    configuration: MutableMapping[str, Any],
    secrets: MutableMapping[str, Any],
    experiment: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Fill what the experiment leaves empty; the problems that remain, one line each."""
    env = os.environ if env is None else env
    problems = []
    if not configuration.get("results_dir"):
        name = safiri_extension(dict(experiment)).get("id", "experiment")
        configuration["results_dir"] = f"chaos/results/{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    group = secrets.setdefault(SECRETS_GROUP, {})
    if not group.get("api_key"):
        group["api_key"] = default_api_key(env) or ""
        if not group["api_key"]:
            problems.append(
                "no API key for the gateway: set SAFIRI_CHAOS_API_KEY (or SAFIRI_API_KEYS), or"
                f" run from the checkout where `make up` keeps the key it made up ({API_KEY_FILE})"
            )
    if not group.get("simulator_admin_key"):
        group["simulator_admin_key"] = env.get("SAFIRI_MPESA_SIM_ADMIN_KEY", DEFAULT_ADMIN_KEY)
    for entry in ("gateway_url", "simulator_url", "prometheus_url", "ticketing_database_url"):
        if entry in configuration and not configuration[entry]:
            problems.append(f"the configuration entry {entry} is empty")
    return problems


def configure_control(
    configuration: MutableMapping[str, Any],
    secrets: MutableMapping[str, Any],
    experiment: Mapping[str, Any],
) -> None:
    global _run
    _run = _Run()
    try:
        _run.problems = resolve_defaults(configuration, secrets, experiment)
    except Exception as exc:  # reported from before_experiment_control, where it can stop the run
        _run.problems = [f"safiri control: {exc!r}"]
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or str(
        configuration.get("otlp_endpoint", DEFAULT_OTLP)
    )
    if endpoint and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true":
        _run.provider = TracerProvider(
            resource=Resource.create({"service.name": "safiri-chaos"}),
        )
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=5)
        _run.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))


def before_experiment_control(context: Mapping[str, Any], **_: Any) -> None:
    if _run.problems:
        raise InterruptExecution("; ".join(_run.problems))
    if _run.provider is not None:
        tracer = _run.provider.get_tracer("safiri.chaos")
        _run.experiment_span = tracer.start_span(
            "chaos.experiment",
            attributes={"safiri.chaos.experiment.title": str(context.get("title"))},
        )


def before_activity_control(context: Mapping[str, Any], **_: Any) -> None:
    if _run.provider is None or _run.experiment_span is None:
        return
    parent = trace.set_span_in_context(_run.experiment_span)
    span = _run.provider.get_tracer("safiri.chaos").start_span(
        "chaos.activity",
        context=parent,
        attributes={
            "safiri.chaos.activity.name": str(context.get("name")),
            "safiri.chaos.activity.type": str(context.get("type")),
            "safiri.chaos.activity.func": str(context.get("provider", {}).get("func", "")),
        },
    )
    with _run.lock:
        _run.spans[(threading.get_ident(), str(context.get("name")))] = span


def after_activity_control(
    context: Mapping[str, Any], state: Mapping[str, Any], experiment: Mapping[str, Any], **_: Any
) -> None:
    name = str(context.get("name"))
    failed = state.get("status") != "succeeded"
    with _run.lock:
        span = _run.spans.pop((threading.get_ident(), name), None)
    if span is not None:
        if failed:
            span.set_status(Status(StatusCode.ERROR, why_failed(dict(state))[:200]))
        span.end()
    in_method = any(a is context or a.get("name") == name for a in experiment.get("method", []))
    if failed and in_method and not context.get("background"):
        # Plain Chaos Toolkit records a failed activity of the method and carries on: here the
        # symptom the experiment predicts is the point of the run, so its absence stops it.
        raise InterruptExecution(f"{context.get('type')} {name} failed: {why_failed(dict(state))}")


def after_experiment_control(
    context: Mapping[str, Any],
    state: MutableMapping[str, Any],
    configuration: Mapping[str, Any],
    secrets: Mapping[str, Any],
    **_: Any,
) -> None:
    """The final invariant check, journal.json and report.md; a failure fails the journal."""
    results_dir = Path(str(configuration.get("results_dir") or "chaos/results/latest"))
    if state.get("status") != "interrupted" or not _run.problems:
        try:
            invariant_violations(dict(configuration), dict(secrets.get(SECRETS_GROUP, {})))
        except Exception as exc:  # the check could not read the suite: that fails the run
            (results_dir / "invariants.txt").write_text(f"the check could not run: {exc!r}\n")
            state.setdefault("safiri", {})["invariant_check_error"] = repr(exc)
    why = failures(dict(state), results_dir)
    if why and state.get("status") == "completed":
        state["status"] = "failed"
    state.setdefault("safiri", {})["failures"] = why
    report = write_results(dict(state), results_dir)
    if _run.experiment_span is not None:
        if why:
            _run.experiment_span.set_status(Status(StatusCode.ERROR, "; ".join(why)[:200]))
        _run.experiment_span.end()
    if _run.provider is not None:
        _run.provider.shutdown()
    print(f"safiri: report {report}", flush=True)
