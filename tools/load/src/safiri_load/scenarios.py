"""The load scenarios: rates over time and what the buyers do. Pure (no I/O, no Locust).

Rates are *actions* per second: an action is one purchase (``POST /api/v1/orders``, then
polling the order until it is final) or, in the mixed scenario, one browse
(``GET /api/v1/trips``). The lengths are the ones seed 004 gives ("Baseline Load: 10 req/sec
for 2 minutes", "Spike Test: 100 req/sec for 30 seconds", "Sustained Load: 50 req/sec for 5
minutes"); the seed gives the mixed scenario no length, so it runs two minutes at 20/s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "DEFAULT_USER_RPS",
    "FAILING_PHONES",
    "SCENARIOS",
    "Scenario",
    "Stage",
    "scenario_from_env_value",
    "users_for",
]

# Each simulated user starts at most this many actions per second. A purchase takes about a
# second (the simulator answers after 0.5 s); one every 4 s leaves a user room for purchases
# four times slower than that before the arrival rate falls behind the target.
DEFAULT_USER_RPS = 0.25

# The simulator's test numbers that fail the payment, with the callback (PRODUCT.md).
# 254700009999 (the callback never comes) is left out: its orders would wait for the hold.
FAILING_PHONES = ("254700000001", "254700001032", "254700001037", "254700002001")


@dataclass(frozen=True)
class Stage:
    seconds: float
    rate: float  # actions per second


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    stages: tuple[Stage, ...]
    browse_weight: int = 0
    buy_weight: int = 1
    failure_share: float = 0.0  # of purchases, paid from a failing test number
    seat_counts: tuple[int, ...] = (1,)  # seat_count of a purchase: one of these at random

    def __post_init__(self) -> None:
        if not self.stages or any(s.seconds <= 0 or s.rate <= 0 for s in self.stages):
            raise ValueError(f"{self.name}: every stage needs seconds > 0 and rate > 0")
        if self.buy_weight < 1 or self.browse_weight < 0:
            raise ValueError(f"{self.name}: buy_weight >= 1 and browse_weight >= 0")
        if not 0.0 <= self.failure_share <= 1.0:
            raise ValueError(f"{self.name}: failure_share must be within 0..1")
        if not self.seat_counts or any(not 1 <= n <= 6 for n in self.seat_counts):
            raise ValueError(f"{self.name}: seat counts must be within 1..6")

    @property
    def duration(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def peak_rate(self) -> float:
        return max(s.rate for s in self.stages)

    @property
    def mean_rate(self) -> float:
        """Actions per second over the whole run: what the achieved rate is measured against."""
        return self.expected_actions / self.duration

    @property
    def expected_actions(self) -> float:
        return sum(s.seconds * s.rate for s in self.stages)

    @property
    def buy_share(self) -> float:
        return self.buy_weight / (self.buy_weight + self.browse_weight)

    def rate_at(self, t: float) -> float | None:
        """The target rate ``t`` seconds into the run; None once the run is over."""
        if t < 0:
            return self.stages[0].rate
        elapsed = 0.0
        for stage in self.stages:
            elapsed += stage.seconds
            if t < elapsed:
                return stage.rate
        return None

    def seats_needed(self) -> int:
        """At most how many seats the run can buy (every purchase the largest seat count)."""
        return math.ceil(self.expected_actions * self.buy_share * max(self.seat_counts))

    def scaled(self, duration: float | None = None, peak_rate: float | None = None) -> Scenario:
        """The same shape, stretched to ``duration`` seconds and/or ``peak_rate`` at its peak."""
        t = 1.0 if duration is None else duration / self.duration
        r = 1.0 if peak_rate is None else peak_rate / self.peak_rate
        if t <= 0 or r <= 0:
            raise ValueError("duration and rate must be positive")
        stages = tuple(Stage(s.seconds * t, s.rate * r) for s in self.stages)
        return replace(self, stages=stages)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "summary": self.summary,
                "stages": [[s.seconds, s.rate] for s in self.stages],
                "browse_weight": self.browse_weight,
                "buy_weight": self.buy_weight,
                "failure_share": self.failure_share,
                "seat_counts": list(self.seat_counts),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        data: dict[str, Any] = json.loads(text)
        return cls(
            name=str(data["name"]),
            summary=str(data.get("summary", "")),
            stages=tuple(Stage(float(s), float(r)) for s, r in data["stages"]),
            browse_weight=int(data.get("browse_weight", 0)),
            buy_weight=int(data.get("buy_weight", 1)),
            failure_share=float(data.get("failure_share", 0.0)),
            seat_counts=tuple(int(n) for n in data.get("seat_counts", (1,))),
        )


def users_for(rate: float, user_rps: float = DEFAULT_USER_RPS) -> int:
    """How many users carry ``rate`` actions/s when each starts at most ``user_rps``."""
    if rate <= 0 or user_rps <= 0:
        raise ValueError("rate and user_rps must be positive")
    return max(1, math.ceil(rate / user_rps - 1e-9))


def scenario_from_env_value(value: str) -> Scenario:
    """``SAFIRI_LOAD_SCENARIO``: a scenario's name (``baseline``) or its JSON."""
    value = value.strip()
    if value.startswith("{"):
        return Scenario.from_json(value)
    try:
        return SCENARIOS[value]
    except KeyError:
        raise ValueError(
            f"unknown scenario {value!r}: one of {', '.join(SCENARIOS)} (or a scenario's JSON)"
        ) from None


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "baseline",
            "10 purchases/s for 2 minutes: the steady state the dashboards should show",
            (Stage(120, 10),),
        ),
        Scenario(
            "spike",
            "10/s for 15 s, a spike of 100 purchases/s for 30 s, then 10/s for 15 s",
            (Stage(15, 10), Stage(30, 100), Stage(15, 10)),
        ),
        Scenario(
            "sustained",
            "50 purchases/s for 5 minutes: saturation, pools and backlogs under steady load",
            (Stage(300, 50),),
        ),
        Scenario(
            "mixed",
            "20 actions/s for 2 minutes: 3 browses to 1 purchase of 1-3 seats,"
            " 1 purchase in 10 paid from a failing test number",
            (Stage(120, 20),),
            browse_weight=3,
            buy_weight=1,
            failure_share=0.1,
            seat_counts=(1, 1, 2, 3),
        ),
    )
}
