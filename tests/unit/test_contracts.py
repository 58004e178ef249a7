"""libs/contracts: the typed messages, their decoding, the AsyncAPI document made from them, and
the rule that nothing else builds or parses a message body by hand."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safiri_contracts import (
    FLEET_POSITIONS,
    MESSAGES,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    QUEUES,
    BusPositionReported,
    InvalidMessage,
    Message,
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
)
from safiri_contracts.asyncapi import document, render

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = ROOT / "tests" / "fixtures" / "asyncapi" / "3.0.0-without-id.json"
ORDER = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"

VALID: dict[type[Message], dict[str, Any]] = {
    PaymentRequested: {
        "order_id": ORDER,
        "trip_id": "9a1b2c3d-0000-4000-8000-000000000001",
        "amount": 1500,
        "currency": "KES",
        "phone": "254712345678",
        "description": "Nairobi-Mombasa x1",
    },
    PaymentSucceeded: {
        "order_id": ORDER,
        "payment_id": "p-1",
        "amount": 1500,
        "currency": "KES",
        "result_desc": "The service request is processed successfully.",
        "receipt": "RCPT12345",
    },
    PaymentFailed: {
        "order_id": ORDER,
        "payment_id": "p-1",
        "amount": 1500,
        "currency": "KES",
        "result_code": 1032,
        "result_desc": "Request cancelled by user",
        "receipt": None,
    },
    BusPositionReported: {
        "bus_id": "KB0001",
        "trip_id": "9a1b2c3d-0000-4000-8000-000000000001",
        "latitude": -1.2864,
        "longitude": 36.8172,
        "recorded_at": "2026-12-07T08:30:00+00:00",
        "speed_kmh": 72.5,
        "heading_degrees": 118.0,
    },
}


def queue_of(message: type[Message]) -> Any:
    return next(q for q in QUEUES if message in q.messages)


# -- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.__name__)
def test_every_message_round_trips_through_its_queue(message: type[Message]) -> None:
    sent = message(**VALID[message])
    received = queue_of(message).decode(message.routing_key, sent.to_json())
    assert received == sent
    assert type(received) is message
    assert json.loads(sent.to_json())["schema_version"] == 1


def test_a_position_round_trips_with_its_time_and_optional_motion() -> None:
    sent = BusPositionReported(**VALID[BusPositionReported])
    received = FLEET_POSITIONS.decode("fleet.position.reported", sent.to_json())
    assert received == sent
    assert json.loads(sent.to_json())["recorded_at"] == "2026-12-07T08:30:00Z"
    bare = {k: v for k, v in VALID[BusPositionReported].items() if "speed" not in k}
    bare = {k: v for k, v in bare.items() if "heading" not in k}
    assert FLEET_POSITIONS.decode("fleet.position.reported", json.dumps(bare)) == (
        BusPositionReported(**bare)
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"latitude": 91.0}, "latitude: Input should be less than or equal to 90"),
        ({"longitude": -180.5}, "longitude: Input should be greater than or equal to -180"),
        ({"latitude": True}, "latitude: Input should be a valid number"),
        ({"latitude": "-1.28"}, "latitude: Input should be a valid number"),
        ({"recorded_at": "2026-12-07T08:30:00"}, "recorded_at: Input should have timezone"),
        ({"recorded_at": 1796632200}, "an ISO 8601 time with its offset is expected"),
        ({"recorded_at": "yesterday"}, "recorded_at: Input should be a valid datetime"),
        ({"bus_id": "KB 01; DROP"}, "bus_id: String should match pattern"),
        ({"bus_id": ""}, "bus_id: String should match pattern"),
        ({"trip_id": "t-1"}, "trip_id: String should match pattern"),
        ({"speed_kmh": -1}, "speed_kmh: Input should be greater than or equal to 0"),
        ({"heading_degrees": 360.0}, "heading_degrees: Input should be less than 360"),
        ({"schema_version": 2}, "schema_version 2 is not known"),
    ],
)
def test_an_impossible_position_is_refused_with_its_reason(
    changes: dict[str, Any], reason: str
) -> None:
    body = json.dumps({**VALID[BusPositionReported], **changes})
    with pytest.raises(InvalidMessage) as refused:
        FLEET_POSITIONS.decode("fleet.position.reported", body)
    assert reason in str(refused.value)


def test_a_body_written_before_the_contracts_is_read_as_version_1() -> None:
    body = json.dumps(VALID[PaymentRequested])  # no schema_version: queued before the upgrade
    assert PAYMENT_REQUESTS.decode("payment.requested", body) == PaymentRequested(
        **VALID[PaymentRequested]
    )


@pytest.mark.parametrize(
    ("routing_key", "body", "reason"),
    [
        ("payment.requested", b"{oops", "body is not JSON"),
        ("payment.requested", b"[1, 2]", "not a JSON object"),
        ("payment.requested", b"\xff\xfe", "body is not JSON"),
        (
            "payment.requested",
            json.dumps({**VALID[PaymentRequested], "schema_version": 2}),
            "schema_version 2 is not known",
        ),
        (
            "payment.requested",
            json.dumps({**VALID[PaymentRequested], "schema_version": True}),
            "schema_version True is not known",
        ),
        (
            "payment.requested",
            json.dumps({**VALID[PaymentRequested], "amount": "1500"}),
            "amount: Input should be a valid integer",
        ),
        (
            "payment.requested",
            json.dumps({**VALID[PaymentRequested], "amount": True}),
            "amount: Input should be a valid integer",
        ),
        (
            "payment.requested",
            json.dumps({**VALID[PaymentRequested], "amount": 0}),
            "amount: Input should be greater than 0",
        ),
        (
            "payment.requested",
            json.dumps({**VALID[PaymentRequested], "phone": "07 12"}),
            "phone: String should match pattern",
        ),
        (
            "payment.requested",
            json.dumps({k: v for k, v in VALID[PaymentRequested].items() if k != "order_id"}),
            "order_id: Field required",
        ),
        ("payment.succeeded", json.dumps(VALID[PaymentSucceeded]), "does not accept"),  # wrong q
        (
            "payment.succeeded",
            json.dumps({**VALID[PaymentSucceeded], "result_code": 1}),
            "result_code: Input should be 0",
        ),
        ("payment.refunded", json.dumps(VALID[PaymentFailed]), "does not accept routing key"),
    ],
)
def test_an_invalid_body_is_refused_with_its_reason(
    routing_key: str, body: bytes | str, reason: str
) -> None:
    wrong_queue = reason == "does not accept"
    results = routing_key != "payment.requested"
    queue = PAYMENT_RESULTS if results != wrong_queue else PAYMENT_REQUESTS
    with pytest.raises(InvalidMessage) as refused:
        queue.decode(routing_key, body)
    assert reason in str(refused.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    message=st.sampled_from(MESSAGES),
    changes=st.dictionaries(
        st.sampled_from(
            [
                *("order_id", "payment_id", "amount", "currency", "phone", "result_code"),
                *("receipt", "description", "result_desc", "schema_version", "trip_id", "extra"),
                *("bus_id", "latitude", "longitude", "recorded_at", "speed_kmh"),
            ]
        ),
        JSON,
        max_size=3,
    ),
    dropped=st.sets(
        st.sampled_from(["order_id", "amount", "currency", "phone", "bus_id", "recorded_at"]),
        max_size=2,
    ),
)
def test_a_fuzzed_body_is_either_a_valid_message_or_refused_with_a_reason(
    message: type[Message], changes: dict[str, Any], dropped: set[str]
) -> None:
    """What a consumer can be handed: the contract's body with fields retyped or removed."""
    body = {k: v for k, v in {**VALID[message], **changes}.items() if k not in dropped}
    reason = ""
    try:
        decoded = queue_of(message).decode(message.routing_key, json.dumps(body))
    except InvalidMessage as exc:
        reason = str(exc)
        assert reason
    if not reason:  # accepted: a valid message that re-encodes to a body that decodes again
        assert type(decoded) is message
        assert queue_of(message).decode(message.routing_key, decoded.to_json()) == decoded


# -- the AsyncAPI document ----------------------------------------------------------------


def test_the_committed_asyncapi_document_is_the_one_the_contracts_make() -> None:
    assert ASYNCAPI.read_text() == render(), (
        "docs/asyncapi.yaml is stale: run .venv/bin/python -m safiri_contracts.asyncapi"
        " docs/asyncapi.yaml"
    )


def asyncapi_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_asyncapi_document_is_valid_asyncapi_3() -> None:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert asyncapi_errors(doc) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["operations"][next(iter(d["operations"]))].update(action="publish"),
        lambda d: d["channels"][next(iter(d["channels"]))]["bindings"]["amqp"].update(is_="x"),
        lambda d: d.pop("info"),
        lambda d: d["components"]["messages"]["PaymentRequested"].update(payload=3),
    ],
    ids=["2.x action", "unknown binding field", "no info", "payload not a schema"],
)
def test_the_asyncapi_validation_refuses_a_broken_document(breakage: Any) -> None:
    doc = document()
    breakage(doc)
    assert asyncapi_errors(doc)


def test_every_message_and_queue_is_in_the_document_with_its_schema() -> None:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]
    assert set(messages) == {m.__name__ for m in MESSAGES}
    for message in MESSAGES:
        schema = message.model_json_schema(mode="serialization")
        assert schemas[message.__name__]["properties"] == schema["properties"]
        assert set(schemas[message.__name__]["required"]) == set(schema["required"])
        assert messages[message.__name__]["name"] == message.routing_key
        assert "traceparent" in messages[message.__name__]["headers"]["properties"]
        assert doc["channels"][_key(message.routing_key)]["address"] == message.routing_key
    queues = {c["address"]: c for c in doc["channels"].values() if c["bindings"]["amqp"]["is"]}
    for queue in QUEUES:
        channel = queues[queue.name]
        assert channel["bindings"]["amqp"]["is"] == "queue"
        assert {b["routingKey"] for b in channel["x-bindings"]} == set(queue.routing_keys)
        assert channel["x-queue-arguments"]["x-delivery-limit"] == queue.delivery_limit
    actions = [(o["action"], o["channel"]["$ref"]) for o in doc["operations"].values()]
    assert len(actions) == len(MESSAGES) + len(QUEUES)


def test_each_message_correlates_by_a_field_it_has() -> None:
    doc = document()
    for name, message in doc["components"]["messages"].items():
        location = message["correlationId"]["location"]
        assert location.startswith("$message.payload#/"), (name, location)
        field = location.removeprefix("$message.payload#/")
        assert field in doc["components"]["schemas"][name]["required"], (name, field)


def _key(routing_key: str) -> str:
    head, *rest = routing_key.split(".")
    return head + "".join(p.title() for p in rest)


# -- no message body built or parsed by hand -----------------------------------------------

SCANNED = [
    *sorted((ROOT / "services").glob("*/src/**/*.py")),
    *sorted((ROOT / "simulators").glob("*/src/**/*.py")),
    *sorted((ROOT / "src").glob("**/*.py")),
    *sorted((ROOT / "tools").glob("*/src/**/*.py")),
    *sorted((ROOT / "libs" / "messaging" / "src").glob("**/*.py")),
]
CONTRACT_MESSAGES = {m.__name__ for m in MESSAGES}
# The transport itself: the outbox writes the contract's payload; the consumer reads bodies.
OUTBOX_WRITER = "libs/messaging/src/safiri_messaging/unit_of_work.py"
AMQP_TRANSPORT = {
    "libs/messaging/src/safiri_messaging/outbox.py",
    "libs/messaging/src/safiri_messaging/consumer.py",
    # The one path for a producer without a database (the fleet simulator): a contract
    # model published straight to the exchange, traced like the outbox's relay.
    "libs/messaging/src/safiri_messaging/publisher.py",
}


def hand_built_messages(source: str, path: str) -> list[str]:
    """Where ``source`` builds or parses a bus message's body instead of using the contracts."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("payload", "field")
                and isinstance(node.value, ast.Name)
                and "envelope" in node.value.id
                and path not in AMQP_TRANSPORT
            ):
                found.append(f"{path}:{node.lineno} reads envelope.{node.attr} untyped")
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "emit" and isinstance(func, ast.Attribute) and path != OUTBOX_WRITER:
            arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
            built = isinstance(arg, ast.Call) and getattr(arg.func, "id", "") in CONTRACT_MESSAGES
            if not built:
                found.append(f"{path}:{node.lineno} emits something that is not a contract")
        elif name == "publish_event" and path not in AMQP_TRANSPORT:
            # publish_event(exchange, Contract(...), [metrics], [timeout=...])
            arg = node.args[1] if len(node.args) >= 2 else None
            built = isinstance(arg, ast.Call) and getattr(arg.func, "id", "") in CONTRACT_MESSAGES
            if not built:
                found.append(f"{path}:{node.lineno} publishes something that is not a contract")
        elif name == "add_to_outbox" and path != OUTBOX_WRITER:
            found.append(f"{path}:{node.lineno} writes the outbox by hand")
        elif name == "Message" and isinstance(func, ast.Attribute) and path not in AMQP_TRANSPORT:
            found.append(f"{path}:{node.lineno} builds an AMQP message by hand")
        elif (
            name == "loads"
            and node.args
            and isinstance(node.args[0], ast.Attribute)
            and node.args[0].attr == "body"
            and path not in AMQP_TRANSPORT
        ):
            found.append(f"{path}:{node.lineno} parses a message body by hand")
    return found


def test_no_module_outside_the_contracts_builds_or_parses_a_message_body() -> None:
    assert len(SCANNED) > 100  # the scan sees the code it guards
    found = [
        hit
        for path in SCANNED
        for hit in hand_built_messages(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


@pytest.mark.parametrize(
    "snippet",
    [
        "uow.emit('payment.requested', {'order_id': order.order_id})",
        "uow.emit(payload)",
        "await add_to_outbox(conn, 'payment.failed', {'order_id': o})",
        "aio_pika.Message(json.dumps(body).encode())",
        "data = json.loads(message.body)",
        "order_id = envelope.payload.get('order_id')",
        "amount = envelope.field('amount', int)",
        "await publish_event(exchange, {'bus_id': 'KB0001'})",
        "await publish_event(exchange, position)",
        "await publish_event(exchange, message=BusPositionReported(bus_id=b))",
    ],
)
def test_the_scan_finds_a_hand_built_message(snippet: str) -> None:
    assert hand_built_messages(snippet, "services/x/src/x/handlers.py")


def test_the_scan_lets_a_contract_through() -> None:
    assert hand_built_messages("uow.emit(PaymentFailed(order_id=o))", "services/x.py") == []
    for published in (
        "await publish_event(exchange, BusPositionReported(bus_id=b))",
        "await publish_event(exchange, BusPositionReported(bus_id=b), metrics, timeout=1)",
    ):
        assert hand_built_messages(published, "simulators/x.py") == []
