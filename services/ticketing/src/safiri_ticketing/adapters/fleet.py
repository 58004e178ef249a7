"""The fleet as its buses report it: the latest position of each bus, and how many report.

``bus_positions`` keeps one row per bus, its newest fix (an upsert that a late, older fix does
not win); the ``buses_reporting`` view is the buses whose newest fix is recent
(``REPORTING_WINDOW``). ``active_buses_count`` counts that view and the Control Tower's Geomap
reads it, so the number and the map cannot disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Gauge

from ..domain.fleet import BusNotOnTrip, Position

__all__ = ["ActiveBuses", "FleetPositions", "TripUnderWay"]

# The fix is stored only for the bus that runs its trip; an older fix than the stored one
# changes nothing. `known` says whether the trip is the bus's, `applied` whether it won.
_RECORD = """
WITH trip AS (SELECT trip_id FROM trips WHERE trip_id = $2::uuid AND bus_id = $1),
stored AS (
    INSERT INTO bus_positions AS p (bus_id, trip_id, latitude, longitude, speed_kmh,
                                    heading_degrees, recorded_at)
    SELECT $1, trip.trip_id, $3, $4, $5, $6, $7 FROM trip
    ON CONFLICT (bus_id) DO UPDATE
        SET trip_id = EXCLUDED.trip_id, latitude = EXCLUDED.latitude,
            longitude = EXCLUDED.longitude, speed_kmh = EXCLUDED.speed_kmh,
            heading_degrees = EXCLUDED.heading_degrees, recorded_at = EXCLUDED.recorded_at,
            received_at = now()
        WHERE p.recorded_at < EXCLUDED.recorded_at
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM trip) AS known, EXISTS (SELECT 1 FROM stored) AS applied
"""

_ACTIVE_BUSES = "SELECT count(*) FROM buses_reporting"

_UNDER_WAY = """
SELECT trip_id::text, bus_id, origin, destination, departs_at, arrives_at FROM trips
WHERE departs_at <= $1 AND $1 < arrives_at ORDER BY departs_at, trip_id
"""


class TripUnderWay:
    """A trip that has departed and not yet arrived, as the fleet needs it."""

    __slots__ = ("arrives_at", "bus_id", "departs_at", "destination", "origin", "trip_id")

    def __init__(self, row: asyncpg.Record) -> None:
        self.trip_id: str = row["trip_id"]
        self.bus_id: str = row["bus_id"]
        self.origin: str = row["origin"]
        self.destination: str = row["destination"]
        self.departs_at: datetime = row["departs_at"]
        self.arrives_at: datetime = row["arrives_at"]


class FleetPositions:
    def __init__(self, pool: asyncpg.Pool[Any], *, timeout: float = 5.0) -> None:
        self._pool = pool
        self._timeout = timeout

    async def record(self, position: Position) -> bool:
        """Keep ``position`` if it is the bus's newest (True) or not (False); ``BusNotOnTrip``
        if the trip is unknown or another bus's. Idempotent: a redelivery changes nothing."""
        row = await self._pool.fetchrow(
            _RECORD,
            position.bus_id,
            position.trip_id,
            position.latitude,
            position.longitude,
            position.speed_kmh,
            position.heading_degrees,
            position.recorded_at,
            timeout=self._timeout,
        )
        assert row is not None
        if not row["known"]:
            raise BusNotOnTrip(f"bus {position.bus_id} is not on trip {position.trip_id}")
        return bool(row["applied"])

    async def trips_under_way(self, at: datetime) -> list[TripUnderWay]:
        rows = await self._pool.fetch(_UNDER_WAY, at, timeout=self._timeout)
        return [TripUnderWay(row) for row in rows]


class ActiveBuses:
    """Keeps ``active_buses_count`` at the number of buses reporting; ``refresh`` runs on a
    timer. Every replica reads the same table, so dashboards take the max, never the sum."""

    def __init__(self, pool: asyncpg.Pool[Any], gauge: Gauge, *, timeout: float = 5.0) -> None:
        self._pool = pool
        self._gauge = gauge
        self._timeout = timeout

    async def refresh(self) -> None:
        count = await self._pool.fetchval(_ACTIVE_BUSES, timeout=self._timeout)
        self._gauge.set(count or 0)
