"""Fault settings are validated whole, and the fault state answers "is this request hit?"."""

from __future__ import annotations

import math
from typing import Any

import pytest

from safiri_mpesa_sim.faults import (
    CallbackFault,
    Faults,
    FaultState,
    InvalidFaults,
    Outage,
    StkQueryFault,
)

pytestmark = pytest.mark.unit

HEALTHY_JSON = {
    "outage": "off",
    "latency_seconds": 0.0,
    "failure_ratio": 0.0,
    "seed": None,
    "flap_period_seconds": None,
    "callbacks": "normal",
    "stk_query": "normal",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidFaults) as caught:
        Faults.from_mapping(data)
    return {error.field: error.message for error in caught.value.errors}


# --- The settings ------------------------------------------------------------------------


def test_every_fault_is_off_by_default() -> None:
    faults = Faults()
    assert faults.to_dict() == HEALTHY_JSON
    assert not any(faults.active().values())
    assert Faults.from_mapping({}) == faults


def test_all_faults_parse_from_json_values() -> None:
    faults = Faults.from_mapping(
        {
            "outage": "refuse",
            "latency_seconds": 2,
            "failure_ratio": 0.25,
            "seed": 7,
            "callbacks": "out_of_order",
            "stk_query": "pending",
        }
    )
    assert faults.outage is Outage.REFUSE
    assert faults.latency_seconds == 2.0
    assert isinstance(faults.latency_seconds, float)
    assert faults.failure_ratio == 0.25
    assert faults.seed == 7
    assert faults.callbacks is CallbackFault.OUT_OF_ORDER
    assert faults.stk_query is StkQueryFault.PENDING


def test_settings_round_trip_through_json() -> None:
    faults = Faults(
        latency_seconds=0.5,
        failure_ratio=1.0,
        seed=3,
        flap_period_seconds=10.0,
        callbacks=CallbackFault.DUPLICATE,
    )
    assert Faults.from_mapping(faults.to_dict()) == faults


def test_missing_keys_mean_healthy_so_a_put_replaces_everything() -> None:
    assert Faults.from_mapping({"callbacks": "never"}) == Faults(callbacks=CallbackFault.NEVER)


def test_active_names_each_fault_that_is_on_but_not_the_seed() -> None:
    faults = Faults(failure_ratio=0.1, seed=1, stk_query=StkQueryFault.PENDING)
    assert faults.active() == {
        "outage": False,
        "latency_seconds": False,
        "failure_ratio": True,
        "flap_period_seconds": False,
        "callbacks": False,
        "stk_query": True,
    }


def test_changed_since_names_the_settings_that_differ() -> None:
    before = Faults(outage=Outage.HTTP_503, latency_seconds=1.0)
    after = Faults(latency_seconds=1.0, callbacks=CallbackFault.NEVER)
    assert after.changed_since(before) == ["outage", "callbacks"]
    assert after.changed_since(after) == []


# --- Validation --------------------------------------------------------------------------


def test_unknown_key_is_named() -> None:
    errors = errors_of({"outage": "off", "latency": 3})
    assert list(errors) == ["latency"]
    assert "not a fault" in errors["latency"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("outage", "down"),
        ("outage", 503),
        ("outage", None),
        ("latency_seconds", -0.1),
        ("latency_seconds", "1"),
        ("latency_seconds", True),
        ("latency_seconds", math.inf),
        ("latency_seconds", math.nan),
        ("latency_seconds", None),
        ("failure_ratio", 1.01),
        ("failure_ratio", -0.5),
        ("failure_ratio", "half"),
        ("failure_ratio", math.nan),
        ("seed", 1.5),
        ("seed", "42"),
        ("seed", False),
        ("flap_period_seconds", 0),
        ("flap_period_seconds", -3),
        ("flap_period_seconds", math.inf),
        ("flap_period_seconds", "10"),
        ("callbacks", "sometimes"),
        ("callbacks", ["never"]),
        ("stk_query", "failed"),
    ],
)
def test_bad_value_is_refused_naming_the_field(field: str, value: object) -> None:
    assert list(errors_of({field: value})) == [field]


def test_every_bad_field_is_reported_at_once() -> None:
    errors = errors_of({"outage": "down", "failure_ratio": 2, "colour": "red"})
    assert set(errors) == {"outage", "failure_ratio", "colour"}
    assert "off, http_503, refuse" in errors["outage"]
    assert "between 0 and 1" in errors["failure_ratio"]


def test_a_flap_is_its_own_outage_so_it_cannot_combine_with_a_steady_one() -> None:
    errors = errors_of({"outage": "refuse", "flap_period_seconds": 4})
    assert list(errors) == ["flap_period_seconds"]
    assert Faults.from_mapping({"outage": "off", "flap_period_seconds": 4}).flap_period_seconds


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(InvalidFaults) as caught:
        Faults(latency_seconds=-1.0, failure_ratio=3.0)
    assert [e.field for e in caught.value.errors] == ["latency_seconds", "failure_ratio"]
    assert "latency_seconds" in str(caught.value)


# --- The state in force ------------------------------------------------------------------


def test_state_starts_healthy_and_reset_heals() -> None:
    state = FaultState()
    assert state.current == Faults()
    state.set(Faults(outage=Outage.HTTP_503))
    assert state.outage_now() is Outage.HTTP_503
    previous = state.reset()
    assert previous == Faults(outage=Outage.HTTP_503)
    assert state.current == Faults()
    assert state.outage_now() is Outage.OFF


def test_steady_outage_holds_whatever_the_clock_says() -> None:
    clock = FakeClock()
    state = FaultState(clock)
    state.set(Faults(outage=Outage.REFUSE))
    for elapsed in (0.0, 5.0, 3600.0):
        clock.now = 1000.0 + elapsed
        assert state.outage_now() is Outage.REFUSE


def test_flap_is_down_for_the_first_half_of_each_period_from_when_it_was_set() -> None:
    clock = FakeClock()
    state = FaultState(clock)
    state.set(Faults(flap_period_seconds=10.0))
    expected = {
        0.0: Outage.HTTP_503,
        4.99: Outage.HTTP_503,
        5.0: Outage.OFF,
        9.99: Outage.OFF,
        10.0: Outage.HTTP_503,
        14.0: Outage.HTTP_503,
        15.5: Outage.OFF,
    }
    seen = {}
    for elapsed in expected:
        clock.now = 1000.0 + elapsed
        seen[elapsed] = state.outage_now()
    assert seen == expected


def test_setting_the_flap_again_restarts_its_period() -> None:
    clock = FakeClock()
    state = FaultState(clock)
    state.set(Faults(flap_period_seconds=10.0))
    clock.now += 7.0
    assert state.outage_now() is Outage.OFF
    state.set(Faults(flap_period_seconds=10.0))
    assert state.outage_now() is Outage.HTTP_503


def test_no_push_fails_at_ratio_zero_and_every_push_fails_at_one() -> None:
    state = FaultState()
    assert not any(state.push_fails() for _ in range(200))
    state.set(Faults(failure_ratio=1.0))
    assert all(state.push_fails() for _ in range(200))


def test_failure_ratio_is_roughly_the_share_of_failed_pushes() -> None:
    state = FaultState()
    state.set(Faults(failure_ratio=0.3, seed=11))
    failures = sum(state.push_fails() for _ in range(2000))
    assert 450 < failures < 750


def test_a_seed_makes_the_failed_pushes_repeatable() -> None:
    first, second = FaultState(), FaultState()
    faults = Faults(failure_ratio=0.5, seed=2026)
    first.set(faults)
    second.set(faults)
    draws = [first.push_fails() for _ in range(50)]
    assert draws == [second.push_fails() for _ in range(50)]
    assert len(set(draws)) == 2
    # Setting the same faults again starts the sequence over.
    first.set(faults)
    assert [first.push_fails() for _ in range(50)] == draws
