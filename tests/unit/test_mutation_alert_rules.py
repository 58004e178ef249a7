"""scripts/mutate_alert_rules.py finds every alert's thresholds and `for`, and a moved one fails
its promtool tests; docs/mutation.md explains every survivor docs/mutation.json records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import load_script

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"


def _load(name: str) -> ModuleType:
    return load_script(ROOT / "scripts" / f"{name}.py")


mutate = _load("mutate_alert_rules")
report = _load("mutation_report")


def _shipped_alerts() -> dict[str, dict[str, object]]:
    alerts = {}
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts |= {rule["alert"]: rule for rule in group["rules"] if "alert" in rule}
    return alerts


def test_every_alert_has_its_thresholds_moved_both_ways_and_its_for_moved() -> None:
    shipped = _shipped_alerts()
    rules = mutate.alert_rules(RULES)
    assert sorted(rule["alert"] for _, rule in rules) == sorted(shipped)
    for _, rule in rules:
        mutants = mutate.mutants(rule)
        found = mutate.thresholds(rule["expr"])
        kinds = [m.kind.split()[0] for m in mutants]
        assert kinds.count("threshold") == 2 * len(found), rule["alert"]
        assert kinds.count("for") == (2 if "for" in rule else 1), rule["alert"]
        for m in mutants:
            assert (m.expr, m.for_) != (rule["expr"], rule.get("for")), m.id
    with_threshold = [r["alert"] for _, r in rules if mutate.thresholds(r["expr"])]
    assert set(shipped) - set(with_threshold) == {"SafiriBrokerUnreachable"}  # `unless`: no number


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job=~"safiri-.*"} == 0', [("==", 0.0)]),
        ("a > (14.4 * 0.01)\nand\nb > (14.4 * 0.01)", [(">", 0.144), (">", 0.144)]),
        (
            'max(q{name!~".*\\\\.dlq"}) > 100 and max(deriv(q{name!="x"}[10m])) > 0',
            [(">", 100.0), (">", 0.0)],
        ),
        ("sum(increase(failures_total[5m])) > 10", [(">", 10.0)]),
        ("a unless on (job) b", []),
    ],
)
def test_thresholds_are_the_numbers_compared_against_and_nothing_else(
    expr: str, expected: list[tuple[str, float]]
) -> None:
    found = [(t.op, t.value) for t in mutate.thresholds(expr)]
    assert found == [(op, pytest.approx(v)) for op, v in expected]


def test_a_threshold_is_moved_where_it_stands_and_a_for_is_doubled_and_halved() -> None:
    rule = {"alert": "A", "expr": "x > (6 * 0.01)\nand\ny > (6 * 0.01)", "for": "15m"}
    assert [(m.id, m.expr, m.for_) for m in mutate.mutants(rule)] == [
        ("A threshold 1/2 > (6 * 0.01) -> > 0.12", "x > 0.12\nand\ny > (6 * 0.01)", "15m"),
        ("A threshold 1/2 > (6 * 0.01) -> > 0.03", "x > 0.03\nand\ny > (6 * 0.01)", "15m"),
        ("A threshold 2/2 > (6 * 0.01) -> > 0.12", "x > (6 * 0.01)\nand\ny > 0.12", "15m"),
        ("A threshold 2/2 > (6 * 0.01) -> > 0.03", "x > (6 * 0.01)\nand\ny > 0.03", "15m"),
        ("A for 15m -> 30m", rule["expr"], "30m"),
        ("A for 15m -> 7m30s", rule["expr"], "7m30s"),
    ]
    zero = {"alert": "Z", "expr": "up == 0"}
    assert [(m.id, m.for_) for m in mutate.mutants(zero)] == [
        ("Z threshold == 0 -> == 1", None),
        ("Z threshold == 0 -> == -1", None),
        ("Z for none -> 1m", "1m"),
    ]


def test_durations_are_read_and_written_as_prometheus_writes_them() -> None:
    assert [mutate.seconds(d) for d in ("30s", "1m", "1h30m", "6h")] == [30, 60, 5400, 21600]
    assert [mutate.duration(s) for s in (30, 60, 150, 5400)] == ["30s", "1m", "2m30s", "1h30m"]
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        mutate.seconds("5 minutes")


def test_a_mutant_replaces_its_own_rule_and_no_other() -> None:
    path, rule = next(
        (p, r) for p, r in mutate.alert_rules(RULES) if r["alert"] == "SafiriTargetDown"
    )
    [mutant, *_] = mutate.mutants(rule)
    before = yaml.safe_load(path.read_text())
    after = yaml.safe_load(mutate.apply(mutant, path))
    changed = [
        (b["alert"], b["expr"], a["expr"])
        for gb, ga in zip(before["groups"], after["groups"], strict=True)
        for b, a in zip(gb["rules"], ga["rules"], strict=True)
        if a != b
    ]
    assert changed == [
        ("SafiriTargetDown", 'up{job=~"safiri-.*"} == 0', 'up{job=~"safiri-.*"} == 1')
    ]


def test_each_alert_is_run_against_the_tests_that_evaluate_it_only() -> None:
    tests = mutate.tests_of("SafiriTargetDown", ROOT / "deploy" / "prometheus" / "tests")
    assert list(tests) == ["availability.test.yml"]
    [group] = tests["availability.test.yml"]["tests"]
    assert {case["alertname"] for case in group["alert_rule_test"]} == {"SafiriTargetDown"}


def test_the_recording_rules_are_evaluated_before_the_alerts_on_them() -> None:
    """promtool's own order changes run to run without ``group_eval_order``."""
    order = mutate.evaluation_order(RULES)
    assert order[0] == "safiri-recording"
    assert sorted(order) == sorted(
        g["name"] for p in RULES.glob("*.yml") for g in yaml.safe_load(p.read_text())["groups"]
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_a_moved_threshold_fails_its_promtool_tests_and_the_shipped_rule_passes() -> None:
    path, rule = next(
        (p, r) for p, r in mutate.alert_rules(RULES) if r["alert"] == "SafiriTargetDown"
    )
    [up, *_] = mutate.mutants(rule)
    assert mutate.run(None, "SafiriTargetDown", path)[0] is False
    killed, files, why = mutate.run(up, "SafiriTargetDown", path)
    assert (killed, files) == (True, ["availability.test.yml"])
    assert "FAILED" in why


def test_every_survivor_the_last_run_recorded_is_explained() -> None:
    recorded = json.loads((ROOT / "docs" / "mutation.json").read_text())
    assert [a["area"] for a in recorded["areas"]] == [
        *(name for name, _ in report.AREAS),
        "alert rules: thresholds and `for`",
    ]
    explained = (ROOT / "docs" / "mutation.md").read_text()
    assert report.unexplained(recorded, explained) == []
