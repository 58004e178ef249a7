"""safiri_flags: OpenFeature with flagd's file provider, evaluations on spans and counted.

The provider is the real one (flagd's in-process file resolver) reading a real file: the edits a
release manager makes are what these tests make.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_flags import DEFAULT_FLAGS_FILE, FlagFileError, Flags, check_flag_file
from tests.conftest import eventually

REPO = Path(__file__).resolve().parents[2]


def write_flags(path: Path, flags: dict[str, Any]) -> None:
    """Replace the file in one step, as an editor or a ConfigMap update does, and move its mtime."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"flags": flags}), encoding="utf-8")
    before = path.stat().st_mtime_ns if path.exists() else 0
    os.replace(tmp, path)
    # Coarse file systems keep the mtime of an edit made in the same tick: move it on.
    if path.stat().st_mtime_ns <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def write_broken(path: Path) -> None:
    before = path.stat().st_mtime_ns
    path.write_text("{ not json", encoding="utf-8")
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def maintenance(default: str) -> dict[str, Any]:
    return {
        "maintenance-mode": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": default,
        }
    }


def test_the_repository_flag_file_is_a_valid_flagd_file_with_the_product_flags() -> None:
    flags = check_flag_file(REPO / DEFAULT_FLAGS_FILE)
    assert flags["maintenance-mode"]["variants"] == {"on": True, "off": False}
    assert flags["maintenance-mode"]["defaultVariant"] == "off"
    assert flags["payment-provider"]["defaultVariant"] == "mpesa"


def test_the_file_decides_the_value(flags: Flags) -> None:
    assert flags.boolean("maintenance-mode", True) is False
    assert flags.string("payment-provider", "nowhere") == "mpesa"


async def test_an_edit_takes_effect_without_a_restart(flags: Flags, flag_file: Path) -> None:
    assert flags.boolean("maintenance-mode", False) is False
    write_flags(flag_file, maintenance("on"))

    async def switched() -> bool:
        return flags.boolean("maintenance-mode", False)

    await eventually(switched, timeout=5.0, what="maintenance-mode on after the edit")
    write_flags(flag_file, maintenance("off"))

    async def back() -> bool:
        return not flags.boolean("maintenance-mode", True)

    await eventually(back, timeout=5.0, what="maintenance-mode off after the second edit")


async def test_an_edit_that_does_not_parse_keeps_the_flags_last_read(
    flags: Flags, flag_file: Path
) -> None:
    write_flags(flag_file, maintenance("on"))

    async def switched() -> bool:
        return flags.boolean("maintenance-mode", False)

    await eventually(switched, timeout=5.0, what="maintenance-mode on")
    write_broken(flag_file)
    # Give the watcher several polls to read the broken file: the answer must not change.
    for _ in range(5):
        await _polls(flags)
        assert flags.boolean("maintenance-mode", False) is True


async def _polls(flags: Flags) -> None:
    # Not a wait for a condition: time for the watcher to poll (every 0.1 s) and, rightly, ignore.
    await asyncio.sleep(0.15)


def test_a_missing_or_broken_file_is_refused_at_start(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    with pytest.raises(FlagFileError, match="does not exist"):
        Flags.start(tmp_path / "nope.json", service="test", registry=registry)
    broken = tmp_path / "broken.json"
    broken.write_text('{"flags": {"x": {"variants": {"a": 1}, "defaultVariant": "b"}}}')
    with pytest.raises(FlagFileError, match="defaultVariant"):
        Flags.start(broken, service="test", registry=registry)
    broken.write_text("[1, 2")
    with pytest.raises(FlagFileError, match="not readable JSON"):
        Flags.start(broken, service="test", registry=registry)


def test_an_evaluation_is_an_event_on_the_current_span(
    flags: Flags, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /orders"):
        flags.boolean("maintenance-mode", False)
    (span,) = spans.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "feature_flag.evaluation"]
    assert event.attributes is not None
    assert event.attributes["feature_flag.key"] == "maintenance-mode"
    assert event.attributes["feature_flag.result.variant"] == "off"
    assert event.attributes["feature_flag.provider.name"] == flags.provider_name == "FlagdProvider"


def test_evaluations_are_counted_by_flag_and_variant(
    flags: Flags, registry: CollectorRegistry
) -> None:
    def count(key: str, variant: str) -> float:
        value = registry.get_sample_value(
            "feature_flag_evaluation_success_total",
            {
                "feature_flag_key": key,
                "feature_flag_provider_name": "FlagdProvider",
                "feature_flag_result_variant": variant,
                "feature_flag_result_reason": "static",
            },
        )
        return value or 0.0

    flags.boolean("maintenance-mode", False)
    flags.boolean("maintenance-mode", False)
    flags.string("payment-provider", "mpesa")
    assert count("maintenance-mode", "off") == 2
    assert count("payment-provider", "mpesa") == 1
    assert count("maintenance-mode", "on") == 0
    asked = registry.get_sample_value(
        "feature_flag_evaluation_requests_total",
        {"feature_flag_key": "maintenance-mode", "feature_flag_provider_name": "FlagdProvider"},
    )
    assert asked == 2


def test_an_unknown_flag_answers_the_default_and_counts_an_error(
    flags: Flags, registry: CollectorRegistry
) -> None:
    assert flags.boolean("no-such-flag", True) is True
    errors = registry.get_sample_value(
        "feature_flag_evaluation_error_total",
        {
            "feature_flag_key": "no-such-flag",
            "feature_flag_provider_name": "FlagdProvider",
            "error_type": "flag_not_found",
        },
    )
    assert errors == 1


def test_a_fractional_rollout_is_stable_per_targeting_key(
    flag_file: Path, registry: CollectorRegistry
) -> None:
    write_flags(
        flag_file,
        {
            "rollout": {
                "state": "ENABLED",
                "variants": {"baseline": "baseline", "canary": "canary"},
                "defaultVariant": "baseline",
                "targeting": {"fractional": [["canary", 10], ["baseline", 90]]},
            }
        },
    )
    flags = Flags.start(flag_file, service="test", registry=registry)
    try:
        answers = [flags.string("rollout", "baseline", targeting_key=f"k{i}") for i in range(2000)]
        again = [flags.string("rollout", "baseline", targeting_key=f"k{i}") for i in range(2000)]
    finally:
        flags.shutdown()
    assert answers == again
    share = answers.count("canary") / len(answers)
    assert 0.07 < share < 0.13, share


def test_two_instances_in_one_process_keep_their_own_files(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    on, off = tmp_path / "on.json", tmp_path / "off.json"
    write_flags(on, maintenance("on"))
    write_flags(off, maintenance("off"))
    first = Flags.start(on, service="gateway", registry=registry)
    second = Flags.start(off, service="gateway", registry=CollectorRegistry())
    try:
        assert first.boolean("maintenance-mode", False) is True
        assert second.boolean("maintenance-mode", True) is False
    finally:
        first.shutdown()
        second.shutdown()


@pytest.mark.parametrize("service", ["gateway", "payment"])
def test_each_service_refuses_a_flag_file_it_cannot_use_at_start_up(
    service: str, tmp_path: Path
) -> None:
    from safiri_gateway.settings import Settings as GatewaySettings
    from safiri_payment.settings import Settings as PaymentSettings
    from safiri_telemetry import ConfigError

    settings = {"gateway": GatewaySettings, "payment": PaymentSettings}[service]
    env = {"SAFIRI_API_KEYS": "k", "SAFIRI_FLAGS_FILE": str(tmp_path / "missing.json")}
    with pytest.raises(ConfigError, match=r"SAFIRI_FLAGS_FILE: flag file .* does not exist"):
        settings.from_env(env)
    assert settings.from_env({"SAFIRI_API_KEYS": "k"}).flags_file == DEFAULT_FLAGS_FILE
