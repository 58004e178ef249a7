"""Secrets and personal data never reach a log line or a span attribute."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["mask_phone", "redact_mapping", "redact_value"]

_SECRET_KEYS = re.compile(
    r"(authorization|api[_-]?key|token|password|passwd|secret|pin|credential)", re.IGNORECASE
)
_PHONE_KEYS = re.compile(r"(phone|msisdn)", re.IGNORECASE)
_MSISDN = re.compile(r"\b(2547|2541)(\d{5})(\d{3})\b")
REDACTED = "[REDACTED]"


def mask_phone(phone: str) -> str:
    """``254712345678`` → ``2547*****678``: enough to recognise, not enough to call."""
    return _MSISDN.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), phone)


def _mask_digits(value: str) -> str:
    """Every digit but the last three masked, whatever the format: ``+254 712 345 678`` →
    ``+*** *** *** 678``. For a value its key says is a phone number."""
    keep_from = sum(c.isdigit() for c in value) - 3
    out, seen = [], 0
    for c in value:
        if c.isdigit():
            out.append(c if seen >= keep_from else "*")
            seen += 1
        else:
            out.append(c)
    return "".join(out)


@lru_cache(maxsize=4096)
def _key_kind(key: str) -> int:
    """0: an ordinary key, 1: it names a phone number, 2: it names a secret.

    Keys are few (attribute and field names), so each is classified once, not on every use.
    """
    if _SECRET_KEYS.search(key):
        return 2
    return 1 if _PHONE_KEYS.search(key) else 0


def redact_value(key: str, value: Any) -> Any:
    # str(): a mapping logged as a field may have keys of any type (seat numbers); a line whose
    # redaction raised would be lost.
    kind = _key_kind(str(key))
    if kind == 2:
        return REDACTED
    if kind == 1 and isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value)
        if _MSISDN.search(text):
            return mask_phone(text)
        return text if "***" in text else _mask_digits(text)  # masked already: kept as it is
    if isinstance(value, str):
        return mask_phone(value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    return value


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: redact_value(key, value) for key, value in values.items()}
