"""The Prometheus registry of a service and the RED instruments every service shares."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["LATENCY_BUCKETS", "HttpMetrics"]

# Seconds; fine enough around the 50 ms target of POST /orders, wide enough for timeouts.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """HTTP server and client metrics, named as OpenTelemetry semantic conventions render."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.server_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.client_duration = Histogram(
            "http_client_request_duration_seconds",
            "Duration of HTTP client requests.",
            ["http_request_method", "server_address", "http_response_status_code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
