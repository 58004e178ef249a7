"""Orders still waiting for their payment: how many, and how long the oldest has waited."""

from __future__ import annotations

from typing import Any

import asyncpg
from prometheus_client import Gauge

__all__ = ["PendingOrders"]

_PENDING = """
SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest
FROM orders WHERE status = 'PENDING_PAYMENT'
"""


class PendingOrders:
    """Keeps the pending-orders gauges current; ``refresh`` is called on a timer.

    An order pending far past its hold means the sweeper or the payment flow is stuck.
    """

    def __init__(
        self, pool: asyncpg.Pool[Any], count: Gauge, oldest_age: Gauge, *, timeout: float = 5.0
    ) -> None:
        self._pool = pool
        self._count = count
        self._oldest_age = oldest_age
        self._timeout = timeout

    async def refresh(self) -> None:
        row = await self._pool.fetchrow(_PENDING, timeout=self._timeout)
        assert row is not None
        self._count.set(row["n"])
        self._oldest_age.set(float(row["oldest"]))
