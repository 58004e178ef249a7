"""The fleet simulator's geometry: a bus is where the share of its journey's time puts it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from safiri_fleet_sim.routes import TOWNS, UnknownTown, path, position_at

pytestmark = pytest.mark.unit

DEPARTS = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
ARRIVES = DEPARTS + timedelta(hours=8)


def at(hours: float) -> datetime:
    return DEPARTS + timedelta(hours=hours)


def test_a_bus_is_at_its_origin_on_departure_and_at_its_destination_on_arrival() -> None:
    start = position_at("Nairobi", "Mombasa", DEPARTS, ARRIVES, DEPARTS)
    end = position_at("Nairobi", "Mombasa", DEPARTS, ARRIVES, ARRIVES)
    assert (start.latitude, start.longitude) == TOWNS["Nairobi"]
    assert (end.latitude, end.longitude) == TOWNS["Mombasa"]
    assert start.speed_kmh == end.speed_kmh == 0  # standing at the stations
    late = position_at("Nairobi", "Mombasa", DEPARTS, ARRIVES, at(9))
    assert (late.latitude, late.longitude) == TOWNS["Mombasa"]  # clamped


def test_the_bus_moves_steadily_south_east_at_the_timetables_speed() -> None:
    fixes = [position_at("Nairobi", "Mombasa", DEPARTS, ARRIVES, at(h)) for h in (1, 3, 5, 7)]
    latitudes = [f.latitude for f in fixes]
    longitudes = [f.longitude for f in fixes]
    assert latitudes == sorted(latitudes, reverse=True)  # further south each time
    assert longitudes == sorted(longitudes)  # further east
    for fix in fixes:
        assert 50 < fix.speed_kmh < 80  # ~480 km of road in 8 hours
        assert 90 < fix.heading_degrees < 180  # south-east, leg by leg
        assert -4.1 < fix.latitude < -1.2 and 36.8 < fix.longitude < 39.7


def test_the_way_back_is_the_same_road_reversed() -> None:
    assert path("Mombasa", "Nairobi") == list(reversed(path("Nairobi", "Mombasa")))
    there = position_at("Nairobi", "Kisumu", DEPARTS, ARRIVES, at(2))
    back = position_at("Kisumu", "Nairobi", DEPARTS, ARRIVES, at(6))
    assert (there.latitude, there.longitude) == pytest.approx((back.latitude, back.longitude))


def test_a_town_without_coordinates_cannot_be_placed() -> None:
    with pytest.raises(UnknownTown):
        position_at("Nairobi", "Garissa", DEPARTS, ARRIVES, at(1))
