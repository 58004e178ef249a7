"""The trace UI's search box: an order id, a trace id, or ``safiri.*`` attribute terms.

``56d8b732-1c4e-4f7a-9d1e-0a2b3c4d5e6f`` (or ``order=...``) names an order,
``86eb6b9bdf6f8c51aa7eb7c988a82f4b`` (or ``trace=...``) a trace; an id stands alone.
``safiri.payment.result_code=1032 safiri.trip.id=...`` keeps the traces with a span carrying
each attribute (all of them, exact values; quote a value with spaces: ``key="a b"``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .ids import is_order_id, is_trace_id

__all__ = ["EPOCH", "MAX_TERMS", "Search", "parse_search", "parse_time", "search_text"]

MAX_TERMS = 8
MAX_TEXT = 1000
_ATTRIBUTE = re.compile(r"safiri\.[A-Za-z0-9_.\-]+")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SYNTAX = "an order id, a trace id or safiri.name=value terms"


@dataclass(frozen=True)
class Search:
    trace_id: str | None = None
    order_id: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def target(self) -> str | None:
        """The page an id goes straight to: ``/traces/ID`` or ``/orders/ID``."""
        if self.trace_id:
            return f"/traces/{self.trace_id}"
        return f"/orders/{self.order_id}" if self.order_id else None


def _id(term: str, text: str) -> Search | None:
    if is_trace_id(text) and term in ("", "trace"):
        return Search(trace_id=text.lower())
    if is_order_id(text) and term in ("", "order"):
        return Search(order_id=text.lower())
    return None


def parse_search(text: str) -> Search:
    """The box's text as a search; ``ValueError`` says what it accepts."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"the search is longer than {MAX_TEXT} characters")
    try:
        terms = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"search: {exc}") from None
    if len(terms) > MAX_TERMS:
        raise ValueError(f"search: at most {MAX_TERMS} terms")
    found: list[Search] = []
    attributes: list[tuple[str, str]] = []
    for term in terms:
        key, equals, value = term.partition("=")
        if not equals:
            key, value = "", term
        if (one := _id(key, value)) is not None:
            found.append(one)
        elif _ATTRIBUTE.fullmatch(key) and value:
            attributes.append((key, value))
        else:
            raise ValueError(f"search: {term!r} is not {SYNTAX}")
    if found and (len(found) > 1 or attributes):
        raise ValueError("search: an order id or a trace id stands alone")
    return found[0] if found else Search(attributes=tuple(attributes))


def search_text(attributes: tuple[tuple[str, str], ...]) -> str:
    """The box's text for these terms (what ``parse_search`` reads back)."""
    return " ".join(f"{key}={shlex.quote(value)}" for key, value in attributes)


def parse_time(text: str) -> int:
    """``2025-05-01T10:00``, ``2025-05-01 10:00:30``, ``...Z`` or ``...+03:00`` in ns since the
    epoch; a time without an offset is UTC (the pages show UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time such as 2025-05-01T10:00 (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000
