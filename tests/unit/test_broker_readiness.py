"""/readyz's broker check: a robust connection that is reconnecting is not ready."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from safiri_messaging import broker_connected

pytestmark = pytest.mark.unit


class FakeConnection:
    def __init__(self, *, closed: bool, transport: object | None, connected: bool) -> None:
        self.is_closed = closed
        self.transport = transport
        self.connected = asyncio.Event()
        if connected:
            self.connected.set()


def check(connection: FakeConnection) -> None:
    broker_connected(cast(Any, connection))


def test_a_connected_connection_is_ready() -> None:
    check(FakeConnection(closed=False, transport=object(), connected=True))


@pytest.mark.parametrize(
    ("connection", "reason"),
    [
        (FakeConnection(closed=True, transport=None, connected=False), "closed"),
        # What aio-pika's robust connection looks like while the broker is down: not closed.
        (FakeConnection(closed=False, transport=None, connected=False), "reconnecting"),
        (FakeConnection(closed=False, transport=object(), connected=False), "reconnecting"),
    ],
)
def test_a_closed_or_reconnecting_connection_is_not(
    connection: FakeConnection, reason: str
) -> None:
    with pytest.raises(ConnectionError, match=reason):
        check(connection)
