"""``safiri_maintenance_mode``: 1 while the ``maintenance-mode`` flag is on, read at each scrape.

The signal that maintenance is on, even when no order is being placed (the flag itself is
evaluated, and counted, only where an order is placed): the info alert
``SafiriMaintenanceMode`` and the dashboards' annotation read it. The scrape reads the flag
without recording an evaluation, so that scrapes neither add span events nor count in
``feature_flag_evaluation_*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

__all__ = ["MAINTENANCE_FLAG", "MaintenanceGauge"]

MAINTENANCE_FLAG = "maintenance-mode"


class FlagReader(Protocol):
    """What the gauge needs of ``safiri_flags.Flags``."""

    def peek_boolean(self, key: str, default: bool) -> bool: ...


class MaintenanceGauge:
    """A Prometheus collector: register it with ``registry.register(...)``."""

    def __init__(self, flags: FlagReader) -> None:
        self._flags = flags

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        family.add_metric([], 1.0 if self._flags.peek_boolean(MAINTENANCE_FLAG, False) else 0.0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "safiri_maintenance_mode",
            "1 while the maintenance-mode flag is on (new orders answered 503), 0 otherwise",
        )
