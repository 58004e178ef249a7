"""Whether a steady-state probe's value is within its tolerance, as Chaos Toolkit judges it."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["within_tolerance"]


def within_tolerance(tolerance: Any, value: Any) -> bool:
    """bool, int and str: equal; a list: one of its items (or, for two numbers, between them);
    ``{"type": "range", "range": [low, high]}`` and ``{"type": "regex", "pattern": ...}``, each
    with an optional ``target`` key read from a mapping value."""
    if isinstance(tolerance, bool):
        return value is tolerance or value == tolerance
    if isinstance(tolerance, int | str):
        if isinstance(value, dict) and "status" in value and isinstance(tolerance, int):
            return bool(value["status"] == tolerance)
        return bool(value == tolerance)
    if isinstance(tolerance, list):
        numbers = len(tolerance) == 2 and all(isinstance(t, int | float) for t in tolerance)
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return bool(tolerance[0] <= value <= tolerance[1])
        return value in tolerance
    if isinstance(tolerance, dict):
        target = tolerance.get("target")
        if target and isinstance(value, dict):
            value = value.get(target, value)
        if tolerance.get("type") == "range":
            low, high = tolerance["range"]
            try:
                return Decimal(str(low)) <= Decimal(str(value)) <= Decimal(str(high))
            except InvalidOperation:
                return False
        if tolerance.get("type") == "regex":
            return re.search(str(tolerance["pattern"]), str(value)) is not None
    raise ValueError(f"unsupported tolerance {tolerance!r}")
