"""The test copy of the alert rules runs time faster in proportion, and changes nothing else."""

from __future__ import annotations

import re

import pytest
import yaml

from safiri_chaos.prometheus import RULES_DIR, fast_rules

SHIPPED = {path.name: path.read_text() for path in sorted(RULES_DIR.glob("*.yml"))}


def test_every_duration_is_divided_by_the_scale() -> None:
    shipped = (
        "expr: rate(x[5m]) > 0 and rate(x[1h]) > 0 and y[6h] and z[30m]\n"
        "        for: 10m\n"
        "      - record: y\n"
        "        expr: z[90s]"
    )
    assert fast_rules(shipped, scale=60) == (
        "expr: rate(x[5s]) > 0 and rate(x[60s]) > 0 and y[360s] and z[30s]\n"
        "        for: 10s\n"
        "      - record: y\n"
        "        expr: z[4s]"  # 1.5 s raised to the 4 s floor: a rate needs a few scrapes
    )


def test_fractions_of_a_second_are_written_in_milliseconds() -> None:
    assert fast_rules("        for: 1m\n", scale=40) == "        for: 1500ms\n"


def test_age_thresholds_are_time_too_other_thresholds_are_not() -> None:
    text = (
        "expr: max(orders_pending_oldest_age_seconds) > 900\n"
        "expr: max by (job) (safiri_outbox_oldest_age_seconds) > 60\n"
        "expr: safiri:http_server_request_duration_seconds:p95_5m > 1\n"
    )
    assert fast_rules(text, scale=60) == (
        "expr: max(orders_pending_oldest_age_seconds) > 15\n"
        "expr: max by (job) (safiri_outbox_oldest_age_seconds) > 1\n"
        "expr: safiri:http_server_request_duration_seconds:p95_5m > 1\n"  # a latency: as is
    )


def test_the_burn_rate_windows_keep_their_proportions_in_the_shipped_rules() -> None:
    fast = fast_rules(SHIPPED["safiri-recording.yml"])
    windows = dict(
        re.findall(r"record: safiri:purchase_errors:ratio_rate(\w+)\n.*?\[(\w+)\]", fast, re.S)
    )
    assert windows == {"5m": "5s", "30m": "30s", "1h": "60s", "6h": "360s"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_only_durations_change(name: str) -> None:
    """Every rule keeps its name, labels and annotations; an expression differs from the
    shipped one only in its durations (every number in it is the same or scaled)."""
    shipped = yaml.safe_load(SHIPPED[name])["groups"]
    fast = yaml.safe_load(fast_rules(SHIPPED[name]))["groups"]
    assert [g["name"] for g in fast] == [g["name"] for g in shipped]
    for before_group, after_group in zip(shipped, fast, strict=True):
        for before, after in zip(before_group["rules"], after_group["rules"], strict=True):
            assert {k: v for k, v in after.items() if k not in ("expr", "for")} == {
                k: v for k, v in before.items() if k not in ("expr", "for")
            }
            strip = re.compile(r"\[\w+\]|\d+(\.\d+)?")
            assert strip.sub("N", after["expr"]) == strip.sub("N", before["expr"])


def test_a_non_positive_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        fast_rules("x[5m]", scale=0)
