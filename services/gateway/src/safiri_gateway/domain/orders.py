"""What a customer may ask for when placing an order, checked and normalised."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_SEATS_PER_ORDER",
    "FieldError",
    "InvalidOrder",
    "OrderRequest",
    "normalise_phone",
    "parse_order",
]

MAX_SEATS_PER_ORDER = 6
_FIELDS = ("trip_id", "seat_count", "phone")
# [0-9], not \d: \d also matches Arabic-Indic and other Unicode digits.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
# Safaricom/Airtel/Telkom mobile ranges start 7 or 1 after the country code or trunk 0.
_MSISDN = re.compile(r"(?:\+?254|0)([17][0-9]{8})")
PHONE_HINT = "must be a Kenyan mobile number such as 254712345678"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class InvalidOrder(ValueError):
    """The body cannot become an order; ``errors`` says what is wrong with each field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field} {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class OrderRequest:
    trip_id: str
    seat_count: int
    phone: str

    def as_json(self) -> dict[str, Any]:
        return {"trip_id": self.trip_id, "seat_count": self.seat_count, "phone": self.phone}

    def fingerprint(self) -> str:
        """Equal for bodies that mean the same order, however the client spelled them."""
        canonical = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def normalise_phone(raw: str) -> str | None:
    """``+254712345678``, ``0712345678`` → ``254712345678``; ``None`` if not a mobile number."""
    match = _MSISDN.fullmatch(raw)
    return None if match is None else "254" + match.group(1)


def _whole_number(value: object) -> int | None:
    """JSON has numbers, not integers: ``2`` and ``2.0`` are both the integer 2 (as JSON
    Schema says), ``2.5`` is not; bool is an int subclass, and ``true`` is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_order(body: object) -> OrderRequest:
    if not isinstance(body, dict):
        raise InvalidOrder([FieldError("body", "must be a JSON object")])
    errors = [FieldError(name, "is not a known field") for name in body if name not in _FIELDS]
    errors += [FieldError(name, "is required") for name in _FIELDS if name not in body]

    trip_id = body.get("trip_id")
    if "trip_id" in body and not (isinstance(trip_id, str) and _UUID.fullmatch(trip_id)):
        errors.append(FieldError("trip_id", "must be a UUID string"))

    seat_count = _whole_number(body.get("seat_count"))
    if "seat_count" in body and (seat_count is None or not 1 <= seat_count <= MAX_SEATS_PER_ORDER):
        errors.append(
            FieldError("seat_count", f"must be a whole number from 1 to {MAX_SEATS_PER_ORDER}")
        )

    raw_phone = body.get("phone")
    phone = normalise_phone(raw_phone) if isinstance(raw_phone, str) else None
    if "phone" in body and phone is None:
        errors.append(FieldError("phone", PHONE_HINT))

    if errors:
        raise InvalidOrder(errors)
    # Narrowing for the type checker; the checks above already guarantee these.
    assert isinstance(trip_id, str)
    assert seat_count is not None
    assert phone is not None
    return OrderRequest(trip_id=trip_id.lower(), seat_count=seat_count, phone=phone)
