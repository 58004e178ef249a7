"""No alert exists until a test proves it fires: every rule checked and unit-tested by promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
SEVERITIES = {"critical", "warning", "info"}


def _alerts() -> list[dict[str, Any]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [rule for rule in group["rules"] if "alert" in rule]
    return out


def _alert_tests() -> list[dict[str, Any]]:
    out = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            out += test.get("alert_rule_test", [])
    return out


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_every_rule_file_is_valid() -> None:
    checked = _promtool("check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    tested = _promtool("test", "rules", *map(str, TEST_FILES))
    print(tested.stdout)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize("alert", [a["alert"] for a in _alerts()])
def test_every_alert_is_tested_both_firing_and_silent(alert: str) -> None:
    cases = [case for case in _alert_tests() if case["alertname"] == alert]
    assert any(case["exp_alerts"] for case in cases), f"{alert}: no test where it fires"
    assert any(not case["exp_alerts"] for case in cases), f"{alert}: no test where it is silent"


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: r["alert"])
def test_every_alert_has_severity_summary_description_and_a_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    assert annotations["runbook_url"] == f"docs/runbooks/{rule['alert']}.md"
    runbook = ROOT / annotations["runbook_url"]
    assert runbook.is_file(), f"missing {runbook}"
    text = runbook.read_text()
    for heading in ("## What it means", "## First three checks", "## Recover"):
        assert heading in text, f"{runbook.name} lacks '{heading}'"


SHARED_STATE_GAUGES = (
    "messaging_queue_backlog_messages",
    "messaging_queue_consumers",
    "safiri_outbox_backlog_messages",
    "safiri_outbox_oldest_age_seconds",
    "active_buses_count",
    "active_users",
    "orders_pending",
)


def test_no_rule_or_panel_adds_up_a_gauge_every_replica_reports() -> None:
    """Every replica reads the same queue depth, outbox and order book: summed over replicas
    they would double with two replicas. Queries take the max (docs/replicas.md)."""
    root = Path(__file__).resolve().parents[2]
    texts = {
        path: path.read_text()
        for path in [
            *(root / "deploy/prometheus/rules").glob("*.yml"),
            *(root / "deploy/grafana/dashboards").glob("*.json"),
        ]
    }
    summed = re.compile(
        r"\b(?:sum|avg)\s*(?:(?:by|without)\s*\([^()]*\)\s*)?\((?:[^()]*\()?[^()]*\b(?:"
        + "|".join(SHARED_STATE_GAUGES)
        + r")\b"
    )
    found = [(path.name, m.group(0)) for path, text in texts.items() for m in summed.finditer(text)]
    assert not found, found
    assert summed.search("sum by (job) (safiri_outbox_backlog_messages)")  # the check bites
    assert not summed.search("max by (job) (safiri_outbox_backlog_messages)")
