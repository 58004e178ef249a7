"""The test-phone table decides each payment's outcome, like test card numbers."""

from __future__ import annotations

import pytest

from safiri_mpesa_sim.outcomes import (
    NO_CALLBACK_PHONE,
    OUTCOMES_BY_PHONE,
    SUCCESS,
    outcome_for,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("phone", "code", "desc"),
    [
        ("254700000001", 1, "The balance is insufficient for the transaction."),
        ("254700001032", 1032, "Request cancelled by user"),
        ("254700001037", 1037, "DS timeout user cannot be reached"),
        ("254700002001", 2001, "The initiator information is invalid."),
    ],
)
def test_test_phone_chooses_its_failure(phone: str, code: int, desc: str) -> None:
    outcome = outcome_for(phone)
    assert outcome is not None
    assert (outcome.result_code, outcome.result_desc) == (code, desc)
    assert not outcome.succeeded


def test_any_other_number_pays_successfully() -> None:
    assert outcome_for("254712345678") == SUCCESS
    assert outcome_for("254110000000") == SUCCESS
    assert SUCCESS.succeeded
    assert SUCCESS.result_desc == "The service request is processed successfully."


def test_no_callback_number_never_completes() -> None:
    assert NO_CALLBACK_PHONE == "254700009999"
    assert outcome_for(NO_CALLBACK_PHONE) is None


def test_table_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(TypeError):
        OUTCOMES_BY_PHONE["254712345678"] = None  # type: ignore[index]
