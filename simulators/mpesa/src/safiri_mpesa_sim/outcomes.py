"""Test phone numbers choose the payment outcome, like card-network test cards.

The table is data so the README, the tests and the chaos scripts can all read the same source.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["NO_CALLBACK_PHONE", "OUTCOMES_BY_PHONE", "SUCCESS", "Outcome", "outcome_for"]


@dataclass(frozen=True)
class Outcome:
    """What the provider reports once the customer has (or has not) paid."""

    result_code: int
    result_desc: str

    @property
    def succeeded(self) -> bool:
        return self.result_code == 0


SUCCESS: Final = Outcome(0, "The service request is processed successfully.")
NO_CALLBACK_PHONE: Final = "254700009999"

# ``None`` means the push is accepted and then nothing ever happens: the path that forces the
# payment service to time out and reconcile by querying.
OUTCOMES_BY_PHONE: Final = MappingProxyType[str, Outcome | None](
    {
        "254700000001": Outcome(1, "The balance is insufficient for the transaction."),
        "254700001032": Outcome(1032, "Request cancelled by user"),
        "254700001037": Outcome(1037, "DS timeout user cannot be reached"),
        "254700002001": Outcome(2001, "The initiator information is invalid."),
        NO_CALLBACK_PHONE: None,
    }
)


def outcome_for(phone: str) -> Outcome | None:
    """The outcome for ``phone``; every number outside the table pays successfully."""
    return OUTCOMES_BY_PHONE.get(phone, SUCCESS)
