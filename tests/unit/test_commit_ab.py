"""bench/commit_ab.py: one side of a pair from its purchase_throughput runs, and the medians.

A run's figures are taken from the variant it names (telemetry on, or off), never the other;
the by-service CPU is a median per service, not of whole dicts (which crashed the first
``--together`` run after its last pair).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
commit_ab = load_script(ROOT / "bench" / "commit_ab.py")


def run(cpu: float, rate: float, by_service: dict[str, float]) -> dict:
    return {
        "services_cpu_ms_per_purchase": cpu,
        "purchases_per_second": rate,
        "cpu_ms_per_purchase_by_service": by_service,
    }


def test_a_side_takes_each_figure_from_its_own_variant() -> None:
    on = run(12.0, 40.0, {"gateway": 3.0, "ticketing": 4.0, "payment": 5.0})
    off = run(9.0, 50.0, {"gateway": 2.0, "ticketing": 3.0, "payment": 4.0})
    side = commit_ab._side(on, off)
    assert side == {
        "on_cpu_ms_per_purchase": 12.0,
        "off_cpu_ms_per_purchase": 9.0,
        "cpu_off_over_on": 0.75,
        "purchases_per_second_on_over_off": 0.8,
        "on_purchases_per_second": 40.0,
        "off_purchases_per_second": 50.0,
        "on_cpu_ms_per_purchase_by_service": {"gateway": 3.0, "ticketing": 4.0, "payment": 5.0},
    }


def test_the_medians_are_taken_figure_by_figure_and_service_by_service() -> None:
    rows = [
        {"cpu": 10.0, "by_service": {"gateway": 1.0, "payment": 7.0}},
        {"cpu": 30.0, "by_service": {"gateway": 3.0, "payment": 5.0}},
        {"cpu": 20.0, "by_service": {"gateway": 9.0, "payment": 6.0}},
    ]
    assert commit_ab._medians(rows) == {
        "cpu": 20.0,
        "by_service": {"gateway": 3.0, "payment": 6.0},
    }


def test_together_starts_each_variant_at_once_only_if_both_commits_can_run_one_alone(
    tmp_path: Path,
) -> None:
    scripts = {
        "before": "parser.add_argument('--variants')\n",  # as cac2510's: no --baseline
        "after": 'parser.add_argument("--baseline", default="off")\n',
    }
    trees = {}
    for side, script in scripts.items():
        (tmp_path / side / "bench").mkdir(parents=True)
        (tmp_path / side / "bench" / "purchase_throughput.py").write_text(script)
        trees[side] = tmp_path / side
    assert commit_ab.together_mode(trees) == "both runs started at once, each telemetry off then on"
    assert commit_ab.together_mode({"after": trees["after"]}) == "each variant started at once"
