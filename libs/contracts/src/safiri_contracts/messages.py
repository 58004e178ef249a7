"""The messages on Safiri's bus, as types: the only place a message body is built or read.

Every message is a pydantic model with its routing key and schema version. A producer builds the
model and hands it to its unit of work (``emit(message)``); a consumer's queue spec decodes the
body it receives (``PAYMENT_RESULTS.decode(routing_key, body)``). A body that is not JSON, that
carries a schema version this code does not know, or whose fields do not validate raises
``InvalidMessage`` with the reason, and the consumer dead-letters it with that reason.

Versioning: ``schema_version`` travels in the body. A change that a consumer of the previous
version could not read (a field removed, renamed or retyped) is a new version; adding an optional
field is not. A body without ``schema_version`` was written before the contracts existed and is
read as version 1, so messages already in queues and outboxes survive the upgrade.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

__all__ = [
    "MESSAGES",
    "BusPositionReported",
    "InvalidMessage",
    "Message",
    "PaymentFailed",
    "PaymentRequested",
    "PaymentResult",
    "PaymentSucceeded",
]

Uuid = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    ),
]
Msisdn = Annotated[
    str,
    StringConstraints(pattern=r"^[1-9][0-9]{7,14}$"),
    Field(description="The payer's phone number in E.164 digits, no '+' (254712345678)"),
]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(description="ISO 4217 code")
]
Amount = Annotated[int, Field(gt=0, lt=10**9, strict=True, description="Whole currency units")]
Text = Annotated[str, StringConstraints(max_length=500)]


class InvalidMessage(ValueError):
    """A message that can never be processed: retrying would not help; dead-letter it."""


class Message(BaseModel):
    """A message on the bus. Subclasses set ``routing_key`` and their ``schema_version``."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    routing_key: ClassVar[str]
    summary: ClassVar[str]
    producer: ClassVar[str]
    # The field that says what the message is about (AsyncAPI's correlationId).
    correlation_field: ClassVar[str] = "order_id"
    correlation_description: ClassVar[str] = "The order the message is about"
    published_via: ClassVar[str] = (
        "through its transactional outbox (persistent, publisher-confirmed, mandatory)"
    )

    def to_payload(self) -> dict[str, object]:
        """The body as a JSON object (what the outbox stores and the broker carries)."""
        return self.model_dump(mode="json")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def version(cls) -> int:
        field = cls.model_fields["schema_version"]
        return int(field.default)

    @classmethod
    def from_body(cls, body: bytes | str) -> Message:
        """Decode ``body`` as this message, or raise ``InvalidMessage`` with the reason."""
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidMessage(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidMessage("body is not a JSON object")
        version = data.setdefault("schema_version", 1)
        if type(version) is not int or version != cls.version():  # true is not 1 here
            raise InvalidMessage(
                f"{cls.routing_key} schema_version {version!r} is not known"
                f" (this consumer reads version {cls.version()})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise InvalidMessage(f"invalid {cls.routing_key} v{cls.version()}: {errors}") from None


class PaymentRequested(Message):
    """Ticketing held seats and asks payment to collect the order's amount."""

    routing_key: ClassVar[str] = "payment.requested"
    summary: ClassVar[str] = "Seats are held for an order; collect its amount from the phone."
    producer: ClassVar[str] = "ticketing"

    schema_version: Literal[1] = 1
    order_id: Uuid
    trip_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: Amount
    currency: Currency
    phone: Msisdn
    description: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class PaymentResult(Message):
    """The fields both payment outcomes carry."""

    producer: ClassVar[str] = "payment"

    schema_version: Literal[1] = 1
    order_id: Uuid
    payment_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: Amount
    currency: Currency
    result_code: int | None = Field(
        description="The provider's ResultCode (0 is success; Daraja's codes otherwise); null"
        " when no answer came from the provider"
    )
    result_desc: Text
    receipt: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        description="The provider's receipt number (M-Pesa's MpesaReceiptNumber)"
    )


class PaymentSucceeded(PaymentResult):
    routing_key: ClassVar[str] = "payment.succeeded"
    summary: ClassVar[str] = "The order's amount was collected: confirm it and issue tickets."

    result_code: Literal[0] = Field(default=0, description="The provider's ResultCode: 0, success")


class PaymentFailed(PaymentResult):
    routing_key: ClassVar[str] = "payment.failed"
    summary: ClassVar[str] = "The payment failed or was cancelled: release the order's seats."


def _iso_time(value: object) -> object:
    # Lax mode (the only way to read an ISO string from a JSON body) would also take a bare
    # number as Unix time; the contract is a string with its offset.
    if isinstance(value, str | datetime):
        return value
    raise ValueError("an ISO 8601 time with its offset is expected")


Instant = Annotated[
    AwareDatetime,
    Field(strict=False, description="ISO 8601 with the UTC offset: 2026-12-07T08:30:00Z"),
    BeforeValidator(_iso_time),
]


class BusPositionReported(Message):
    """A bus on a trip under way reports where it is: one GPS fix.

    Fixes are facts about a moment, not commands: the newest ``recorded_at`` per bus wins and
    an older fix that arrives late changes nothing, so a redelivery or a reordering is harmless.
    """

    routing_key: ClassVar[str] = "fleet.position.reported"
    summary: ClassVar[str] = "A bus on a trip under way reports its GPS position."
    producer: ClassVar[str] = "fleet-simulator"
    correlation_field: ClassVar[str] = "trip_id"
    correlation_description: ClassVar[str] = "The trip the bus is on"
    published_via: ClassVar[str] = (
        "straight to the exchange by safiri_messaging.publish_event (publisher-confirmed,"
        " mandatory; no outbox: a fix lost while the broker is away is replaced by the next)"
    )

    schema_version: Literal[1] = 1
    bus_id: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z0-9-]{1,32}$"),
        Field(description="The bus's fleet number (KB0001): never a metric label"),
    ]
    trip_id: Uuid
    latitude: Annotated[float, Field(ge=-90, le=90, description="WGS 84 degrees, north +")]
    longitude: Annotated[float, Field(ge=-180, le=180, description="WGS 84 degrees, east +")]
    recorded_at: Instant
    speed_kmh: Annotated[float, Field(ge=0, le=300)] | None = None
    heading_degrees: (
        Annotated[float, Field(ge=0, lt=360, description="Degrees clockwise from true north")]
        | None
    ) = None


MESSAGES: tuple[type[Message], ...] = (
    PaymentRequested,
    PaymentSucceeded,
    PaymentFailed,
    BusPositionReported,
)
