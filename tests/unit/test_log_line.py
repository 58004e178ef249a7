"""The JSON log line (safiri_telemetry's loguru sink): every field a caller binds comes out as
JSON, in the standard library's format (`"key": value`, which people and tests match on),
including a mapping keyed by numbers, an int past 64 bits and a lone surrogate; nothing a caller
logs is lost to redaction or the encoder."""

from __future__ import annotations

import datetime
import decimal
import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from loguru import logger

from safiri_telemetry._logging import configure_logging

pytestmark = pytest.mark.unit


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("ticketing", "INFO", out)
    try:
        yield out
    finally:
        logger.remove()
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_carries_every_bound_field_as_json(stream: io.StringIO) -> None:
    order = uuid.UUID("5b0c7c9e-8f7e-4b1a-9d1e-2f7a3c9d1e2f")
    at = datetime.datetime(2026, 12, 7, 13, 0, tzinfo=datetime.UTC)
    logger.bind(
        order_id=order, at=at, amount=decimal.Decimal("1500.00"), seats=(3, 4), by_seat={3: "a"}
    ).info("seats held")
    [raw] = stream.getvalue().splitlines()
    assert '"service": "ticketing"' in raw
    [line] = lines(stream)
    assert line["message"] == "seats held"
    assert line["service"] == "ticketing"
    assert line["level"] == "INFO"
    assert line["order_id"] == str(order)
    assert datetime.datetime.fromisoformat(str(line["at"])) == at
    assert line["amount"] == "1500.00"
    assert line["seats"] == [3, 4]
    assert line["by_seat"] == {"3": "a"}


def test_a_huge_number_and_a_lone_surrogate_are_written_too(stream: io.StringIO) -> None:
    logger.bind(big=2**70).info("a huge number")
    logger.bind(text="half a pair \ud800").info("a lone surrogate")
    logger.info("after them")
    big, surrogate, after = lines(stream)
    assert big["big"] == 2**70
    assert surrogate["text"] == "half a pair \ud800"
    assert after["message"] == "after them"
