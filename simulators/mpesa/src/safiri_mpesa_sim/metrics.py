"""The simulator's own metrics, registered in the service's telemetry registry."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Gauge

from .faults import Faults

__all__ = ["NO_RESULT", "SimulatorMetrics", "simulator_metrics"]

# The ``result_code`` label of a push that will never report a result.
NO_RESULT = "none"


class SimulatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.stk_requests = Counter(
            "mpesa_sim_stk_requests",
            "STK pushes by the ResultCode they will report, or the errorCode that refused them.",
            ["result_code"],
            registry=registry,
        )
        self.callbacks = Counter(
            "mpesa_sim_callbacks",
            "Result callbacks by outcome (delivered, failed, lost: dropped by a fault).",
            ["outcome"],
            registry=registry,
        )
        self.faults_active = Gauge(
            "mpesa_sim_faults_active",
            "1 while the named simulator fault is switched on, else 0.",
            ["fault"],
            registry=registry,
        )

    def show_faults(self, faults: Faults) -> None:
        for fault, on in faults.active().items():
            self.faults_active.labels(fault).set(1 if on else 0)


# A registry accepts each metric name once; sharing the instruments lets a test run two
# simulator apps on one Telemetry without a "Duplicated timeseries" error.
_BY_REGISTRY: WeakKeyDictionary[CollectorRegistry, SimulatorMetrics] = WeakKeyDictionary()


def simulator_metrics(registry: CollectorRegistry) -> SimulatorMetrics:
    """The simulator's instruments in ``registry``, created on first use."""
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = SimulatorMetrics(registry)
    return metrics
