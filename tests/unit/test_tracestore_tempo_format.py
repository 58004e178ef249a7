"""Tempo's trace-by-id answers, in each shape Tempo has used, read into the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safiri_tracestore.model import Outcome
from safiri_tracestore.params import RecentQuery
from safiri_tracestore.tempo import tempo_spans, traceql

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tempo"

# The answer printed in Tempo's docs (api_docs/pushing-spans-with-http.md) for /api/v2/traces.
DOCS_V2_ANSWER = (
    '{"trace": {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":'
    '{"stringValue":"my.service"}}]},"scopeSpans":[{"scope":{"name":"my.library","version":'
    '"1.0.0"},"spans":[{"traceId":"W47/95gDgQPSabYzgT/HAA==","spanId":"7uGbfsPBsQA=","name":'
    '"I am a span!","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1689969302000000000",'
    '"endTimeUnixNano":"1689970000000000000","attributes":[{"key":"my.span.attr","value":'
    '{"stringValue":"some value"}}],"status":{}}]}]}]}}'
)


def test_the_v2_answer_from_tempos_docs_is_read_with_its_base64_ids() -> None:
    (span,) = tempo_spans(json.loads(DOCS_V2_ANSWER))
    assert span.trace_id == "5b8efff798038103d269b633813fc700"
    assert span.span_id == "eee19b7ec3c1b100"
    assert (span.service, span.name, span.kind) == ("my.service", "I am a span!", 2)
    assert span.start_ns == 1689969302000000000 and span.status_code == 0
    assert span.attributes == {"my.span.attr": "some value"}


def test_the_v1_batches_answer_is_read_with_errors_links_and_int_attributes() -> None:
    path = FIXTURES / "trace-0a4c1e8f3b2d4c6e8f1a3b5c7d9e1f20.json"
    spans = {s.name: s for s in tempo_spans(json.loads(path.read_text()))}
    failing = spans["handle_callback"]
    assert failing.trace_id == "0a4c1e8f3b2d4c6e8f1a3b5c7d9e1f20"
    assert failing.is_error
    assert failing.status_message == "ResultCode 1037: DS timeout user cannot be reached"
    assert failing.attributes["safiri.payment.result_code"] == 1037
    assert failing.links[0]["span_id"] == spans["POST /callbacks/mpesa/{payment_id}"].span_id
    assert failing.parent_span_id == spans["request_payment"].span_id
    assert spans["POST /api/v1/orders"].parent_span_id is None
    assert {s.service for s in spans.values()} == {
        "gateway",
        "ticketing",
        "payment",
        "mpesa-simulator",
    }


def test_hex_resource_spans_and_pre_2_0_instrumentation_library_spans_are_read() -> None:
    span = {"traceId": "5b8efff798038103d269b633813fc700", "spanId": "eee19b7ec3c1b100"}
    hex_answer = {"resourceSpans": [{"scopeSpans": [{"spans": [{**span, "name": "new"}]}]}]}
    old_answer = {
        "batches": [
            {
                "instrumentationLibrarySpans": [
                    {"instrumentationLibrary": {"name": "x"}, "spans": [{**span, "name": "old"}]}
                ]
            }
        ]
    }
    assert [s.name for s in tempo_spans(hex_answer)] == ["new"]
    assert [s.name for s in tempo_spans(old_answer)] == ["old"]


@pytest.mark.parametrize(
    "answer",
    [[], {"batches": 3}, {"batches": [{"scopeSpans": [{"spans": [{"traceId": "??"}]}]}]}],
)
def test_an_answer_that_is_not_a_trace_is_refused(answer: object) -> None:
    with pytest.raises(ValueError, match=r"JSON object|not a list|traceId"):
        tempo_spans(answer)


def test_the_tempo_searches_keep_to_purchases_and_to_their_outcome() -> None:
    """Refused orders are found by their refused step or a 4xx answer; a probe is left out of
    the orders by asking for a span that only a purchase has."""
    refused = traceql(RecentQuery.of_orders(Outcome.REFUSED))
    assert refused.startswith('{ span.safiri.outcome = "refused" || (span.http.response')
    assert refused.endswith('|| name = "POST /api/v1/orders" }')
    assert traceql(RecentQuery(Outcome.FAILED, purchases=False)) == (
        '{ status = error || name = "expire_hold" }'
    )
