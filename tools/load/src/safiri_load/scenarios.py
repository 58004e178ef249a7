"""The load scenarios: rates over time and what the buyers do. Pure (no I/O, no Locust).

Rates are *actions* per second: an action is one purchase (``POST /api/v1/orders``, then
polling the order until it is final) or, in the mixed scenario, one browse
(``GET /api/v1/trips``). The lengths are the ones seed 004 gives ("Baseline Load: 10 req/sec
for 2 minutes", "Spike Test: 100 req/sec for 30 seconds", "Sustained Load: 50 req/sec for 5
minutes"); the seed gives the mixed scenario no length, so it runs two minutes at 20/s.

Each scenario carries its latency gates (:class:`LatencyGates`) beside the error-ratio gate
the runner applies, and says how many HTTP requests per second its buyers can send with one
API key (:meth:`Scenario.rate_limit`), so that a suite of the run's own is given a gateway
limit that never refuses them, and a run against ``make up`` can say which limit it needs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "DEFAULT_USER_RPS",
    "FAILING_PHONES",
    "POLL_SECONDS",
    "SCENARIOS",
    "LatencyGates",
    "RateLimit",
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

# A buyer polls its order this often (``SAFIRI_LOAD_POLL_SECONDS`` in the locustfile).
POLL_SECONDS = 0.25

# The gateway limit a run's own suite is given: the most its buyers can send, with a quarter
# to spare, and bursts of two seconds of it (the gateway's own default ratio, 400 to 200).
RATE_LIMIT_HEADROOM = 1.25
RATE_LIMIT_BURST_SECONDS = 2


@dataclass(frozen=True)
class LatencyGates:
    """The slowest a scenario's run may be and pass, in seconds, at the 99th percentile.

    ``post_p99``: ``POST /api/v1/orders``, the request a buyer waits on. ``final_p99``: from
    that POST to the order's final state (the buyer's poll that sees it), the time a customer
    waits to know whether they have a ticket.
    """

    post_p99: float
    final_p99: float

    def __post_init__(self) -> None:
        if not (self.post_p99 > 0 and self.final_p99 > 0):
            raise ValueError("latency gates must be positive seconds")

    def to_dict(self) -> dict[str, float]:
        return {"post_p99": self.post_p99, "final_p99": self.final_p99}


@dataclass(frozen=True)
class RateLimit:
    """A gateway's per-API-key limit (``SAFIRI_RATE_LIMIT_PER_SECOND``, ``..._BURST``)."""

    per_second: int
    burst: int

    def env(self) -> dict[str, str]:
        return {
            "SAFIRI_RATE_LIMIT_PER_SECOND": str(self.per_second),
            "SAFIRI_RATE_LIMIT_BURST": str(self.burst),
        }

    def to_dict(self) -> dict[str, int]:
        return {"per_second": self.per_second, "burst": self.burst}


@dataclass(frozen=True)
class Stage:
    seconds: float
    rate: float  # actions per second


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    stages: tuple[Stage, ...]
    gates: LatencyGates
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

    def requests_per_second_at_most(
        self, user_rps: float = DEFAULT_USER_RPS, poll_seconds: float = POLL_SECONDS
    ) -> float:
        """The most HTTP requests per second the buyers send at the peak, all with one key.

        A user has one request in flight at a time, and between two of them waits for its next
        action (``user_rps``) or sleeps ``poll_seconds`` while following its order; so its
        requests come at most every ``poll_seconds``, whatever the suite's latency.
        """
        return users_for(self.peak_rate, user_rps) / poll_seconds

    def rate_limit(
        self, user_rps: float = DEFAULT_USER_RPS, poll_seconds: float = POLL_SECONDS
    ) -> RateLimit:
        """The gateway limit under which the run is never refused: its peak request rate with
        a quarter to spare (400 users / 0.25 s x 1.25 = 2000/s for the spike)."""
        per_second = math.ceil(
            self.requests_per_second_at_most(user_rps, poll_seconds) * RATE_LIMIT_HEADROOM
        )
        return RateLimit(per_second, per_second * RATE_LIMIT_BURST_SECONDS)

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

    def with_gates(self, post_p99: float | None = None, final_p99: float | None = None) -> Scenario:
        """The same scenario with other latency gates (``None`` keeps the scenario's)."""
        gates = LatencyGates(
            self.gates.post_p99 if post_p99 is None else post_p99,
            self.gates.final_p99 if final_p99 is None else final_p99,
        )
        return replace(self, gates=gates)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "summary": self.summary,
                "stages": [[s.seconds, s.rate] for s in self.stages],
                "gates": self.gates.to_dict(),
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
            gates=LatencyGates(**{k: float(v) for k, v in data["gates"].items()}),
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


# The latency gates. A scenario at a rate the suite sustains (docs/scaling.md: 50-100
# purchases/s on two cores) is held to the SLO the alerts encode:
# - POST /orders p99 1 s: SafiriSlowResponses (deploy/prometheus/rules/safiri-alerts.yml)
#   calls a service slow when its p95 passes 1 s; the request a buyer waits on gets that line
#   at its p99.
# - order to final state p99 5 s: the POST's 1 s, the provider's answer (the simulator calls
#   back after 0.5 s), and 1 s for each of the saga's three later hops on the same line
#   (payment's call to the provider, the callback, ticketing's confirmation), and a 0.25 s
#   poll: 4.75 s, rounded up.
STEADY = LatencyGates(post_p99=1.0, final_p99=5.0)
# The spike is a burst past what the suite sustains: purchases queue and the alert's line is
# crossed for 30 s (SafiriSlowResponses waits 10 minutes before it fires). The gates are where
# a burst turns into failures: a POST slower than the gateway's upstream timeout (3 s,
# SAFIRI_GATEWAY_UPSTREAM_TIMEOUT) is a 504, and a buyer gives up on an order after 20 s
# (the locustfile's SAFIRI_LOAD_FINAL_TIMEOUT); at half that the backlog drains with room.
SPIKE = LatencyGates(post_p99=3.0, final_p99=10.0)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "baseline",
            "10 purchases/s for 2 minutes: the steady state the dashboards should show",
            (Stage(120, 10),),
            STEADY,
        ),
        Scenario(
            "spike",
            "10/s for 15 s, a spike of 100 purchases/s for 30 s, then 10/s for 15 s",
            (Stage(15, 10), Stage(30, 100), Stage(15, 10)),
            SPIKE,
        ),
        Scenario(
            "sustained",
            "50 purchases/s for 5 minutes: saturation, pools and backlogs under steady load",
            (Stage(300, 50),),
            STEADY,
        ),
        Scenario(
            "mixed",
            "20 actions/s for 2 minutes: 3 browses to 1 purchase of 1-3 seats,"
            " 1 purchase in 10 paid from a failing test number",
            (Stage(120, 20),),
            STEADY,
            browse_weight=3,
            buy_weight=1,
            failure_share=0.1,
            seat_counts=(1, 1, 2, 3),
        ),
    )
}
