"""A trip search as the public API accepts it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

__all__ = ["MAX_PLACE_LENGTH", "InvalidQuery", "TripQuery", "parse_trip_query"]

MAX_PLACE_LENGTH = 64
# date.fromisoformat alone also takes 20250101 and week dates; the contract says YYYY-MM-DD.
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# No place name holds a control character; PostgreSQL cannot even store NUL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TripQuery:
    day: date
    origin: str | None = None
    destination: str | None = None

    def as_params(self) -> dict[str, str]:
        params = {"date": self.day.isoformat()}
        if self.origin is not None:
            params["origin"] = self.origin
        if self.destination is not None:
            params["destination"] = self.destination
        return params


def _place(query: Mapping[str, str], field: str) -> str | None:
    value = query.get(field, "")
    if len(value) > MAX_PLACE_LENGTH:
        raise InvalidQuery(field, f"must be at most {MAX_PLACE_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidQuery(field, "must not contain control characters")
    return value or None


def parse_trip_query(query: Mapping[str, str]) -> TripQuery:
    raw = query.get("date", "")
    if not raw:
        raise InvalidQuery("date", "is required (YYYY-MM-DD)")
    try:
        if not _DAY.fullmatch(raw):
            raise ValueError(raw)
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidQuery("date", "must be a calendar date as YYYY-MM-DD") from None
    return TripQuery(day, _place(query, "origin"), _place(query, "destination"))
