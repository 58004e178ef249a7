"""What the gateway needs from the outside world; adapters implement it, tests fake it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..domain.idempotency import IdempotencyRecord, StoredResponse

__all__ = [
    "Claim",
    "IdempotencyStore",
    "Ticketing",
    "UpstreamReply",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class UpstreamUnavailable(Exception):
    """Ticketing could not be reached, failed (5xx), or answered something unreadable."""


class UpstreamTimeout(Exception):
    """Ticketing did not answer within the configured time."""


@dataclass(frozen=True)
class UpstreamReply:
    """A 2xx or 4xx answer from ticketing with its JSON object body."""

    status: int
    body: dict[str, Any]


class Ticketing(Protocol):
    async def search_trips(self, params: Mapping[str, str]) -> UpstreamReply: ...

    async def place_order(self, body: Mapping[str, Any], request_key: str) -> UpstreamReply:
        """Create the order; a second call with the same ``request_key`` answers with the
        order the first one created (ticketing may have created it before a timeout)."""
        ...

    async def get_order(self, order_id: str) -> UpstreamReply: ...

    async def check_alive(self) -> None: ...


@dataclass(frozen=True)
class Claim:
    """The right to run the request for one key; ``owner`` proves it when finishing."""

    client: str
    key: str
    owner: str


class IdempotencyStore(Protocol):
    async def claim(
        self, client: str, key: str, fingerprint: str, trace_id: str | None
    ) -> Claim | IdempotencyRecord:
        """Take the key, or return what an earlier request with it left behind."""
        ...

    async def complete(self, claim: Claim, response: StoredResponse) -> None: ...

    async def release(self, claim: Claim) -> None: ...

    async def check_alive(self) -> None: ...
