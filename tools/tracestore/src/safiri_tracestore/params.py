"""The shapes the query side accepts: ids, ``since=10m`` durations, recent-trace filters."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from .model import Outcome, TraceSummary

__all__ = ["MAX_LIMIT", "RecentQuery", "is_order_id", "is_trace_id", "parse_duration"]

_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_LIMIT = 500


def is_trace_id(text: str) -> bool:
    return bool(_TRACE_ID.fullmatch(text)) and int(text, 16) != 0


def is_order_id(text: str) -> bool:
    """Order ids are UUIDs in their 36-character form."""
    if len(text) != 36:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


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


@dataclass(frozen=True)
class RecentQuery:
    """Which recent traces to list. ``outcome`` keeps one kind (failed, refused, succeeded);
    ``purchases`` keeps the traces that hold a purchase (True), those that hold none, such as
    probes, start-up noise and searches (False), or both (None)."""

    outcome: Outcome | None = None
    since_s: float = 3600.0
    limit: int = 50
    purchases: bool | None = None

    @property
    def since_ns(self) -> int:
        return time.time_ns() - int(self.since_s * 1e9)

    @classmethod
    def of_orders(cls, outcome: Outcome, since_s: float = 3600.0, limit: int = 50) -> RecentQuery:
        """The orders (purchases) of one outcome: what ``--failed`` and ``--refused`` list."""
        return cls(outcome, since_s, limit, purchases=True)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RecentQuery:
        """From ``outcome=failed&purchases=true&since=10m&limit=50``; ``failed=true`` is
        ``outcome=failed``. With an outcome, ``purchases`` defaults to true: a probe or a
        search is never a failed order. ``ValueError`` names a bad parameter."""
        text = params.get("outcome", "").lower()
        if text not in ("", "any", *Outcome):
            raise ValueError(f"outcome={text!r} is not one of {', '.join(Outcome)} or any")
        outcome = Outcome(text) if text in tuple(Outcome) else None
        if _boolean(params, "failed"):
            if outcome not in (None, Outcome.FAILED):
                raise ValueError(f"failed=true contradicts outcome={outcome}")
            outcome = Outcome.FAILED
        purchases = _boolean(params, "purchases")
        if outcome is not None and "purchases" not in params:
            purchases = True
        try:
            since = parse_duration(params["since"]) if params.get("since") else cls.since_s
        except ValueError as exc:
            raise ValueError(f"since: {exc}") from None
        try:
            limit = int(params.get("limit", cls.limit))
        except ValueError:
            raise ValueError(f"limit={params['limit']!r} is not a whole number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit={limit} is outside 1..{MAX_LIMIT}")
        return cls(outcome, since, limit, purchases)

    @property
    def title(self) -> str:
        """What the list holds: "failed orders", "traces without an order", "traces"..."""
        kind = {True: "orders", False: "traces without an order", None: "traces"}[self.purchases]
        return f"{self.outcome} {kind}" if self.outcome else kind

    def admits(self, summary: TraceSummary) -> bool:
        """Whether a classified trace belongs in this list."""
        return (self.outcome is None or summary.outcome == self.outcome) and (
            self.purchases is None or summary.purchase == self.purchases
        )

    def to_params(self) -> dict[str, str]:
        return {
            "outcome": self.outcome or "any",
            "purchases": "any" if self.purchases is None else str(self.purchases).lower(),
            "since": f"{self.since_s:g}s",
            "limit": str(self.limit),
        }
