"""What ticketing's internal HTTP API accepts: one model per request.

The handlers validate with these models and nothing else, and the fuzz tests build the API's
OpenAPI document from their JSON Schemas, so what is documented is what is checked.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from ..domain.orders import MAX_SEATS_PER_ORDER

__all__ = ["IdempotencyKey", "PlaceOrder", "TripSearch", "TripsUnderWay"]


def _storable(value: str) -> str:
    # PostgreSQL's text holds neither NUL nor the lone surrogates that undecodable bytes in a
    # header or query become; let through, either fails the query with a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8") from None
    return value


Text = Annotated[str, Field(max_length=200), AfterValidator(_storable)]


class TripSearch(BaseModel):
    """``GET /trips``'s query: the day (Nairobi time) and, optionally, the route."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    date: date
    origin: Text | None = None
    destination: Text | None = None


class PlaceOrder(BaseModel):
    """``POST /orders``'s body: hold ``seat_count`` seats on a trip for the phone that pays."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    trip_id: uuid.UUID
    seat_count: StrictInt = Field(ge=1, le=MAX_SEATS_PER_ORDER)
    # 12 digits, and no leading zero: the payment request's MSISDN is E.164 digits (a phone
    # it refuses would fail the order with a 500 after the seats were held).
    phone: str = Field(pattern=r"^[1-9][0-9]{11}$", description="An MSISDN: 254712345678")


class IdempotencyKey(BaseModel):
    """``POST /orders``'s optional ``Idempotency-Key`` header."""

    model_config = ConfigDict(frozen=True)

    key: Annotated[Text, Field(min_length=1)] = Field(alias="Idempotency-Key")


class TripsUnderWay(BaseModel):
    """``GET /fleet/trips-under-way``'s query: the trips departed and not yet arrived ``at``
    (an ISO 8601 time with its offset; now by default). The fleet simulator asks it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    at: AwareDatetime | None = None
