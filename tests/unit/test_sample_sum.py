"""The e2e tests' metric reader: an absent child reads 0, an absent metric fails."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import sample_sum

pytestmark = pytest.mark.unit

EXPOSITION = """\
# HELP late_payments_total Payments that succeeded late.
# TYPE late_payments_total counter
# HELP tickets_sold_total Tickets issued.
# TYPE tickets_sold_total counter
tickets_sold_total{route="Nairobi-Mombasa"} 3.0
tickets_sold_total{route="Nairobi-Kisumu"} 2.0
# HELP orders_pending Orders in PENDING_PAYMENT now.
# TYPE orders_pending gauge
orders_pending 0.0
"""


def test_samples_are_summed_by_label() -> None:
    assert sample_sum(EXPOSITION, "tickets_sold_total") == 5.0
    assert sample_sum(EXPOSITION, "tickets_sold_total", route="Nairobi-Kisumu") == 2.0


def test_a_child_not_created_yet_reads_zero() -> None:
    assert sample_sum(EXPOSITION, "late_payments_total", resolution="refund") == 0.0
    assert sample_sum(EXPOSITION, "tickets_sold_total", route="Nairobi-Malindi") == 0.0
    assert sample_sum(EXPOSITION, "orders_pending") == 0.0


def test_a_metric_not_exported_at_all_fails_instead_of_reading_zero() -> None:
    with pytest.raises(AssertionError, match="orders_pendng is not in the exposition"):
        sample_sum(EXPOSITION, "orders_pendng")
