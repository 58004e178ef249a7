"""Database connection-pool gauges, read from the pool at each scrape.

Named after the current OpenTelemetry database-client conventions, as an OpenTelemetry
Prometheus exporter renders them: ``db.client.connection.count{db.client.connection.state,
db.client.connection.pool.name}`` and ``db.client.connection.max``, whose units
(``{connection}``) add no suffix. (The ``db.client.connections.*`` names used before are
deprecated. ``promtool check metrics`` reserves ``_count`` for histograms; the conventions'
name wins, as the contract's ``active_buses_count`` does.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

__all__ = ["ConnectionPool", "ConnectionPoolCollector"]


class ConnectionPool(Protocol):
    """What the collector needs of a pool; ``asyncpg.Pool`` has it."""

    def get_size(self) -> int: ...

    def get_idle_size(self) -> int: ...

    def get_max_size(self) -> int: ...


class ConnectionPoolCollector:
    """A Prometheus collector for one connection pool.

    Register it with ``registry.register(...)`` and ``unregister`` it when the pool closes. The
    pool is read when ``/metrics`` is scraped, on the scraping thread (the event loop's, for
    aiohttp), through three cheap synchronous calls. A registry takes one such collector:
    a second is refused as a duplicate.
    """

    def __init__(self, pool: ConnectionPool, *, pool_name: str) -> None:
        self._pool = pool
        self._pool_name = pool_name

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        size = self._pool.get_size()
        idle = self._pool.get_idle_size()
        usage, maximum = self._families()
        usage.add_metric(["used", self._pool_name], size - idle)
        usage.add_metric(["idle", self._pool_name], idle)
        maximum.add_metric([self._pool_name], self._pool.get_max_size())
        yield usage
        yield maximum

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "db_client_connection_count",
                "Open database connections in the pool, by state (used: lent out, idle: free).",
                labels=["db_client_connection_state", "db_client_connection_pool_name"],
            ),
            GaugeMetricFamily(
                "db_client_connection_max",
                "The most open connections the database pool allows.",
                labels=["db_client_connection_pool_name"],
            ),
        )
