"""Order ids and trace ids, told apart by their shape."""

from __future__ import annotations

import re
import uuid

__all__ = ["is_order_id", "is_trace_id"]

_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")


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
