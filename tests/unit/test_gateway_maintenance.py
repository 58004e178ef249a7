"""Maintenance mode in the gateway, against in-memory fakes and a real flag file.

New orders are refused while the flag is on; a retry of an order already answered is not a new
order and gets its stored answer; the flag is read where the order is placed (outside the
claim's span, so its evaluation is an event on the request's server span); the gauge reads the
flag at each scrape without counting or recording an evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_flags import Flags
from safiri_gateway.adapters.maintenance import MAINTENANCE_FLAG, MaintenanceGauge
from safiri_gateway.service_layer.place_order import OrdersPaused, PlaceOrder
from safiri_gateway.service_layer.ports import UpstreamReply
from safiri_gateway.settings import DEFAULT_MAINTENANCE_RETRY_AFTER_SECONDS, Settings
from safiri_telemetry import ConfigError
from tests.conftest import eventually
from tests.unit.test_flags import maintenance, write_flags
from tests.unit.test_gateway_place_order import ACCEPTED, ORDER, InMemoryStore, ScriptedTicketing

REPO = Path(__file__).resolve().parents[2]
KEYS = {"SAFIRI_API_KEYS": "alpha-key"}


class Switch:
    """A maintenance flag the test turns, counting how often it was read."""

    def __init__(self, on: bool = False) -> None:
        self.on = on
        self.reads = 0

    def __call__(self) -> bool:
        self.reads += 1
        return self.on


# ------------------------------------------------------------------------ the use case


async def test_with_maintenance_on_a_new_order_is_refused_and_ticketing_never_called() -> None:
    store, ticketing = InMemoryStore(), ScriptedTicketing(UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(store, ticketing, maintenance=Switch(on=True), retry_after_seconds=42)

    with pytest.raises(OrdersPaused) as paused:
        await place(ORDER, "client", "k1")

    assert paused.value.retry_after_seconds == 42
    assert ticketing.placed == []
    assert store.rows == {}  # the key is free: the same request goes through after maintenance


async def test_the_same_key_goes_through_once_maintenance_is_off() -> None:
    switch = Switch(on=True)
    ticketing = ScriptedTicketing(UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(InMemoryStore(), ticketing, maintenance=switch)
    with pytest.raises(OrdersPaused):
        await place(ORDER, "client", "k1")

    switch.on = False
    outcome = await place(ORDER, "client", "k1")

    assert (outcome.response.status, outcome.replayed) == (202, False)
    assert ticketing.placed == [ORDER.as_json()]


async def test_a_retry_of_an_order_accepted_before_maintenance_gets_its_stored_answer() -> None:
    """Not a new order: the client is told again what it was told (202, the same order)."""
    switch = Switch(on=False)
    ticketing = ScriptedTicketing(UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(InMemoryStore(), ticketing, maintenance=switch)
    first = await place(ORDER, "client", "k1")
    reads_before = switch.reads

    switch.on = True
    retry = await place(ORDER, "client", "k1")

    assert (retry.response, retry.replayed) == (first.response, True)
    assert retry.response.status == 202
    assert ticketing.placed == [ORDER.as_json()]
    assert switch.reads == reads_before  # a replay changes nothing: the flag is not asked


async def test_with_maintenance_off_orders_go_through_and_the_flag_is_asked_each_time() -> None:
    switch = Switch(on=False)
    ticketing = ScriptedTicketing(UpstreamReply(201, ACCEPTED), UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(InMemoryStore(), ticketing, maintenance=switch)

    await place(ORDER, "client", "k1")
    await place(ORDER, "client", "k2")

    assert switch.reads == 2
    assert len(ticketing.placed) == 2


# ---------------------------------------------------------------------------- settings


def test_retry_after_has_a_default_and_can_be_set() -> None:
    assert Settings.from_env(KEYS).maintenance_retry_after_seconds == (
        DEFAULT_MAINTENANCE_RETRY_AFTER_SECONDS
    )
    assert DEFAULT_MAINTENANCE_RETRY_AFTER_SECONDS > 0
    chosen = Settings.from_env({**KEYS, "SAFIRI_MAINTENANCE_RETRY_AFTER_SECONDS": "30"})
    assert chosen.maintenance_retry_after_seconds == 30


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1.5", "90000"])
def test_an_unusable_retry_after_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="SAFIRI_MAINTENANCE_RETRY_AFTER_SECONDS"):
        Settings.from_env({**KEYS, "SAFIRI_MAINTENANCE_RETRY_AFTER_SECONDS": value})


# --------------------------------------------------------------- the flag and the gauge


def _gauge(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("safiri_maintenance_mode")


def _evaluations(registry: CollectorRegistry) -> float:
    return (
        registry.get_sample_value(
            "feature_flag_evaluation_requests_total",
            {"feature_flag_key": MAINTENANCE_FLAG, "feature_flag_provider_name": "FlagdProvider"},
        )
        or 0.0
    )


async def test_the_gauge_follows_the_flag_file_at_each_scrape(
    flags: Flags, flag_file: Path, registry: CollectorRegistry
) -> None:
    registry.register(MaintenanceGauge(flags))
    assert _gauge(registry) == 0.0

    write_flags(flag_file, {**_others(flag_file), **maintenance("on")})

    async def on() -> bool:
        return _gauge(registry) == 1.0

    await eventually(on, timeout=5.0, what="safiri_maintenance_mode 1 after the edit")
    write_flags(flag_file, {**_others(flag_file), **maintenance("off")})

    async def off() -> bool:
        return _gauge(registry) == 0.0

    await eventually(off, timeout=5.0, what="safiri_maintenance_mode 0 after the second edit")


def test_a_scrape_is_not_an_evaluation(
    flags: Flags, registry: CollectorRegistry, spans: InMemorySpanExporter
) -> None:
    """Scrapes are traced requests too: reading the gauge must neither count as an evaluation
    nor add a feature_flag.evaluation event to the scrape's span."""
    registry.register(MaintenanceGauge(flags))
    with trace.get_tracer("test").start_as_current_span("GET /metrics"):
        for _ in range(3):
            assert _gauge(registry) == 0.0
    (span,) = spans.get_finished_spans()
    assert [e.name for e in span.events] == []
    assert _evaluations(registry) == 0.0
    # The same flag asked by the order path is counted: the check above can fail.
    flags.boolean(MAINTENANCE_FLAG, False)
    assert _evaluations(registry) == 1.0


def _others(flag_file: Path) -> dict[str, object]:
    """The file's other flags, kept as they are (an operator edits one flag, not the file)."""
    flags: dict[str, object] = json.loads(flag_file.read_text())["flags"]
    return {key: value for key, value in flags.items() if key != MAINTENANCE_FLAG}
