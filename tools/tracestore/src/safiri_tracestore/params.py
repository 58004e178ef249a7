"""The shapes the query side accepts: ids, ``since=10m`` durations, recent-trace filters."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from .ids import is_order_id, is_trace_id
from .model import Outcome, TraceSummary
from .search import EPOCH, parse_search, parse_time, search_text

__all__ = ["MAX_LIMIT", "RecentQuery", "is_order_id", "is_trace_id", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_LIMIT = 500


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or plain seconds, in seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


_BOOLEAN = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _boolean(params: Mapping[str, str], name: str) -> bool | None:
    text = params.get(name, "").lower()
    if text in ("", "any"):
        return None
    if text not in _BOOLEAN:
        raise ValueError(f"{name}={text!r} is not true or false")
    return _BOOLEAN[text]


MAX_SERVICE = 200


def _optional(params: Mapping[str, str], name: str) -> str | None:
    text = params.get(name, "").strip()
    return text or None


def _window(params: Mapping[str, str]) -> tuple[int | None, int | None]:
    found = []
    for name in ("from", "to"):
        text = _optional(params, name)
        try:
            found.append(parse_time(text) if text else None)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    start, end = found
    if start is not None and end is not None and start >= end:
        raise ValueError("from must come before to")
    return start, end


@dataclass(frozen=True)
class RecentQuery:
    """Which recent traces to list. ``outcome`` keeps one kind (failed, refused, succeeded);
    ``purchases`` keeps the traces that hold a purchase (True), those that hold none, such as
    probes, start-up noise and searches (False), or both (None). The window is ``from_ns`` to
    ``to_ns`` (now when None); without ``from_ns`` it is the ``since_s`` before its end. The
    search keeps traces with a span of ``service``, a span carrying each of ``attributes``
    (``safiri.*`` names, exact values) and lasting at least ``min_duration_s``."""

    outcome: Outcome | None = None
    since_s: float = 3600.0
    limit: int = 50
    purchases: bool | None = None
    service: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    min_duration_s: float | None = None
    from_ns: int | None = None
    to_ns: int | None = None

    @property
    def since_ns(self) -> int:
        return self.window_ns[0]

    @property
    def window_ns(self) -> tuple[int, int | None]:
        """The first and last start time (None: up to now) of a span that puts a trace in."""
        if self.from_ns is not None:
            return self.from_ns, self.to_ns
        end = time.time_ns() if self.to_ns is None else self.to_ns
        return end - int(self.since_s * 1e9), self.to_ns

    @classmethod
    def of_orders(cls, outcome: Outcome, since_s: float = 3600.0, limit: int = 50) -> RecentQuery:
        """The orders (purchases) of one outcome: what ``--failed`` and ``--refused`` list."""
        return cls(outcome, since_s, limit, purchases=True)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RecentQuery:
        """From ``outcome=failed&purchases=true&since=10m&limit=50``; ``failed=true`` is
        ``outcome=failed``. With an outcome, ``purchases`` defaults to true: a probe or a
        search is never a failed order. The search: ``q`` (``safiri.*`` terms, see
        ``search``), ``service``, ``min_duration`` (``500ms``), ``from`` and ``to`` (UTC
        times). An empty parameter is an absent one. ``ValueError`` names a bad parameter."""
        text = params.get("outcome", "").lower()
        if text not in ("", "any", *Outcome):
            raise ValueError(f"outcome={text!r} is not one of {', '.join(Outcome)} or any")
        outcome = Outcome(text) if text in tuple(Outcome) else None
        if _boolean(params, "failed"):
            if outcome not in (None, Outcome.FAILED):
                raise ValueError(f"failed=true contradicts outcome={outcome}")
            outcome = Outcome.FAILED
        purchases = _boolean(params, "purchases")
        if outcome is not None and not params.get("purchases"):
            purchases = True
        try:
            since = parse_duration(params["since"]) if params.get("since") else cls.since_s
        except ValueError as exc:
            raise ValueError(f"since: {exc}") from None
        try:
            limit = int(params.get("limit") or cls.limit)
        except ValueError:
            raise ValueError(f"limit={params['limit']!r} is not a whole number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit={limit} is outside 1..{MAX_LIMIT}")
        search = parse_search(params.get("q", ""))
        if search.target:
            raise ValueError(f"q: an id is no list; open {search.target}")
        service = _optional(params, "service")
        if service is not None and len(service) > MAX_SERVICE:
            raise ValueError(f"service is longer than {MAX_SERVICE} characters")
        try:
            shortest = _optional(params, "min_duration")
            min_duration = parse_duration(shortest) if shortest else None
        except ValueError as exc:
            raise ValueError(f"min_duration: {exc}") from None
        start, end = _window(params)
        return cls(
            outcome, since, limit, purchases, service, search.attributes, min_duration, start, end
        )

    @property
    def title(self) -> str:
        """What the list holds: "failed orders", "traces without an order", "traces"..."""
        kind = {True: "orders", False: "traces without an order", None: "traces"}[self.purchases]
        return f"{self.outcome} {kind}" if self.outcome else kind

    @property
    def search(self) -> str:
        """The search box's text."""
        return search_text(self.attributes)

    def admits(self, summary: TraceSummary) -> bool:
        """Whether a classified trace belongs in this list."""
        return (
            (self.outcome is None or summary.outcome == self.outcome)
            and (self.purchases is None or summary.purchase == self.purchases)
            and (self.min_duration_s is None or summary.duration_ns >= self.min_duration_ns)
        )

    @property
    def min_duration_ns(self) -> int:
        return int((self.min_duration_s or 0.0) * 1e9)

    def to_params(self) -> dict[str, str]:
        params = {
            "outcome": self.outcome or "any",
            "purchases": "any" if self.purchases is None else str(self.purchases).lower(),
            "since": f"{self.since_s:g}s",
            "limit": str(self.limit),
        }
        optional = {
            "q": self.search,
            "service": self.service or "",
            "min_duration": "" if self.min_duration_s is None else f"{self.min_duration_s:g}s",
            "from": _iso(self.from_ns),
            "to": _iso(self.to_ns),
        }
        return params | {k: v for k, v in optional.items() if v}


def _iso(ns: int | None) -> str:
    if ns is None:
        return ""
    moment = EPOCH + timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="microseconds").removesuffix("+00:00")
