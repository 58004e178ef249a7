"""The AsyncAPI 3.0 document of Safiri's bus, made from the typed contracts.

``python -m safiri_contracts.asyncapi [PATH]`` writes it as YAML (docs/asyncapi.yaml in the
repository; a test fails when the committed copy is stale). Channels: one per routing key on the
events exchange (what producers send to) and one per consumer queue (what consumers receive
from), each with its AMQP 0-9-1 binding; messages carry their payload's JSON Schema, made by
pydantic from the same models the services use, and the AMQP headers of W3C trace context.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .messages import MESSAGES, Message
from .topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    EVENTS_EXCHANGE,
    QUEUES,
    QueueSpec,
)

__all__ = ["document", "main", "render"]

AMQP_BINDING_VERSION = "0.3.0"

TRACE_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "AMQP headers. The W3C trace context of the span that published the message,"
    " so the consumer's span continues the purchase's trace.",
    "properties": {
        "traceparent": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C Trace Context traceparent",
            "examples": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        },
        "tracestate": {"type": "string", "description": "W3C Trace Context tracestate"},
        "baggage": {"type": "string", "description": "W3C Baggage"},
        DEAD_LETTER_REASON_HEADER: {
            "type": "string",
            "description": "Only on a message in a dead-letter queue that its consumer refused as"
            " invalid: why (unknown schema version, a field that does not validate, not JSON).",
        },
    },
    "required": ["traceparent"],
}


def _camel(name: str) -> str:
    parts = name.replace("-", ".").split(".")
    return parts[0] + "".join(p.title() for p in parts[1:])


def _message_name(message: type[Message]) -> str:
    return message.__name__


def _schema(message: type[Message]) -> dict[str, Any]:
    schema = message.model_json_schema(mode="serialization")
    schema.pop("title", None)
    schema["description"] = (message.__doc__ or "").strip() or message.summary
    return schema


def _message_object(message: type[Message]) -> dict[str, Any]:
    return {
        "name": message.routing_key,
        "title": message.__name__,
        "summary": message.summary,
        "contentType": "application/json",
        "headers": TRACE_HEADERS,
        "payload": {"$ref": f"#/components/schemas/{_message_name(message)}"},
        "correlationId": {
            "description": message.correlation_description,
            "location": f"$message.payload#/{message.correlation_field}",
        },
        "bindings": {
            "amqp": {"messageType": message.routing_key, "bindingVersion": AMQP_BINDING_VERSION}
        },
        "x-schema-version": message.version(),
        "x-message-id": "The AMQP message_id property: a UUID, given by the producer's outbox;"
        " consumers' inboxes key on it, so a message with any other id is dead-lettered.",
        "x-producer": message.producer,
    }


def _exchange_channel(message: type[Message]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/messages/{_message_name(message)}"}
    return {
        "address": message.routing_key,
        "title": f"{message.routing_key} on {EVENTS_EXCHANGE}",
        "description": f"Published by {message.producer} to the topic exchange {EVENTS_EXCHANGE}"
        f" {message.published_via}.",
        "messages": {_message_name(message): ref},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": EVENTS_EXCHANGE,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def _queue_channel(queue: QueueSpec) -> dict[str, Any]:
    return {
        "address": queue.name,
        "title": f"queue {queue.name}",
        "description": f"{queue.description} Quorum queue bound to {EVENTS_EXCHANGE} with"
        f" {', '.join(queue.routing_keys)}. A message that fails {queue.delivery_limit} times,"
        f" or that its consumer refuses as invalid, goes to {queue.dead_letter_queue} (through"
        f" {DEAD_LETTER_EXCHANGE}).",
        "messages": {
            _message_name(m): {"$ref": f"#/components/messages/{_message_name(m)}"}
            for m in queue.messages
        },
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": queue.name,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
        "x-queue-arguments": {
            "x-queue-type": "quorum",
            "x-delivery-limit": queue.delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": queue.name,
        },
        "x-bindings": [
            {"exchange": EVENTS_EXCHANGE, "routingKey": key} for key in queue.routing_keys
        ],
        "x-dead-letter-queue": queue.dead_letter_queue,
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document as a dict."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for message in MESSAGES:
        key = _camel(message.routing_key)
        channels[key] = _exchange_channel(message)
        operations[f"{message.producer}Sends{message.__name__}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"{message.producer} publishes {message.routing_key}",
            "messages": [{"$ref": f"#/channels/{key}/messages/{_message_name(message)}"}],
        }
    for queue in QUEUES:
        key = _camel(queue.name) + "Queue"
        channels[key] = _queue_channel(queue)
        operations[f"{queue.consumer}Receives{_camel(queue.name).title()}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"{queue.consumer} consumes {queue.name}",
            "messages": [
                {"$ref": f"#/channels/{key}/messages/{_message_name(m)}"} for m in queue.messages
            ],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Safiri message bus",
            "version": "1.0.0",
            "description": "The messages Safiri's services exchange over RabbitMQ: the purchase"
            " saga between ticketing and payment, and the fleet's GPS fixes. Generated from"
            " libs/contracts"
            " (python -m safiri_contracts.asyncapi); do not edit by hand.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "RabbitMQ as `make up` and the tests use it",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {_message_name(m): _message_object(m) for m in MESSAGES},
            "schemas": {_message_name(m): _schema(m) for m in MESSAGES},
        },
    }


def render() -> str:
    """The document as YAML (key order kept)."""
    import yaml  # the document's writer only; the services never import it

    header = "# Made from libs/contracts by `python -m safiri_contracts.asyncapi`; do not edit.\n"
    return header + yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
