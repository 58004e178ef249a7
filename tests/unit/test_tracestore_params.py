"""Ids told apart by shape, durations, the recent-traces filter, and the store's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from safiri_telemetry import ConfigError
from safiri_tracestore.params import RecentQuery, is_order_id, is_trace_id, parse_duration
from safiri_tracestore.settings import StoreSettings

pytestmark = pytest.mark.unit


def test_order_ids_and_trace_ids_are_told_apart_by_shape() -> None:
    assert is_order_id("56d8b732-1c4e-4f7a-9d1e-0a2b3c4d5e6f")
    assert not is_trace_id("56d8b732-1c4e-4f7a-9d1e-0a2b3c4d5e6f")
    assert is_trace_id("86eb6b9bdf6f8c51aa7eb7c988a82f4b")
    assert is_trace_id("86EB6B9BDF6F8C51AA7EB7C988A82F4B")
    assert not is_order_id("86eb6b9bdf6f8c51aa7eb7c988a82f4b")
    for neither in ("", "0" * 32, "86eb6b9b", "g" * 32, "56d8b7321c4e4f7a9d1e0a2b3c4d5e6f00000"):
        assert not (is_order_id(neither) or is_trace_id(neither)), neither


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("90s", 90), ("2h", 7200), ("1d", 86400), ("250ms", 0.25), ("45", 45)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "5w", "1e3"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_recent_traces_query_reads_its_parameters_strictly() -> None:
    query = RecentQuery.from_params({"failed": "true", "since": "10m", "limit": "5"})
    assert (query.outcome, query.purchases, query.since_s, query.limit) == ("failed", True, 600, 5)
    assert RecentQuery.from_params({}) == RecentQuery(None, 3600, 50, purchases=None)
    assert RecentQuery.from_params(query.to_params()) == query
    other = RecentQuery.from_params({"outcome": "failed", "purchases": "false"})
    assert (other.outcome, other.purchases) == ("failed", False)
    assert other.title == "failed traces without an order"
    assert RecentQuery.from_params(other.to_params()) == other
    assert RecentQuery.from_params({"outcome": "refused"}).title == "refused orders"
    for bad in (
        {"failed": "maybe"},
        {"outcome": "lost"},
        {"purchases": "some"},
        {"failed": "true", "outcome": "refused"},
        {"limit": "0"},
        {"limit": "x"},
        {"since": "soon"},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RecentQuery.from_params(bad)


def test_settings_default_to_the_standard_port_and_a_file_under_var() -> None:
    settings = StoreSettings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 4318)
    assert settings.path == Path("var/traces.sqlite3")
    assert (settings.retention_hours, settings.max_spans) == (24, 1_000_000)


def test_settings_come_from_safiri_trace_store_variables() -> None:
    settings = StoreSettings.from_env(
        {
            "SAFIRI_TRACE_STORE_HOST": "0.0.0.0",
            "SAFIRI_TRACE_STORE_PORT": "14318",
            "SAFIRI_TRACE_STORE_PATH": "/tmp/t.sqlite3",
            "SAFIRI_TRACE_STORE_RETENTION_HOURS": "1.5",
            "SAFIRI_TRACE_STORE_MAX_SPANS": "1000",
        }
    )
    assert (settings.host, settings.port, settings.path) == (
        "0.0.0.0",
        14318,
        Path("/tmp/t.sqlite3"),
    )
    assert (settings.retention_s, settings.max_spans) == (5400, 1000)


def test_every_bad_setting_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        StoreSettings.from_env(
            {"SAFIRI_TRACE_STORE_PORT": "http", "SAFIRI_TRACE_STORE_MAX_SPANS": "0"}
        )
    assert "SAFIRI_TRACE_STORE_PORT" in str(raised.value)
    assert "SAFIRI_TRACE_STORE_MAX_SPANS" in str(raised.value)
