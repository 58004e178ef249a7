"""Everything the running suite emits during purchases -- span names and attributes, resource
attributes, OTLP log-record attributes, JSON log fields, metric names and labels -- is either a
current name of the OpenTelemetry semantic conventions (the opentelemetry-semantic-conventions
package) or one of Safiri's own names documented in docs/registry.yaml. A deprecated name, or
one in neither, fails (tests/unit/test_semconv_oracle.py shows the oracle refusing both)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import eventually
from tests.semconv_oracle import Emitted, problems, registry

from .conftest import Running

pytestmark = pytest.mark.e2e

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
SERVICES = ("gateway", "ticketing", "payment", "mpesa-simulator")
# A confirmed purchase, a customer's refusal (insufficient funds), a cancelled one.
PHONES = ("254712345678", "254700000001", "254700001032")


async def test_every_emitted_name_is_a_current_convention_or_registered(
    running: Running,
) -> None:
    for phone in PHONES:
        trip = await running.next_trip()
        status, body, _ = await running.place_order(trip["trip_id"], phone=phone)
        assert status == 202, body
        await running.final_order(body["order_id"])

    business = {"hold_seats", "request_payment", "confirm_order", "release_seats"}

    async def exported() -> bool:
        return business <= {s.name for s in running.spans.spans}

    await eventually(exported, timeout=20, what="the purchases' spans over OTLP")
    emitted = Emitted()
    for span in running.spans.spans:
        emitted.spans.setdefault(span.name, set()).add(KINDS[span.kind])
        emitted.span_attributes.update(span.attributes)
        for _, event_attributes in span.events:
            emitted.span_attributes.update(event_attributes)
    emitted.resource_attributes.update(running.spans.resource_keys)
    for record in running.spans.logs:
        emitted.log_attributes.update(record.attributes)
    for service in SERVICES:
        for line in running.log_lines(service):
            emitted.log_fields.update(line)
        async with running.http.get(running.url(service, "/metrics")) as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = {label for sample in family.samples for label in sample.labels}
            kind, seen = emitted.metrics.get(name, (family.type, set()))
            emitted.metrics[name] = (kind, seen | labels)

    # Not vacuous: the purchase's own names were seen.
    assert {"hold_seats", "request_payment", "confirm_order"} <= set(emitted.spans)
    assert {"safiri.order.id", "messaging.destination.subscription.name"} <= emitted.span_attributes
    assert {"tickets_sold_total", "http_server_request_duration_seconds"} <= set(emitted.metrics)
    assert {"trace_id", "order_id"} <= emitted.log_fields
    found = problems(emitted)
    assert found == [], "\n".join(found)


def test_every_registered_name_is_documented() -> None:
    reg = registry()
    for section in ("attributes", "spans", "log_fields", "metrics"):
        for name, entry in reg[section].items():
            assert entry and entry.get("brief"), f"{section}.{name} has no brief"
