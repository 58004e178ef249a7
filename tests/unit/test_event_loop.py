"""SAFIRI_EVENT_LOOP picks the event loop each service runs on: uvloop (default) or asyncio's."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from safiri_telemetry import ConfigError
from safiri_web import DEFAULT_EVENT_LOOP, event_loop


def test_uvloop_is_the_default() -> None:
    assert DEFAULT_EVENT_LOOP == "uvloop"
    name, loop = event_loop({})
    try:
        assert name == "uvloop"
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_can_be_asked_for_by_name() -> None:
    name, loop = event_loop({"SAFIRI_EVENT_LOOP": " Asyncio "})
    try:
        assert name == "asyncio"
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_an_unknown_loop_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"SAFIRI_EVENT_LOOP='tokio' is not one of asyncio, uvloop"
    ):
        event_loop({"SAFIRI_EVENT_LOOP": "tokio"})
