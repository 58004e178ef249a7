"""docs/metrics.md is generated from the code and must not drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from safiri.metrics_reference import render

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_the_metrics_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/metrics.md is stale: run `.venv/bin/python -m safiri.metrics_reference"
        " > docs/metrics.md`"
    )


def test_the_reference_lists_the_contract_metrics() -> None:
    text = render()
    for name in (
        "tickets_sold_total",
        "payment_revenue_total",
        "active_buses_count",
        "messaging_queue_backlog_messages",
        "http_server_request_duration_seconds",
    ):
        assert f"| `{name}` |" in text
