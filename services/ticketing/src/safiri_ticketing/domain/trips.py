"""Trips, fares and the timetable Safiri seeds its database with. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

__all__ = ["ROUTES", "Route", "SeatsUnavailable", "Trip", "TripNotFound", "timetable"]


class TripNotFound(Exception):
    pass


class SeatsUnavailable(Exception):
    """Fewer free seats than asked for; nothing was held."""


@dataclass(frozen=True)
class Route:
    origin: str
    destination: str
    fare: int  # KES per seat
    hours: float
    departures: tuple[time, ...]  # East Africa Time (UTC+3)


@dataclass(frozen=True)
class Trip:
    trip_id: str
    origin: str
    destination: str
    departs_at: datetime
    arrives_at: datetime
    bus_id: str
    fare: int
    currency: str
    seats_total: int
    seats_available: int


# Real routes, fares of the order long-distance coaches charge.
ROUTES: tuple[Route, ...] = (
    Route("Nairobi", "Mombasa", 1500, 8.0, (time(8), time(21, 30))),
    Route("Mombasa", "Nairobi", 1500, 8.0, (time(8), time(21, 30))),
    Route("Nairobi", "Kisumu", 1400, 7.0, (time(7), time(20))),
    Route("Kisumu", "Nairobi", 1400, 7.0, (time(7), time(20))),
    Route("Nairobi", "Nakuru", 600, 2.5, (time(6, 30), time(12), time(17))),
    Route("Nakuru", "Nairobi", 600, 2.5, (time(6, 30), time(12), time(17))),
    Route("Mombasa", "Malindi", 500, 2.5, (time(9), time(15))),
    Route("Malindi", "Mombasa", 500, 2.5, (time(9), time(15))),
    Route("Nairobi", "Eldoret", 1200, 6.0, (time(8), time(22))),
    Route("Eldoret", "Nairobi", 1200, 6.0, (time(8), time(22))),
)

EAT = timedelta(hours=3)
SEATS_PER_BUS = 40


def timetable(first_day: date, days: int) -> list[tuple[Route, datetime, str]]:
    """Every departure of every route over ``days`` days: (route, departs_at UTC, bus id)."""
    out: list[tuple[Route, datetime, str]] = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for r_index, route in enumerate(ROUTES):
            for d_index, departure in enumerate(route.departures):
                local = datetime.combine(day, departure, tzinfo=UTC) - EAT
                bus = f"KB{r_index:02d}{d_index}{offset % 2}"
                out.append((route, local, bus))
    return out
