"""OTLP/JSON into the OTLP protobuf messages.

OTLP/JSON is the standard protobuf JSON mapping with one exception: trace and span ids are
hex strings, not base64 (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding).
``json_format`` only knows base64, so hex ids are rewritten before parsing. Base64 ids are
left alone: Tempo answers with them (it marshals with gogo's jsonpb).
"""

from __future__ import annotations

import base64
import re
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

__all__ = ["parse_otlp_json"]

M = TypeVar("M", bound=Message)
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})
_HEX_ID = re.compile(r"(?:[0-9a-fA-F]{16}){0,2}")  # empty, 8-byte or 16-byte ids


def _ids_as_base64(node: Any) -> Any:
    if isinstance(node, list):
        return [_ids_as_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ID_KEYS and isinstance(value, str) and _HEX_ID.fullmatch(value):
            out[key] = base64.b64encode(bytes.fromhex(value)).decode()
        else:
            out[key] = _ids_as_base64(value)
    return out


def parse_otlp_json(document: Any, message: M) -> M:
    """Fill ``message`` from a decoded OTLP/JSON document; unknown fields are ignored (spec).

    Raises ``ValueError`` when the document does not fit the message.
    """
    if not isinstance(document, dict):
        raise ValueError("an OTLP/JSON body must be a JSON object")
    try:
        json_format.ParseDict(_ids_as_base64(document), message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None
    return message
