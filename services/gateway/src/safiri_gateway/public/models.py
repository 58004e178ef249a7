"""The public API's bodies as typed models: what clients send and what they get back.

The gateway owns these, not ticketing: ticketing's answers are mapped onto them (see
``adapters/ticketing.py``), so ticketing's internal API may change without clients noticing.
Their JSON Schema is the OpenAPI document's (``entrypoints/openapi.py``), so the document and
the answers cannot drift apart. The request models carry the exact rules the domain checks
(``domain/orders.py``, ``domain/trips.py``), so the document allows what the gateway accepts.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ..domain.idempotency import MAX_KEY_LENGTH
from ..domain.orders import MAX_SEATS_PER_ORDER
from ..domain.trips import MAX_PLACE_LENGTH

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "MAINTENANCE_PROBLEM_KIND",
    "MAINTENANCE_PROBLEM_TYPE",
    "FieldError",
    "Money",
    "Order",
    "OrderAccepted",
    "OrderRequest",
    "OrderStatus",
    "Problem",
    "Ticket",
    "Trip",
    "TripList",
    "TripSearch",
    "ValidationProblem",
]

# The domain's rules, written as JSON Schema patterns (ECMA-262 and Python alike).
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
PHONE_PATTERN = "^(\\+?254|0)[17][0-9]{8}$"
DAY_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
PLACE_PATTERN = "^[^\\x00-\\x1F\\x7F]*$"
# HTTP strips a header value's outer spaces, so a key can neither start nor end with one.
IDEMPOTENCY_KEY_PATTERN = "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$"
IDEMPOTENCY_KEY_MAX_LENGTH = MAX_KEY_LENGTH
# The problem type of POST /orders' 503 while the maintenance-mode flag is on (with Retry-After).
MAINTENANCE_PROBLEM_KIND = "maintenance"
MAINTENANCE_PROBLEM_TYPE = f"https://safiri.dev/problems/{MAINTENANCE_PROBLEM_KIND}"

Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
Place = Annotated[str, Field(max_length=MAX_PLACE_LENGTH, pattern=PLACE_PATTERN)]


class _Public(BaseModel):
    # Mapped from ticketing's answers: a member ticketing adds is not passed on to clients.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Money(_Public):
    amount: int = Field(description="Whole Kenyan shillings.")
    currency: Literal["KES"]


class Trip(_Public):
    trip_id: Uuid
    origin: str
    destination: str
    departs_at: AwareDatetime
    arrives_at: AwareDatetime
    bus_id: str
    fare: Money
    seats_total: int = Field(ge=1)
    seats_available: int = Field(ge=0)


class TripList(_Public):
    trips: list[Trip]


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    EXPIRED = "EXPIRED"


class Ticket(_Public):
    ticket_id: Uuid
    seat_no: int


class Order(_Public):
    order_id: Uuid
    status: OrderStatus
    trip_id: Uuid
    seat_count: int
    seats: list[int]
    amount: Money
    expires_at: AwareDatetime
    created_at: AwareDatetime
    tickets: list[Ticket] | SkipJsonSchema[None] = Field(None, description="When CONFIRMED.")
    payment_receipt: str | SkipJsonSchema[None] = Field(None, description="When CONFIRMED.")
    failure_reason: str | SkipJsonSchema[None] = Field(
        None, description="When PAYMENT_FAILED or EXPIRED."
    )


class OrderAccepted(Order):
    """A new order is PENDING_PAYMENT; a retry after a timeout may find it further on."""


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trip_id: Annotated[str, Field(pattern=UUID_PATTERN, json_schema_extra={"format": "uuid"})]
    seat_count: int = Field(ge=1, le=MAX_SEATS_PER_ORDER)
    phone: str = Field(
        pattern=PHONE_PATTERN,
        description="Kenyan mobile number; +2547…, 07… and 01… are normalised to 254….",
        examples=["254712345678"],
    )


class TripSearch(BaseModel):
    """``GET /trips``'s query."""

    date: str = Field(pattern=DAY_PATTERN, json_schema_extra={"format": "date"})
    origin: Place | SkipJsonSchema[None] = None
    destination: Place | SkipJsonSchema[None] = None


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with the trace that holds the request's story."""

    type: str = Field(json_schema_extra={"format": "uri"})
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | SkipJsonSchema[None] = None
    instance: str | SkipJsonSchema[None] = None
    trace_id: str = Field(pattern="^[0-9a-f]{32}$")


class ValidationProblem(Problem):
    errors: list[FieldError] | SkipJsonSchema[None] = None
