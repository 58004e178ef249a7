"""bench/latency_breakdown.py: each span's own time, its duration less what its children cover.

Hand-made span rows (as the sink's ``GET /spans`` answers them) stand for a trace: a parent's
own time excludes its children, overlapping children are counted once, a child outliving its
parent is clipped to the parent, and spans of other traces never count as children.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
breakdown = load_script(ROOT / "bench" / "latency_breakdown.py")

MS = 1_000_000


def row(name: str, trace: str, span: str, parent: str, start_ms: float, end_ms: float) -> list:
    return ["svc", name, trace, span, parent, int(start_ms * MS), int(end_ms * MS)]


def test_a_parent_s_own_time_excludes_its_children() -> None:
    spans = [
        row("root", "t1", "a", "", 0, 10),
        row("claim", "t1", "b", "a", 1, 3),
        row("call", "t1", "c", "a", 4, 9),
        row("server", "t1", "d", "c", 5, 8),
    ]
    own = breakdown.own_times(spans)
    assert own == {"svc root": [3.0], "svc claim": [2.0], "svc call": [2.0], "svc server": [3.0]}


def test_overlapping_children_count_once_and_are_clipped_to_the_parent() -> None:
    spans = [
        row("root", "t1", "a", "", 0, 10),
        row("x", "t1", "b", "a", 2, 6),
        row("y", "t1", "c", "a", 4, 8),  # overlaps x: 2..8 covered, not 8 ms
        row("late", "t1", "d", "a", 9, 15),  # outlives its parent: only 9..10 counts
    ]
    assert breakdown.own_times(spans)["svc root"] == [3.0]


def test_a_span_of_another_trace_is_not_a_child() -> None:
    spans = [row("root", "t1", "a", "", 0, 10), row("other", "t2", "b", "a", 0, 10)]
    assert breakdown.own_times(spans)["svc root"] == [10.0]
