"""The fleet's loop: learn from ticketing which bus runs which trip now, and have each of them
report a GPS fix every few seconds, published as ``BusPositionReported`` on the events exchange.

The simulator imports nothing of ticketing: it reads ticketing's internal HTTP API
(``GET /fleet/trips-under-way``), as a real telematics gateway would read the operator's
schedule. A fix that cannot be published (the broker away, ticketing's queue not declared yet)
is logged and dropped: the bus's next fix replaces it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aio_pika.abc import AbstractExchange
from loguru import logger
from prometheus_client import Counter

from safiri_contracts import BusPositionReported
from safiri_messaging import publish_event

from .routes import Fix, UnknownTown, position_at

__all__ = ["Reporter", "TripUnderWay"]


@dataclass(frozen=True)
class TripUnderWay:
    trip_id: str
    bus_id: str
    origin: str
    destination: str
    departs_at: datetime
    arrives_at: datetime

    @classmethod
    def from_json(cls, item: dict[str, str]) -> TripUnderWay:
        return cls(
            item["trip_id"],
            item["bus_id"],
            item["origin"],
            item["destination"],
            datetime.fromisoformat(item["departs_at"]),
            datetime.fromisoformat(item["arrives_at"]),
        )


def _now() -> datetime:
    return datetime.now(UTC)


class Reporter:
    """``refresh_trips`` and ``report`` are each run on a timer by the app."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ticketing_url: str,
        exchange: AbstractExchange,
        sent: Counter,
        *,
        clock: Callable[[], datetime] = _now,
        timeout: float = 5.0,
    ) -> None:
        self._session = session
        self._url = f"{ticketing_url.rstrip('/')}/fleet/trips-under-way"
        self._exchange = exchange
        self._sent = sent
        self._clock = clock
        self._timeout = timeout
        self._trips: dict[str, TripUnderWay] = {}  # bus -> its trip under way
        self._unplaceable: set[str] = set()
        self.published: dict[str, tuple[str, Fix]] = {}  # bus -> (trip, latest fix sent)
        self.rounds = 0  # rounds of fixes completed since start
        self.failures = 0

    async def refresh_trips(self) -> None:
        """Ask ticketing which trips are under way now (one trip per bus: its latest)."""
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with self._session.get(self._url, timeout=timeout) as response:
            response.raise_for_status()
            body = await response.json()
        trips: dict[str, TripUnderWay] = {}
        for item in body["trips"]:
            trip = TripUnderWay.from_json(item)
            known = trips.get(trip.bus_id)
            if known is None or trip.departs_at > known.departs_at:
                trips[trip.bus_id] = trip
        self._trips = trips

    async def report(self) -> int:
        """One fix from every bus whose trip is still under way; returns how many were sent."""
        now = self._clock()
        sent = 0
        for bus_id, trip in sorted(self._trips.items()):
            if not trip.departs_at <= now < trip.arrives_at:
                continue  # arrived since the last refresh (or not yet left)
            try:
                fix = position_at(
                    trip.origin, trip.destination, trip.departs_at, trip.arrives_at, now
                )
            except UnknownTown as exc:
                if trip.trip_id not in self._unplaceable:
                    self._unplaceable.add(trip.trip_id)
                    logger.bind(trip_id=trip.trip_id, reason=str(exc)).warning(
                        "trip not simulated: a town without coordinates"
                    )
                continue
            try:
                await publish_event(
                    self._exchange,
                    BusPositionReported(
                        bus_id=bus_id,
                        trip_id=trip.trip_id,
                        latitude=fix.latitude,
                        longitude=fix.longitude,
                        recorded_at=now,
                        speed_kmh=fix.speed_kmh,
                        heading_degrees=fix.heading_degrees,
                    ),
                    self._sent,
                    timeout=self._timeout,
                )
            except Exception as exc:  # the broker away, the queue not there yet: next fix
                self.failures += 1
                logger.bind(trip_id=trip.trip_id, error=repr(exc)).warning(
                    "position not published; the bus's next fix replaces it"
                )
                continue
            self.published[bus_id] = (trip.trip_id, fix)
            sent += 1
        self.rounds += 1
        return sent
