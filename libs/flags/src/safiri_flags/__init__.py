"""Feature flags for Safiri services: OpenFeature, evaluated in process by flagd's provider.

The flags live in a file in flagd's format (``deploy/flags/flags.json``; a ConfigMap in
Kubernetes). flagd's file watcher re-reads it after an edit, so a change takes effect within
``poll_seconds`` without a restart; an edit that does not parse keeps the flags last read.

    flags = Flags.start("deploy/flags/flags.json", service="gateway", registry=registry)
    if flags.boolean("maintenance-mode", False):
        ...
    flags.shutdown()

Every evaluation is recorded on the current span as the OpenTelemetry ``feature_flag.evaluation``
event (``feature_flag.key``, ``feature_flag.result.variant``, ``feature_flag.provider.name``, by
OpenFeature's own OpenTelemetry hook) and counted by flag and variant
(``feature_flag_evaluation_success_total``), as OpenFeature's metrics hooks name them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagValueType, Reason
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import ProviderStatus
from openfeature.provider.no_op_provider import NoOpProvider
from prometheus_client import CollectorRegistry, Counter

__all__ = [
    "DEFAULT_FLAGS_FILE",
    "Evaluation",
    "FlagFileError",
    "FlagMetricsHook",
    "Flags",
    "check_flag_file",
    "flag_file_problem",
]

# The product's default: the repository's flag file, relative to where the suite runs.
DEFAULT_FLAGS_FILE = "deploy/flags/flags.json"

_instances = itertools.count(1)


class FlagFileError(ValueError):
    """The flag file is missing or is not a flagd flag definition."""


@dataclass(frozen=True)
class Evaluation:
    """One flag's answer: its value and the variant that gave it (None when defaulted)."""

    key: str
    value: Any
    variant: str | None
    reason: str


class FlagMetricsHook(Hook):
    """Counts evaluations the way OpenFeature's metrics hooks do, in Prometheus form.

    ``feature_flag_evaluation_requests_total{feature_flag_key}``, and by outcome
    ``feature_flag_evaluation_success_total{feature_flag_key, feature_flag_result_variant,
    feature_flag_result_reason}`` or ``feature_flag_evaluation_error_total{feature_flag_key,
    error_type}``. Keys and variants are few and fixed by the flag file: no label takes an id.
    """

    def __init__(self, registry: CollectorRegistry, provider_name: str) -> None:
        self._provider = provider_name
        self._requests = Counter(
            "feature_flag_evaluation_requests",
            "Flag evaluations asked for, by flag",
            ["feature_flag_key", "feature_flag_provider_name"],
            registry=registry,
        )
        self._success = Counter(
            "feature_flag_evaluation_success",
            "Flag evaluations answered, by flag, variant and reason",
            [
                "feature_flag_key",
                "feature_flag_provider_name",
                "feature_flag_result_variant",
                "feature_flag_result_reason",
            ],
            registry=registry,
        )
        self._errors = Counter(
            "feature_flag_evaluation_error",
            "Flag evaluations that fell back to the code's default, by flag and error",
            ["feature_flag_key", "feature_flag_provider_name", "error_type"],
            registry=registry,
        )

    def before(self, hook_context: HookContext, hints: HookHints) -> EvaluationContext | None:
        self._requests.labels(hook_context.flag_key, self._provider).inc()
        return None

    def finally_after(
        self,
        hook_context: HookContext,
        details: FlagEvaluationDetails[FlagValueType],
        hints: HookHints,
    ) -> None:
        if details.reason == Reason.ERROR or details.error_code is not None:
            code = str(details.error_code or "general").lower()
            self._errors.labels(hook_context.flag_key, self._provider, code).inc()
            return
        self._success.labels(
            hook_context.flag_key,
            self._provider,
            details.variant or "",
            str(details.reason or Reason.UNKNOWN).lower(),
        ).inc()


def check_flag_file(path: Path) -> dict[str, Any]:
    """The file's flag definitions, or a FlagFileError that says what is wrong with it."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlagFileError(f"flag file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlagFileError(f"flag file {path} is not readable JSON ({exc})") from None
    flags = document.get("flags") if isinstance(document, dict) else None
    if not isinstance(flags, dict):
        raise FlagFileError(f"flag file {path} has no 'flags' object (flagd's format)")
    for key, flag in flags.items():
        if not isinstance(flag, dict) or not isinstance(flag.get("variants"), dict):
            raise FlagFileError(f"flag {key!r} in {path} has no 'variants' object")
        if flag.get("defaultVariant") not in flag["variants"]:
            raise FlagFileError(
                f"flag {key!r} in {path}: defaultVariant is not one of its variants"
            )
    return flags


def flag_file_problem(path: str | Path) -> str | None:
    """What is wrong with the flag file, for a start-up message; None when it is usable."""
    try:
        check_flag_file(Path(path))
    except FlagFileError as exc:
        return str(exc)
    return None


class Flags:
    """One service's flags: an OpenFeature client bound to its own flagd file provider."""

    def __init__(self, client: OpenFeatureClient, provider: FlagdProvider, domain: str) -> None:
        self._client = client
        self._provider = provider
        self._domain = domain
        self.provider_name = provider.get_metadata().name

    @classmethod
    def start(
        cls,
        path: str | Path,
        *,
        service: str,
        registry: CollectorRegistry,
        poll_seconds: float = 1.0,
    ) -> Flags:
        """Read the flag file (refusing a broken one) and watch it for edits."""
        file = Path(path)
        check_flag_file(file)
        # A domain of its own per instance: two services in one process (tests) never share.
        domain = f"{service}-{next(_instances)}"
        provider = FlagdProvider(
            resolver_type=ResolverType.FILE,
            offline_flag_source_path=str(file),
            # flagd's file watcher polls the file's mtime every deadline.
            deadline_ms=max(100, int(poll_seconds * 1000)),
        )
        api.set_provider_and_wait(provider, domain)
        client = api.get_client(domain)
        if client.get_provider_status() is not ProviderStatus.READY:
            raise FlagFileError(f"flagd could not load the flag file {file}")
        name = provider.get_metadata().name
        client.add_hooks([TracingHook(), FlagMetricsHook(registry, name)])
        return cls(client, provider, domain)

    def boolean(
        self,
        key: str,
        default: bool,
        *,
        targeting_key: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> bool:
        return self._client.get_boolean_value(key, default, _context(targeting_key, attributes))

    def peek_boolean(self, key: str, default: bool) -> bool:
        """The flag's value without recording an evaluation: no span event, not counted.

        For a gauge read at every scrape, which changes no behaviour; the evaluations that do
        (``boolean``) stay the ones on spans and in ``feature_flag_evaluation_*``.
        """
        return api.get_client(self._domain).get_boolean_value(key, default)

    def string(
        self,
        key: str,
        default: str,
        *,
        targeting_key: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        return self._client.get_string_value(key, default, _context(targeting_key, attributes))

    def string_details(
        self,
        key: str,
        default: str,
        *,
        targeting_key: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        details = self._client.get_string_details(key, default, _context(targeting_key, attributes))
        return Evaluation(
            key, details.value, details.variant, str(details.reason or Reason.UNKNOWN)
        )

    def shutdown(self) -> None:
        """Stop watching the file: the domain falls back to OpenFeature's no-op provider."""
        api.set_provider(NoOpProvider(), self._domain)


def _context(
    targeting_key: str | None, attributes: Mapping[str, Any] | None
) -> EvaluationContext | None:
    if targeting_key is None and not attributes:
        return None
    return EvaluationContext(targeting_key=targeting_key, attributes=dict(attributes or {}))
