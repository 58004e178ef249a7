"""Idempotency-Key rules (IETF draft-ietf-httpapi-idempotency-key-header).

A key names one attempt to place one order. Retrying with the same key and body gets the first
answer again; the same key with another body, or while the first attempt is still running, is
refused, so a network retry can never buy seats twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_KEY_LENGTH",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "IdempotencyRecord",
    "StoredResponse",
    "is_valid_key",
    "replay_of",
    "worth_keeping",
]

MAX_KEY_LENGTH = 255
_PRINTABLE_ASCII = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")


class IdempotencyKeyReused(Exception):
    """The key was first used with a different body."""


class IdempotencyKeyInFlight(Exception):
    """The first request with this key has not finished yet."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class IdempotencyRecord:
    """What an earlier request with the same key left behind."""

    fingerprint: str
    response: StoredResponse | None  # None while that request is in flight
    trace_id: str | None = None


def is_valid_key(key: str) -> bool:
    return _PRINTABLE_ASCII.fullmatch(key) is not None


def replay_of(record: IdempotencyRecord, fingerprint: str) -> StoredResponse:
    """The answer to repeat, or why the request must be refused."""
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused
    if record.response is None:
        raise IdempotencyKeyInFlight
    return record.response


def worth_keeping(status: int) -> bool:
    """Whether a retry with the same key must get this answer again.

    Success and the client's own mistakes are final. 409 (seats taken right now) and 429 may
    change, and 5xx answers say nothing about the order, so the key is freed for a retry.
    """
    return 200 <= status < 500 and status not in (409, 429)
