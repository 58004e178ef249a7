"""Faults the simulator injects on demand, for chaos experiments and alert tests.

``Faults`` is one validated set of settings (all off by default); ``FaultState`` holds the set in
force, when it was set (a flap is timed from then) and the dice that pick which pushes fail.
The HTTP edges read the state; nothing here knows about HTTP.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar

__all__ = [
    "CallbackFault",
    "FaultError",
    "FaultState",
    "Faults",
    "InvalidFaults",
    "Outage",
    "StkQueryFault",
]

_E = TypeVar("_E", bound=StrEnum)


class Outage(StrEnum):
    OFF = "off"
    HTTP_503 = "http_503"
    REFUSE = "refuse"


class CallbackFault(StrEnum):
    NORMAL = "normal"
    NEVER = "never"  # the customer never answers: the push never settles, nobody is charged
    LOST = "lost"  # the push settles (money moves) but its callback is never delivered
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"


class StkQueryFault(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"


@dataclass(frozen=True)
class FaultError:
    field: str
    message: str


class InvalidFaults(ValueError):
    """The settings cannot be used; ``errors`` names every field that is wrong."""

    def __init__(self, errors: list[FaultError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = tuple(errors)


def _choice(kind: type[_E]) -> Callable[[object], _E]:
    allowed = [member.value for member in kind]

    def parse(value: object) -> _E:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return kind(value)

    return parse


def _number(value: object) -> float:
    # JSON has no NaN or Infinity, but Python's parser accepts both; neither is a duration.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _latency(value: object) -> float:
    seconds = _number(value)
    if seconds < 0:
        raise ValueError("must be at least 0 seconds")
    return seconds


def _ratio(value: object) -> float:
    ratio = _number(value)
    if not 0 <= ratio <= 1:
        raise ValueError("must be between 0 and 1")
    return ratio


def _seed(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("must be an integer or null")
    return value


def _flap_period(value: object) -> float | None:
    if value is None:
        return None
    seconds = _number(value)
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds, or null for no flapping")
    return seconds


_PARSERS: Mapping[str, Callable[[object], Any]] = {
    "outage": _choice(Outage),
    "latency_seconds": _latency,
    "failure_ratio": _ratio,
    "seed": _seed,
    "flap_period_seconds": _flap_period,
    "callbacks": _choice(CallbackFault),
    "stk_query": _choice(StkQueryFault),
}


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how; the defaults are a healthy provider."""

    outage: Outage = Outage.OFF
    latency_seconds: float = 0.0
    failure_ratio: float = 0.0
    seed: int | None = None  # for the failure_ratio dice; not a fault of its own
    flap_period_seconds: float | None = None
    callbacks: CallbackFault = CallbackFault.NORMAL
    stk_query: StkQueryFault = StkQueryFault.NORMAL

    def __post_init__(self) -> None:
        errors = []
        for name, parse in _PARSERS.items():
            try:
                parse(getattr(self, name))
            except ValueError as bad:
                errors.append(FaultError(name, str(bad)))
        if not errors and self.flap_period_seconds is not None and self.outage is not Outage.OFF:
            message = f"cannot be combined with outage={self.outage}: a flap is its own outage"
            errors.append(FaultError("flap_period_seconds", message))
        if errors:
            raise InvalidFaults(errors)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Faults:
        """Faults from JSON-like ``data``; a missing key is healthy, an unknown one an error."""
        errors = [FaultError(key, "is not a fault") for key in data if key not in _PARSERS]
        values: dict[str, Any] = {}
        for name, parse in _PARSERS.items():
            if name in data:
                try:
                    values[name] = parse(data[name])
                except ValueError as bad:
                    errors.append(FaultError(name, str(bad)))
        if errors:
            raise InvalidFaults(errors)
        return cls(**values)

    def to_dict(self) -> dict[str, str | int | float | None]:
        """The JSON form ``from_mapping`` reads back."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: v.value if isinstance(v, StrEnum) else v for name, v in values.items()}

    def active(self) -> dict[str, bool]:
        """Each fault by name, and whether it is switched on."""
        return {
            "outage": self.outage is not Outage.OFF,
            "latency_seconds": self.latency_seconds > 0,
            "failure_ratio": self.failure_ratio > 0,
            "flap_period_seconds": self.flap_period_seconds is not None,
            "callbacks": self.callbacks is not CallbackFault.NORMAL,
            "stk_query": self.stk_query is not StkQueryFault.NORMAL,
        }

    def changed_since(self, previous: Faults) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(previous, f.name)]


class FaultState:
    """The faults in force, switched at run time; ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._faults = Faults()
        self._set_at = clock()
        self._dice = random.Random()

    @property
    def current(self) -> Faults:
        return self._faults

    def set(self, faults: Faults) -> Faults:
        """Put ``faults`` in force from now (a flap's period restarts); returns the previous."""
        previous, self._faults = self._faults, faults
        self._set_at = self._clock()
        self._dice = random.Random(faults.seed)
        return previous

    def reset(self) -> Faults:
        return self.set(Faults())

    def outage_now(self) -> Outage:
        """The outage at this instant: a flap is down for the first half of each period."""
        period = self._faults.flap_period_seconds
        if period is None:
            return self._faults.outage
        into_period = (self._clock() - self._set_at) % period
        return Outage.HTTP_503 if into_period < period / 2 else Outage.OFF

    def push_fails(self) -> bool:
        """Roll the dice for one STK push (no roll, so no change to a seeded run, at 0)."""
        ratio = self._faults.failure_ratio
        return ratio > 0 and self._dice.random() < ratio
