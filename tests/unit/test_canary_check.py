"""``safiri canary check``'s rule on its edges: wait below the minimum, roll back only when the
canary fails significantly AND materially more, or is slower by more than the factor."""

from __future__ import annotations

import math

import pytest

from safiri.canary import EXIT, Arm, Rule, decide, queries, two_proportion_z

pytestmark = pytest.mark.unit

RULE = Rule(min_requests=100, alpha=0.05, margin=0.02, latency_factor=1.5, latency_margin=0.25)


def arm(variant: str, payments: float, failed: float, p95: float | None = 0.4) -> Arm:
    return Arm(variant, payments, failed, p95)


def test_below_the_minimum_in_either_arm_says_wait_and_at_it_judges() -> None:
    assert decide(arm("baseline", 99, 0), arm("canary", 500, 100), RULE).decision == "wait"
    verdict = decide(arm("baseline", 500, 0), arm("canary", 99, 50), RULE)
    assert verdict.decision == "wait" and verdict.exit_code == EXIT["wait"] == 2
    assert "canary has 99 payments, fewer than 100" in verdict.reasons
    assert decide(arm("baseline", 100, 0), arm("canary", 100, 20), RULE).decision == "rollback"


def test_a_canary_failing_ten_percent_against_one_percent_is_rolled_back() -> None:
    verdict = decide(arm("baseline", 2000, 20), arm("canary", 200, 20), RULE)
    assert verdict.decision == "rollback" and verdict.exit_code == 1
    assert verdict.p_value is not None and verdict.p_value < 0.05


def test_a_significant_difference_under_the_margin_is_promoted() -> None:
    # 1.3 pp worse on a huge sample: certainly real, not material.
    verdict = decide(arm("baseline", 100_000, 500), arm("canary", 20_000, 360), RULE)
    assert verdict.p_value is not None and verdict.p_value < 1e-6
    assert verdict.decision == "promote" and verdict.exit_code == 0


def test_a_difference_over_the_margin_that_chance_explains_is_promoted() -> None:
    rule = Rule(min_requests=50)
    verdict = decide(arm("baseline", 50, 0), arm("canary", 50, 2), rule)  # 4 % vs 0 %
    assert verdict.p_value is not None and verdict.p_value > 0.05
    assert verdict.decision == "promote"


def test_the_z_test_matches_the_textbook_figure() -> None:
    # 4/40 against 0/40: pooled p = 0.05, se = sqrt(0.05 * 0.95 * (2/40)) = 0.04873.
    z, p = two_proportion_z(arm("canary", 40, 4), arm("baseline", 40, 0))
    assert z == pytest.approx(0.1 / math.sqrt(0.05 * 0.95 * 2 / 40))
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert 0.01 < p < 0.05
    assert two_proportion_z(arm("canary", 40, 0), arm("baseline", 40, 0)) == (0.0, 1.0)


def test_a_canary_better_than_the_baseline_is_promoted() -> None:
    assert decide(arm("baseline", 500, 50), arm("canary", 500, 5), RULE).decision == "promote"


def test_latency_above_the_factor_and_the_margin_rolls_back_and_at_the_factor_does_not() -> None:
    slow = decide(arm("baseline", 500, 0, 1.0), arm("canary", 500, 0, 1.51), RULE)
    assert slow.decision == "rollback" and slow.latency_ratio == pytest.approx(1.51)
    at = decide(arm("baseline", 500, 0, 1.0), arm("canary", 500, 0, 1.5), RULE)
    assert at.decision == "promote"


def test_a_p95_a_bucket_higher_but_within_the_margin_is_not_slower() -> None:
    # 75 ms against 100 ms: 1.75 x, but +0.075 s is the width of a histogram bucket.
    verdict = decide(arm("baseline", 500, 0, 0.1), arm("canary", 500, 0, 0.175), RULE)
    assert verdict.decision == "promote"
    assert decide(arm("baseline", 500, 0, 0.1), arm("canary", 500, 0, 0.36), RULE).decision == (
        "rollback"
    )


def test_an_arm_without_a_latency_figure_says_wait() -> None:
    verdict = decide(arm("baseline", 500, 0), arm("canary", 500, 0, None), RULE)
    assert verdict.decision == "wait"


def test_the_json_form_carries_the_figures_the_rule_and_the_decision() -> None:
    verdict = decide(arm("baseline", 400, 4), arm("canary", 400, 40), RULE, "10m")
    doc = verdict.as_json()
    assert doc["decision"] == "rollback" and doc["exit_code"] == 1 and doc["window"] == "10m"
    assert doc["arms"]["canary"]["error_ratio"] == pytest.approx(0.1)
    assert doc["rule"]["min_requests"] == 100 and "z-test" in doc["rule"]["text"]


def test_the_queries_split_by_variant_over_the_window() -> None:
    for expr in queries("7m").values():
        assert "by (variant" in expr and "[7m]" in expr
