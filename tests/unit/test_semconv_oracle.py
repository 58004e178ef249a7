"""The oracle behind tests/e2e/test_semantic_conventions.py refuses what it should: each
deprecated or unregistered name below is one Safiri emitted before, or could."""

from __future__ import annotations

import pytest

from tests.semconv_oracle import Emitted, known_names, problems

pytestmark = pytest.mark.unit


def test_the_conventions_package_is_read_current_and_deprecated_alike() -> None:
    names = known_names()
    assert len(names) > 500
    assert not names["attribute:http.request.method"].deprecated
    assert names["attribute:http.method"].deprecated
    assert names["metric:db.client.connections.usage"].deprecated
    assert not names["metric:db.client.connection.count"].deprecated


def test_current_and_registered_names_pass() -> None:
    emitted = Emitted(
        spans={
            "hold_seats": {"INTERNAL"},
            "POST /api/v1/orders": {"SERVER"},
            "publish": {"PRODUCER"},
        },
        span_attributes={
            "safiri.order.id",
            "http.route",
            "messaging.destination.subscription.name",
        },
        resource_attributes={"service.name", "service.instance.id"},
        log_fields={"trace_id", "order_id"},
        metrics={
            "tickets_sold_total": ("counter", {"route", "job", "instance"}),
            "http_server_request_duration_seconds": ("histogram", {"http_route", "le"}),
            "db_client_connection_count": ("gauge", {"db_client_connection_state"}),
        },
    )
    assert problems(emitted) == []


@pytest.mark.parametrize(
    ("emitted", "complaint"),
    [
        (Emitted(span_attributes={"messaging.destination"}), "'messaging.destination' is neither"),
        (Emitted(span_attributes={"messaging.operation"}), "'messaging.operation' is deprecated"),
        (Emitted(span_attributes={"net.peer.name"}), "'net.peer.name' is deprecated"),
        (Emitted(span_attributes={"safiri.not.registered"}), "'safiri.not.registered' is neither"),
        (
            Emitted(resource_attributes={"deployment.environment"}),
            "'deployment.environment' is deprecated",
        ),
        (Emitted(log_fields={"customer_pin"}), "'customer_pin' is neither"),
        (Emitted(spans={"frobnicate": {"INTERNAL"}}), "span 'frobnicate'"),
        (Emitted(spans={"publish amq default": {"PRODUCER"}}), "span 'publish amq default'"),
        (
            Emitted(metrics={"db_client_connections_usage": ("gauge", {"state"})}),
            "'db_client_connections_usage' is deprecated",
        ),
        (
            Emitted(metrics={"bookings_made_total": ("counter", set())}),
            "'bookings_made_total' is neither",
        ),
        (
            Emitted(metrics={"tickets_sold_total": ("counter", {"route", "net_peer_name"})}),
            "label 'net_peer_name' is deprecated",
        ),
        (
            Emitted(metrics={"tickets_sold_total": ("counter", {"route", "bus_colour"})}),
            "label 'bus_colour' is neither",
        ),
        (Emitted(metrics={"tickets_sold_total": ("gauge", {"route"})}), "is a gauge"),
    ],
)
def test_a_deprecated_or_unregistered_name_is_refused(emitted: Emitted, complaint: str) -> None:
    found = problems(emitted)
    assert len(found) == 1 and complaint in found[0], found
