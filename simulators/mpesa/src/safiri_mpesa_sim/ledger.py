"""The provider's own record of every push: ground truth for "was money taken, and once?".

With a journal file, every change is appended to it as one JSON line (flushed before the
answer goes out) and replayed at start-up, so a restarted simulator still knows every charge
it made: the invariant checker compares that ledger with the orders both ways.
"""

from __future__ import annotations

import itertools
import json
import secrets
import string
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from .outcomes import Outcome
from .stk_push import StkPush

__all__ = ["CallbackDelivery", "Ledger", "Transaction", "TransactionState", "UnknownCheckout"]

_RECEIPT_ALPHABET = string.ascii_uppercase + string.digits


class TransactionState(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


class CallbackDelivery(StrEnum):
    NOT_SENT = "not_sent"
    DELIVERED = "delivered"
    FAILED = "failed"


class UnknownCheckout(KeyError):
    """No push was ever accepted with this CheckoutRequestID."""


@dataclass
class Transaction:
    checkout_request_id: str
    merchant_request_id: str
    push: StkPush
    planned: Outcome | None
    created_at: datetime
    state: TransactionState = TransactionState.PENDING
    result: Outcome | None = None
    receipt: str | None = None
    completed_at: datetime | None = None
    callback: CallbackDelivery = CallbackDelivery.NOT_SENT

    @property
    def charged(self) -> bool:
        return self.result is not None and self.result.succeeded


class Ledger:
    """Every accepted push, in the order it arrived: in memory, and in ``journal`` if given.

    ``since`` is when the record begins: the journal's first line, or this process's start
    when there is no journal (then the ledger forgets everything at a restart).
    """

    def __init__(self, journal: Path | None = None, now: datetime | None = None) -> None:
        self._transactions: dict[str, Transaction] = {}
        self.since = now or datetime.now(UTC)
        self.durable = journal is not None
        self._journal: IO[str] | None = None
        if journal is not None:
            self._replay(journal)
            journal.parent.mkdir(parents=True, exist_ok=True)
            self._journal = journal.open("a", encoding="utf-8")
            if self._journal.tell() == 0:
                self._append({"op": "begin", "at": self.since.isoformat()})
        # A per-process sequence makes ids unique; the random tail keeps them unguessable
        # and distinct across restarts of the simulator.
        self._sequence = itertools.count(len(self._transactions) + 1)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _append(self, record: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(json.dumps(record) + "\n")
            self._journal.flush()  # in the kernel before the answer: a kill -9 keeps it

    def _replay(self, journal: Path) -> None:
        if not journal.exists():
            return
        for line in journal.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            op = record["op"]
            if op == "begin":
                self.since = datetime.fromisoformat(record["at"])
            elif op == "open":
                planned = record["planned"]
                self._transactions[record["id"]] = Transaction(
                    checkout_request_id=record["id"],
                    merchant_request_id=record["merchant_request_id"],
                    push=StkPush(**record["push"]),
                    planned=Outcome(**planned) if planned is not None else None,
                    created_at=datetime.fromisoformat(record["at"]),
                )
            elif op == "complete":
                transaction = self._transactions[record["id"]]
                transaction.state = TransactionState.COMPLETED
                transaction.result = transaction.planned
                transaction.completed_at = datetime.fromisoformat(record["at"])
                transaction.receipt = record["receipt"]
            elif op == "callback":
                self._transactions[record["id"]].callback = CallbackDelivery(record["callback"])

    def open(self, push: StkPush, planned: Outcome | None, now: datetime) -> Transaction:
        seq = next(self._sequence)
        stamp = now.strftime("%d%m%Y%H%M%S")
        transaction = Transaction(
            checkout_request_id=f"ws_CO_{stamp}{seq:06d}{secrets.randbelow(10**4):04d}",
            merchant_request_id=f"{secrets.randbelow(10**5):05d}-{seq:08d}-1",
            push=push,
            planned=planned,
            created_at=now,
        )
        self._transactions[transaction.checkout_request_id] = transaction
        self._append(
            {
                "op": "open",
                "id": transaction.checkout_request_id,
                "merchant_request_id": transaction.merchant_request_id,
                "push": asdict(push),
                "planned": asdict(planned) if planned is not None else None,
                "at": now.isoformat(),
            }
        )
        return transaction

    def get(self, checkout_request_id: str) -> Transaction:
        try:
            return self._transactions[checkout_request_id]
        except KeyError:
            raise UnknownCheckout(checkout_request_id) from None

    def complete(self, checkout_request_id: str, now: datetime) -> Transaction:
        """Settle the push with its planned outcome; a success is a charge from this moment."""
        transaction = self.get(checkout_request_id)
        if transaction.planned is None:
            raise ValueError(f"{checkout_request_id} is never meant to complete")
        if transaction.state is TransactionState.PENDING:
            transaction.state = TransactionState.COMPLETED
            transaction.result = transaction.planned
            transaction.completed_at = now
            if transaction.result.succeeded:
                transaction.receipt = _receipt()
            self._append(
                {
                    "op": "complete",
                    "id": checkout_request_id,
                    "at": now.isoformat(),
                    "receipt": transaction.receipt,
                }
            )
        return transaction

    def record_callback(self, checkout_request_id: str, delivered: bool) -> None:
        transaction = self.get(checkout_request_id)
        transaction.callback = CallbackDelivery.DELIVERED if delivered else CallbackDelivery.FAILED
        self._append(
            {"op": "callback", "id": checkout_request_id, "callback": transaction.callback.value}
        )

    def transactions(self) -> list[Transaction]:
        return list(self._transactions.values())


def _receipt() -> str:
    return "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(10))
