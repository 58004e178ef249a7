"""The shapes the query side accepts: ids, ``since=10m`` durations, recent-trace filters."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

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


@dataclass(frozen=True)
class RecentQuery:
    failed: bool = False
    since_s: float = 3600.0
    limit: int = 50

    @property
    def since_ns(self) -> int:
        return time.time_ns() - int(self.since_s * 1e9)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RecentQuery:
        """From ``failed=true&since=10m&limit=50``; ``ValueError`` names a bad parameter."""
        failed = params.get("failed", "false").lower()
        if failed not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"failed={failed!r} is not true or false")
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
        return cls(failed in ("true", "1", "yes"), since, limit)

    def to_params(self) -> dict[str, str]:
        return {
            "failed": "true" if self.failed else "false",
            "since": f"{self.since_s:g}s",
            "limit": str(self.limit),
        }
