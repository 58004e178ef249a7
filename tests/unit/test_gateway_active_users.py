"""Active users: distinct customers who ordered in the last 5 minutes, on a clock the test turns.

The customer is the paying phone, kept only as a keyed hash; the gauge has no label at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from safiri_gateway.adapters import active_users
from safiri_gateway.adapters.active_users import (
    WINDOW,
    ActiveUsers,
    MemorySightings,
    active_users_gauge,
    customer_key,
)

pytestmark = pytest.mark.unit

SECRET = b"test-secret"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def tracked() -> tuple[ActiveUsers, MemorySightings, Clock, CollectorRegistry]:
    registry = CollectorRegistry()
    store = MemorySightings()
    clock = Clock()
    return ActiveUsers(store, active_users_gauge(registry), SECRET, clock), store, clock, registry


async def gauge_after_refresh(users: ActiveUsers, registry: CollectorRegistry) -> float | None:
    await users.refresh()
    return registry.get_sample_value("active_users")


async def test_the_gauge_is_the_distinct_customers_of_the_last_five_minutes() -> None:
    users, _, clock, registry = tracked()
    assert await gauge_after_refresh(users, registry) == 0
    for phone in ("254712345678", "254722000001", "254712345678"):  # one customer twice
        users.seen(phone)
    assert await gauge_after_refresh(users, registry) == 2

    clock.advance(minutes=4)
    users.seen("254733000002")
    users.seen("254722000001")  # seen again: stays active from now
    assert await gauge_after_refresh(users, registry) == 3

    clock.advance(minutes=1, seconds=1)  # the first sighting of 254712345678 is 5 min 1 s old
    assert await gauge_after_refresh(users, registry) == 2
    clock.advance(minutes=3)  # 4 min 1 s after the last two were seen
    assert await gauge_after_refresh(users, registry) == 2
    clock.advance(seconds=60)
    assert await gauge_after_refresh(users, registry) == 0


async def test_a_customer_seen_exactly_five_minutes_ago_still_counts() -> None:
    users, _, clock, registry = tracked()
    users.seen("254712345678")
    clock.advance(seconds=WINDOW.total_seconds())
    assert await gauge_after_refresh(users, registry) == 1


async def test_no_phone_is_kept_and_old_sightings_are_forgotten() -> None:
    users, store, clock, _ = tracked()
    users.seen("254712345678")
    await users.flush()
    (key,) = store.last_seen
    assert "254712345678" not in key.hex() and b"254712345678" not in key
    assert key == customer_key("254712345678", SECRET)
    assert customer_key("254712345678", b"another-secret") != key  # keyed, not a bare hash
    clock.advance(minutes=6)
    await users.refresh()
    assert store.last_seen == {}


class Counting(MemorySightings):
    """Counts the store's writes; ``down`` makes each write fail as an unreachable database."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[dict[bytes, datetime]] = []
        self.down = False

    async def record_many(self, sightings: Mapping[bytes, datetime]) -> None:
        if self.down:
            raise OSError("database unreachable")
        self.writes.append(dict(sightings))
        await super().record_many(sightings)


def counted() -> tuple[ActiveUsers, Counting, Clock, CollectorRegistry]:
    registry = CollectorRegistry()
    store, clock = Counting(), Clock()
    return ActiveUsers(store, active_users_gauge(registry), SECRET, clock), store, clock, registry


async def test_an_order_touches_no_store_and_a_flush_writes_every_sighting_at_once() -> None:
    users, store, clock, registry = counted()
    for n in range(50):
        users.seen(f"2547{n % 20:08d}")  # 20 customers, some twice
        clock.advance(seconds=0.01)
    assert store.writes == []  # nothing on the order path
    await users.flush()
    assert len(store.writes) == 1
    (written,) = store.writes
    assert len(written) == 20
    # A customer seen twice is written once, with the later time.
    assert written[customer_key("254700000000", SECRET)] == clock.now - timedelta(seconds=0.1)
    await users.flush()  # nothing new: no write
    assert len(store.writes) == 1
    assert await gauge_after_refresh(users, registry) == 20


async def test_a_flush_the_store_cannot_take_keeps_the_sightings_for_the_next() -> None:
    users, store, _, registry = counted()
    store.down = True
    users.seen("254712345678")
    await users.flush()  # logged, not raised
    assert users.errors == 1
    users.seen("254722000001")
    store.down = False
    assert await gauge_after_refresh(users, registry) == 2  # both reached the store
    assert len(store.writes) == 1


async def test_past_the_bound_new_customers_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(active_users, "MAX_PENDING", 3)
    users, _, _, registry = counted()
    for n in range(5):
        users.seen(f"2547{n:08d}")
    users.seen("254700000000")  # already noted: refreshed, not dropped
    assert users.dropped == 2
    assert await gauge_after_refresh(users, registry) == 3


def test_the_gauge_has_no_label() -> None:
    registry = CollectorRegistry()
    active_users_gauge(registry)
    (family,) = [f for f in registry.collect() if f.name == "active_users"]
    assert family.type == "gauge"
    assert all(sample.labels == {} for sample in family.samples)
