"""Where a bus is on its route at a moment: the towns' real coordinates, the roads between them
as a few waypoints, and a position interpolated by time between departure and arrival. Pure.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime

__all__ = ["TOWNS", "Fix", "UnknownTown", "path", "position_at"]

Point = tuple[float, float]  # (latitude, longitude), WGS 84 degrees

# The towns on Safiri's timetable, and the places the A8, A104 and A109 pass through.
TOWNS: dict[str, Point] = {
    "Nairobi": (-1.2864, 36.8172),
    "Mombasa": (-4.0435, 39.6682),
    "Kisumu": (-0.0917, 34.7680),
    "Nakuru": (-0.3031, 36.0800),
    "Malindi": (-3.2192, 40.1169),
    "Eldoret": (0.5143, 35.2698),
}
_VIA: dict[tuple[str, str], tuple[Point, ...]] = {
    # A109: Athi River, Mtito Andei, Voi.
    ("Nairobi", "Mombasa"): ((-1.4560, 36.9780), (-2.6903, 38.1669), (-3.3961, 38.5561)),
    # A104 to Nakuru through Naivasha, then B1 through Kericho.
    ("Nairobi", "Kisumu"): ((-0.7167, 36.4333), (-0.3031, 36.0800), (-0.3677, 35.2831)),
    ("Nairobi", "Nakuru"): ((-0.7167, 36.4333),),
    ("Nairobi", "Eldoret"): ((-0.7167, 36.4333), (-0.3031, 36.0800)),
    # B8 along the coast through Kilifi.
    ("Mombasa", "Malindi"): ((-3.6305, 39.8499),),
}
EARTH_RADIUS_KM = 6371.0


class UnknownTown(ValueError):
    """A town this simulator has no coordinates for."""


@dataclass(frozen=True)
class Fix:
    latitude: float
    longitude: float
    heading_degrees: float
    speed_kmh: float


def path(origin: str, destination: str) -> list[Point]:
    """The route's points from ``origin`` to ``destination`` (a straight line without
    waypoints between two known towns)."""
    for town in (origin, destination):
        if town not in TOWNS:
            raise UnknownTown(f"no coordinates for {town!r}")
    if (origin, destination) in _VIA:
        via = list(_VIA[(origin, destination)])
    else:
        via = list(reversed(_VIA.get((destination, origin), ())))
    return [TOWNS[origin], *via, TOWNS[destination]]


def _distance_km(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def _bearing(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


def position_at(
    origin: str, destination: str, departs_at: datetime, arrives_at: datetime, at: datetime
) -> Fix:
    """Where the bus is ``at``: the share of the journey's time gone is the share of the road
    covered (clamped to the two ends), at the average speed the timetable implies."""
    points = path(origin, destination)
    legs = [_distance_km(a, b) for a, b in itertools.pairwise(points)]
    total = sum(legs)
    duration = (arrives_at - departs_at).total_seconds()
    share = 0.0 if duration <= 0 else (at - departs_at).total_seconds() / duration
    share = min(max(share, 0.0), 1.0)
    speed = total / (duration / 3600) if 0.0 < share < 1.0 and duration > 0 else 0.0
    left = share * total
    for (a, b), length in zip(itertools.pairwise(points), legs, strict=True):
        if left <= length or b == points[-1]:
            t = 0.0 if length == 0 else min(left / length, 1.0)
            return Fix(
                round(a[0] + (b[0] - a[0]) * t, 6),
                round(a[1] + (b[1] - a[1]) * t, 6),
                round(_bearing(a, b), 1) % 360.0,
                round(speed, 1),
            )
        left -= length
    raise AssertionError("unreachable: the last leg ends the loop")  # pragma: no cover
