"""OTLP trace export requests written straight to protobuf wire format.

``encode_spans(spans)`` returns the bytes of an ``ExportTraceServiceRequest`` that decode to the
very message the SDK's ``encode_spans(spans).SerializePartialToString()`` builds (the test
decodes both and compares them), without building a protobuf object per span, attribute and
value first: a fifth to a third of the CPU (bench/span_cost.py: 6 to 10 µs a span against
29). Resources and instrumentation scopes, the same for every span of a service, are encoded
once.

The wire format: https://protobuf.dev/programming-guides/encoding/; the messages:
opentelemetry-proto ``trace/v1/trace.proto`` and ``common/v1/common.proto``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

__all__ = ["WireSpanExporter", "encode_spans"]

# The SDK exporter's logger: safiri_telemetry holds its records back and reports them.
_LOGGER = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")
_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_INT64_MASK = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# SpanFlags: the parent's "is remote" is known (0x100), and true (0x200).
_FLAGS_LOCAL = _FIXED32(0x100)
_FLAGS_REMOTE = _FIXED32(0x300)


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_BYTE = [bytes((i,)) for i in range(256)]


# A field's key (number and wire type) as it precedes its value; every one used is below 16.
def _key(field: int, wire_type: int) -> bytes:
    return _BYTE[(field << 3) | wire_type]


def _len_field(field: int, payload: bytes) -> bytes:
    """A length-delimited field: strings, bytes, embedded messages."""
    n = len(payload)
    return _BYTE[(field << 3) | 2] + (_BYTE[n] if n < 0x80 else _varint(n)) + payload


def _any_value(value: Any) -> bytes:
    # The order of the checks is the SDK's: bool before int, str before Sequence.
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _len_field(1, value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise TypeError(f"integer attribute {value} is outside int64")
        return b"\x18" + _varint(value & _INT64_MASK)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _len_field(7, value)
    if isinstance(value, Sequence):
        return _len_field(5, b"".join(_len_field(1, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _len_field(6, b"".join(_key_value(str(k), v) for k, v in value.items()))
    raise TypeError(f"attribute value of type {type(value).__name__} cannot be exported")


def _key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` as field 1 of its parent (``KeyValueList``)."""
    return b"\x0a" + _key_value_body(key, value)


# Most attributes repeat from span to span (routes, methods, queue names, service names):
# their encodings are kept, up to a bound, so that ids and the like cannot grow it for ever.
_CACHEABLE = (str, int, bool, float)
_KV_CACHE: dict[tuple[str, type, Any], bytes] = {}
_KV_CACHE_SIZE = 4096
_KV_CACHE_MAX_VALUE = 64  # longer strings (ids, stack traces) are rarely repeated


def _key_value_body(key: str, value: Any) -> bytes:
    """A ``KeyValue``'s length and payload, without a field key."""
    cacheable = type(value) in _CACHEABLE and (
        not isinstance(value, str) or len(value) <= _KV_CACHE_MAX_VALUE
    )
    if cacheable:
        # The type is part of the key: True == 1 == 1.0 must not share an encoding.
        cached = _KV_CACHE.get((key, type(value), value))
        if cached is not None:
            return cached
    encoded_value = _any_value(value)
    payload = _len_field(1, key.encode()) + _len_field(2, encoded_value)
    n = len(payload)
    body = (_BYTE[n] if n < 0x80 else _varint(n)) + payload
    if cacheable:
        if len(_KV_CACHE) >= _KV_CACHE_SIZE:
            _KV_CACHE.clear()
        _KV_CACHE[(key, type(value), value)] = body
    return body


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    tag = _BYTE[(field << 3) | 2]
    parts = []
    for key, value in attributes.items():
        try:
            parts.append(tag + _key_value_body(key, value))
        except TypeError:
            continue  # the SDK logs and skips such an attribute too
    return b"".join(parts)


def _uint(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n) if n else b""


def _string(field: int, text: str | None) -> bytes:
    return _len_field(field, text.encode()) if text else b""


def _parent_flags(parent: SpanContext | None) -> bytes:
    return _FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL


def _trace_state(context: SpanContext) -> str:
    state = context.trace_state
    return ",".join(f"{k}={v}" for k, v in state.items()) if state else ""


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None  # an ended SDK span always has one
    parent = span.parent
    status = span.status
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        _string(3, _trace_state(context)),
        b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent is not None else b"",
        _string(5, span.name),
        b"\x30" + bytes((span.kind.value + 1,)),
        b"\x39" + _FIXED64(span.start_time or 0),
        b"\x41" + _FIXED64(span.end_time or 0),
        _attributes(9, span.attributes),
        _uint(10, span.dropped_attributes),
    ]
    for event in span.events:
        parts.append(
            _len_field(
                11,
                b"\x09"
                + _FIXED64(event.timestamp)
                + _string(2, event.name)
                + _attributes(3, event.attributes)
                + _uint(4, event.dropped_attributes),
            )
        )
    parts.append(_uint(12, span.dropped_events))
    for link in span.links:
        parts.append(
            _len_field(
                13,
                b"\x0a\x10"
                + link.context.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + link.context.span_id.to_bytes(8, "big")
                + _attributes(4, link.attributes)
                + _uint(5, link.dropped_attributes)
                + b"\x35"
                + _parent_flags(link.context),
            )
        )
    parts.append(_uint(14, span.dropped_links))
    parts.append(
        _len_field(15, _string(2, status.description) + _uint(3, status.status_code.value))
    )
    parts.append(b"\x85\x01" + _parent_flags(parent))  # field 16, fixed32: a two-byte key
    return _len_field(2, b"".join(parts))


class _Encoded:
    """Resources and scopes as encoded once, by the identity of the (immutable) SDK object."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}

    def resource(self, resource: Resource) -> bytes:
        known = self._resources.get(id(resource))
        if known is None or known[0] is not resource:
            known = (resource, _len_field(1, _attributes(1, resource.attributes)))
            self._resources[id(resource)] = known
        return known[1]

    def scope(self, scope: InstrumentationScope | None) -> bytes:
        known = self._scopes.get(id(scope))
        if known is None or known[0] is not scope:
            payload = b""
            if scope is not None:
                payload = (
                    _string(1, scope.name)
                    + _string(2, scope.version)
                    + _attributes(3, scope.attributes)
                )
            known = (scope, _len_field(1, payload))
            self._scopes[id(scope)] = known
        return known[1]


_ENCODED = _Encoded()


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` for ``spans``, grouped as the SDK groups
    them: by resource, then by instrumentation scope, in order of first appearance."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        by_scope = grouped.setdefault(span.resource, {})
        by_scope.setdefault(span.instrumentation_scope or None, []).append(_span(span))
    out = []
    for resource, by_scope in grouped.items():
        body = [_ENCODED.resource(resource)]
        for scope, encoded in by_scope.items():
            schema = scope.schema_url if scope is not None else None
            body.append(
                _len_field(2, _ENCODED.scope(scope) + b"".join(encoded) + _string(3, schema))
            )
        body.append(_string(3, resource.schema_url))
        out.append(_len_field(1, b"".join(body)))
    return b"".join(out)


class WireSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter (endpoint, headers, compression, TLS, retries and
    their timeout), with the batch encoded by ``encode_spans``.

    It leaves out the SDK's opt-in self-metrics (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``);
    failures are counted by ``safiri_telemetry``'s own ``telemetry_export_failures_total``.
    """

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        data = encode_spans(spans)
        if len(data) > self._max_request_size:
            # As the SDK does: a request the collector would refuse is not sent.
            _LOGGER.warning(
                "span batch of %d bytes not sent: larger than max_request_size (%d bytes)",
                len(data),
                self._max_request_size,
            )
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
