"""The fleet on the road: a bus's reported position, and which buses count as reporting. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["FUTURE_TOLERANCE", "REPORTING_WINDOW", "BusNotOnTrip", "Position", "PositionFromFuture"]

REPORTING_WINDOW = timedelta(minutes=2)
"""A bus counts as active (``active_buses_count``, the map) while its newest fix is this recent:
the simulator reports a few times a minute, so a bus that missed several fixes in a row is off
the road or out of contact, and the map stops showing a position that has gone stale."""

FUTURE_TOLERANCE = timedelta(seconds=60)
"""A fix recorded further ahead of ticketing's clock than this is refused: it would stay the
newest (every real fix after it would lose) and keep the bus counted long after it stopped."""


class BusNotOnTrip(Exception):
    """The fix names a trip that does not exist or that another bus runs."""


class PositionFromFuture(Exception):
    """The fix was recorded later than now, beyond the tolerance for clock skew."""


@dataclass(frozen=True)
class Position:
    """One GPS fix of a bus on its trip (WGS 84 degrees, the bus's own time of the fix)."""

    bus_id: str
    trip_id: str
    latitude: float
    longitude: float
    recorded_at: datetime
    speed_kmh: float | None = None
    heading_degrees: float | None = None

    def check_not_ahead_of(self, now: datetime) -> None:
        if self.recorded_at - now > FUTURE_TOLERANCE:
            raise PositionFromFuture(
                f"recorded at {self.recorded_at.isoformat()}, ahead of ticketing's clock"
                f" ({now.isoformat()}) by more than {FUTURE_TOLERANCE.total_seconds():g} s"
            )
