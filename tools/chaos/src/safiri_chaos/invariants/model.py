"""What the invariant checker looks at: a read-only snapshot of the suite's state. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "FINAL_STATUSES",
    "IdempotencyRecord",
    "LedgerEntry",
    "Limits",
    "OrderRow",
    "OutboxRow",
    "PaymentRow",
    "SeatClaim",
    "Snapshot",
    "TripSeats",
]

FINAL_STATUSES = frozenset({"CONFIRMED", "PAYMENT_FAILED", "EXPIRED"})


@dataclass(frozen=True)
class TripSeats:
    trip_id: str
    capacity: int  # trips.seats_total
    seat_rows: int  # rows in seats for the trip


@dataclass(frozen=True)
class SeatClaim:
    """A row of seat_allocations (``sold`` set) or of tickets (``sold`` always true)."""

    trip_id: str
    seat_no: int
    order_id: str
    sold: bool = True


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    trip_id: str
    status: str
    amount: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class PaymentRow:
    payment_id: str
    order_id: str
    status: str  # INITIATED, AWAITING_CALLBACK, SUCCEEDED, FAILED, UNKNOWN
    amount: int


@dataclass(frozen=True)
class LedgerEntry:
    """One push in the provider's ledger; a charge when completed with ResultCode 0."""

    checkout_request_id: str
    account_reference: str
    amount: int
    state: str
    result_code: int | None
    receipt: str | None = None
    provider: str = "mpesa"  # the route whose ledger holds it

    @property
    def charged(self) -> bool:
        return self.state == "completed" and self.result_code == 0


@dataclass(frozen=True)
class OutboxRow:
    service: str
    message_id: str
    routing_key: str
    age_seconds: float


@dataclass(frozen=True)
class IdempotencyRecord:
    """What the gateway answered for one Idempotency-Key (``None`` while still in flight)."""

    key: str
    status: int | None
    order_id: str | None
    by_request_key: bool = False  # found among ticketing's orders, not in the gateway's records


@dataclass
class Snapshot:
    taken_at: datetime
    trips: list[TripSeats] = field(default_factory=list)
    allocations: list[SeatClaim] = field(default_factory=list)
    tickets: list[SeatClaim] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list)
    payments: list[PaymentRow] = field(default_factory=list)
    ledger: list[LedgerEntry] | None = None  # None: no ledger was read (a real provider)
    ledger_since: datetime | None = None  # when the ledger's record begins (None: always)
    ledger_durable: bool = False  # kept across simulator restarts
    outbox: list[OutboxRow] = field(default_factory=list)
    dead_letters: dict[str, int | None] = field(default_factory=dict)  # None: queue missing
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    refunds: dict[str, int] = field(default_factory=dict)  # order id -> amount owed back
    request_keys: dict[str, str] = field(default_factory=dict)  # ticketing's key -> order id


@dataclass(frozen=True)
class Limits:
    """The bounds the checker holds the run to."""

    hold_ttl_seconds: float = 300.0
    final_grace_seconds: float = 30.0
    settle_bound_seconds: float = 60.0  # after the fault healed
    healed_at: datetime | None = None
    outbox_max_age_seconds: float = 30.0
    allow_dead_letters: bool = False
    # Chaos mode: a check with nothing to look at (an empty snapshot, an unread ledger, a
    # missing dead-letter queue or history) fails instead of passing vacuously.
    strict: bool = False
