"""The fleet as the timetable sees it: which buses are on the road right now."""

from __future__ import annotations

from typing import Any

import asyncpg
from prometheus_client import Gauge

__all__ = ["ActiveBuses"]

_ACTIVE_BUSES = """
SELECT count(DISTINCT bus_id) FROM trips WHERE departs_at <= now() AND now() < arrives_at
"""


class ActiveBuses:
    """Keeps the active-buses gauge current; ``refresh`` is called on a timer."""

    def __init__(self, pool: asyncpg.Pool[Any], gauge: Gauge, *, timeout: float = 5.0) -> None:
        self._pool = pool
        self._gauge = gauge
        self._timeout = timeout

    async def refresh(self) -> None:
        count = await self._pool.fetchval(_ACTIVE_BUSES, timeout=self._timeout)
        self._gauge.set(count or 0)
