"""Every alert fired live under the fault it is for, and every dashboard panel checked by value.

A suite of its own (vhost, databases, OTLP receiver) sells tickets in the background while a
real Prometheus evaluates the repository's rules with time running 60 times faster, every
duration in proportion (``fast_rules``: ``[1h]`` → 60 s, ``for: 15m`` → 15 s, "older than
900 s" → 15 s). Each test injects one fault, waits for its alert to go pending (when the rule
has a ``for``), then firing, heals the fault and waits for the alert to resolve. The
multi-window burn-rate alerts are driven by the ratio of failed purchases: a three-second
total outage after a minute of healthy sales must leave the fast burn quiet although its short
window crosses the threshold, and one purchase in ten never paid must fire the slow burn and
not the fast one.

The alerts this module does not fire are fired by the chaos experiments' short forms
(tests/e2e/test_chaos_experiments.py); a test checks that the two together cover every alert.

Then every panel of the three dashboards is evaluated over the whole run and must show what it
declares (a value above 0, a finite ratio, a state), with its fallback terms removed so that a
typo in a matcher fails; every recording rule likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from safiri_chaos.experiment import load_experiment, safiri_extension
from safiri_chaos.flagfile import set_default_variant
from safiri_chaos.prometheus import running_prometheus, write_rules
from safiri_messaging import EVENTS_EXCHANGE
from safiri_suite.suite import SERVICES
from tests.conftest import eventually, rabbitmqctl
from tests.deploy.test_dashboards import QUERIES, evaluable

from .conftest import Running, suite_of_its_own
from .live_prometheus import RULES, scrape_config

pytestmark = pytest.mark.e2e

ADMIN = {"X-Simulator-Admin-Key": "safiri-sim-admin"}
HEALTHY_PHONE = "254712345678"
NEVER_PAYS = "254700009999"  # the simulator's customer who never answers the STK push
FAILING_PHONES = ("254700000001", "254700001032", "254700001037", "254700002001")
CHAOS = Path(__file__).resolve().parents[2] / "chaos"
ALERT_RULES = {
    rule["alert"]: rule
    for path in RULES
    for group in yaml.safe_load(path.read_text())["groups"]
    for rule in group["rules"]
    if "alert" in rule
}


# ------------------------------------------------------------------------------- the shop


@dataclass
class Shop:
    """Purchases in the background at ``rate`` per second; each test may steer them."""

    running: Running
    trips: list[str]
    rate: float = 8.0
    phone: Callable[[int], str] = lambda n: HEALTHY_PHONE
    trip: str | None = None  # every purchase on this trip while set
    answered: list[int] = field(default_factory=list)
    _n: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        for trip_id in itertools.cycle(self.trips):
            task = asyncio.create_task(self._buy(self.trip or trip_id, next(self._n)))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            await asyncio.sleep(1 / self.rate)

    async def _buy(self, trip_id: str, n: int) -> None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            status, _, _ = await self.running.place_order(trip_id, phone=self.phone(n))
            self.answered.append(status)

    def accepted(self) -> int:
        return self.answered.count(202)


# ------------------------------------------------------------------------ the alert watch


@dataclass
class AlertWatch:
    """Every state change of every alert, polled from Prometheus five times a second."""

    http: aiohttp.ClientSession
    url: str
    changes: dict[str, list[str]] = field(default_factory=dict)

    def state(self, name: str) -> str:
        return self.changes.get(name, ["inactive"])[-1]

    async def run(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.get(f"{self.url}/api/v1/alerts") as response:
                    found = (await response.json())["data"]["alerts"]
                now: dict[str, str] = {}
                for alert in found:
                    name, state = alert["labels"]["alertname"], alert["state"]
                    if now.get(name) != "firing":  # the worst of the alert's series
                        now[name] = state
                for name in set(self.changes) | set(now):
                    state = now.get(name, "inactive")
                    if self.state(name) != state:
                        self.changes.setdefault(name, ["inactive"]).append(state)
            await asyncio.sleep(0.2)

    async def until(self, name: str, state: str, timeout: float) -> None:
        async def reached() -> bool:
            return self.state(name) == state

        try:
            await eventually(reached, timeout=timeout, interval=0.1, what=f"{name} {state}")
        except pytest.fail.Exception:
            async with self.http.get(f"{self.url}/api/v1/alerts") as response:
                found = (await response.json())["data"]["alerts"]
            now = [a for a in found if a["labels"]["alertname"] == name]
            print(f"\n{name} is not {state}; its alerts now: {now}")
            errors = (
                "sum by (job, http_route, http_response_status_code) (rate("
                'http_server_request_duration_seconds_count{http_response_status_code=~"5.."}[10s]))'
            )
            async with self.http.get(f"{self.url}/api/v1/query", params={"query": errors}) as r:
                print(f"5xx answers per second: {(await r.json())['data']['result']}")
            raise


@dataclass
class Live:
    running: Running
    prometheus: str
    shop: Shop
    watch: AlertWatch
    vhost: str
    started: float  # loop time when Prometheus started
    fired: dict[str, list[str]] = field(default_factory=dict)

    def seconds_so_far(self) -> int:
        return math.ceil(asyncio.get_running_loop().time() - self.started) + 2

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with self.running.http.get(
            f"{self.prometheus}/api/v1/query", params={"query": expr}
        ) as response:
            body = await response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


async def _on_the_road(running: Running) -> None:
    """A bus on the road now, so that the active-buses panel has one to count: between two
    towns the fleet simulator can place (it skips a trip to a town without coordinates, and
    with it this bus, as it did with Naivasha; the panel then counted a bus only at the hours
    when a seeded trip happened to be under way)."""
    conn = await asyncpg.connect(running.config.database_url("ticketing"))
    try:
        await conn.execute(
            "INSERT INTO trips (trip_id, origin, destination, departs_at, arrives_at, bus_id,"
            " fare, seats_total) VALUES ($1::uuid, 'Nairobi', 'Nakuru', now() - interval"
            " '1 hour', now() + interval '3 hours', 'KROAD01', 500, 10)",
            str(uuid.uuid4()),
        )
    finally:
        await conn.close()


async def _buses_counted(running: Running) -> float | None:
    """ticketing's active_buses_count once it counts a bus, else None."""
    async with running.http.get(running.url("ticketing", "/metrics")) as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "active_buses_count" and sample.value > 0:
                return sample.value
    return None


@pytest_asyncio.fixture(scope="module")
async def live(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    tmp = tmp_path_factory.mktemp("signals-live")
    async with suite_of_its_own(
        run_id,
        "signals",
        tmp / "logs",
        SAFIRI_PAYMENT_PREFETCH="4",  # a consumer a slow provider can hold up
        OTEL_BSP_EXPORT_TIMEOUT="1000",  # a refused export gives up within a second
        OTEL_BSP_SCHEDULE_DELAY="200",
        # The fleet simulator asks for the trips under way every minute by default, and its
        # first ask can come before ticketing answers (or before the bus below is on the
        # road): the active-buses panel then counted none for the first minute or more, and
        # passed only when the tests before it took longer than that.
        SAFIRI_FLEET_SIM_TRIPS_REFRESH_SECONDS="1",
        SAFIRI_FLEET_SIM_FIX_INTERVAL_SECONDS="1",
    ) as running:
        await _on_the_road(running)
        await eventually(lambda: _buses_counted(running), timeout=30, what="the bus counted")
        # Trips of their own, big enough for the whole run: a sold-out trip answers 409 and
        # fails nothing, which would leave the outage tests without purchases to fail.
        trips = [await running.add_trip(seats=3000) for _ in range(4)]
        rules = write_rules(tmp / "rules", fast=True)
        async with running_prometheus(scrape_config(running), rules, tmp) as url:
            started = asyncio.get_running_loop().time()
            shop = Shop(running, trips)
            watch = AlertWatch(running.http, url)
            tasks = [asyncio.create_task(shop.run()), asyncio.create_task(watch.run())]
            vhost = running.config.amqp_url.rsplit("/", 1)[1]
            live = Live(running, url, shop, watch, vhost, started)

            async def scraped_the_bus() -> list[dict[str, Any]] | None:
                # As the panel tests read it: over the run at 1 s steps (an instant query
                # sees a scrape a subquery's last step may not have reached yet).
                return (
                    await live.query("max_over_time((max(active_buses_count) > 0)[5s:1s])") or None
                )

            try:
                # Every panel test sees the run from here on, whichever runs first.
                await eventually(scraped_the_bus, timeout=30, what="the bus scraped")
                yield live
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


async def fires_and_resolves(
    live: Live,
    names: tuple[str, ...],
    inject: Callable[[], Awaitable[None]],
    heal: Callable[[], Awaitable[None]],
    *,
    fire_timeout: float = 60,
    resolve_timeout: float = 60,
) -> None:
    """Inject, wait for every alert of ``names`` to fire, heal, wait for them to resolve; then
    each must have gone (pending →) firing → inactive, pending only when its rule has a
    ``for``."""
    for name in names:
        await live.watch.until(name, "inactive", timeout=resolve_timeout)
    marks = {name: len(live.watch.changes.get(name, ["inactive"])) for name in names}
    await inject()
    try:
        for name in names:
            await live.watch.until(name, "firing", timeout=fire_timeout)
    finally:
        await heal()
    for name in names:
        await live.watch.until(name, "inactive", timeout=resolve_timeout)
    for name in names:
        seen = live.watch.changes[name][marks[name] :]
        held = "for" in ALERT_RULES[name]
        first = seen.index("firing")
        assert seen[-1] == "inactive", (name, seen)
        if held:
            assert "pending" in seen[:first], f"{name} fired without going pending: {seen}"
        else:
            assert "pending" not in seen, f"{name} has no `for` but went pending: {seen}"
        live.fired[name] = ["inactive", *seen]
        print(f"\n{name}: {' → '.join(['inactive', *seen])}")


async def _set_faults(live: Live, **faults: object) -> None:
    url = live.running.url("mpesa-simulator", "/simulator/faults")
    http = live.running.http
    method = (
        http.put(url, json=faults, headers=ADMIN) if faults else http.delete(url, headers=ADMIN)
    )
    async with method as response:
        assert response.status == 200, await response.text()


# ----------------------------------------------------------------------------- the alerts


@pytest.mark.timeout(300)
async def test_one_purchase_in_ten_never_paid_fires_the_slow_burn_not_the_fast(live: Live) -> None:
    """First, while the 6-hour window (360 s) still holds only this run: one purchase in ten
    never paid (10 %) crosses the slow burn's 6 % on both its windows and stays under the
    fast burn's 14.4 %."""
    fast = "SafiriPurchaseSLOBurnFast"
    mark = len(live.watch.changes.get(fast, ["inactive"]))

    async def one_in_ten() -> None:
        live.shop.phone = lambda n: NEVER_PAYS if n % 10 == 0 else HEALTHY_PHONE

    async def all_pay() -> None:
        live.shop.phone = lambda n: HEALTHY_PHONE

    await fires_and_resolves(
        live,
        ("SafiriPurchaseSLOBurnSlow",),
        one_in_ten,
        all_pay,
        fire_timeout=150,
        resolve_timeout=90,
    )
    seen = live.watch.changes.get(fast, ["inactive"])[mark:]
    assert seen == [], f"{fast} went {seen} at a 10 % error ratio (its threshold is 14.4 %)"


async def test_a_poison_message_fires_dead_lettered_until_the_dead_letter_queue_is_emptied(
    live: Live,
) -> None:
    running = live.running
    await eventually(lambda: _at_least(live.shop, 10), what="healthy purchases first")
    # A forged provider callback, for the rejected-callbacks panel.
    async with running.http.post(
        running.url("payment", f"/callbacks/mpesa/{uuid.uuid4()}?token=forged"),
        json={
            "Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": 0, "ResultDesc": "ok"}}
        },
    ) as response:
        assert response.status == 403
    for phone in FAILING_PHONES:  # a failed payment of each kind, for the payment panels
        status, _, _ = await running.place_order(live.shop.trips[0], phone=phone)
        assert status == 202
    connection = await aio_pika.connect(running.config.amqp_url)

    async def poison() -> None:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(b"not json", message_id=str(uuid.uuid4())),
            routing_key="payment.requested",
            mandatory=True,
        )

    async def purge() -> None:  # what the runbook's operator does once the message is read
        channel = await connection.channel()
        queue = await channel.declare_queue("payment.requests.dlq", passive=True)
        await queue.purge()

    async with connection:
        await fires_and_resolves(live, ("SafiriMessagesDeadLettered",), poison, purge)


async def test_a_collector_outage_fires_telemetry_export_failing(live: Live) -> None:
    """Each service counts exactly the spans the collector refused and never got again."""
    running, spans = live.running, live.running.spans
    failures = "telemetry_export_failures_total"
    before = {s: await running.metric(s, failures, signal="traces") for s in SERVICES}

    async def down() -> None:
        spans.refused_spans.clear()
        spans.unavailable = True

    async def up() -> None:
        spans.unavailable = False

    await fires_and_resolves(live, ("SafiriTelemetryExportFailing",), down, up)

    async def counted_exactly() -> dict[str, tuple[float, int]] | None:
        found = {
            s: (
                await running.metric(s, failures, signal="traces") - before[s],
                len(spans.never_received(s)),
            )
            for s in SERVICES
        }
        return found if all(n == d for n, d in found.values()) else None

    counts = await eventually(
        counted_exactly, timeout=20, what="each service's failure count to equal its dropped spans"
    )
    print(f"\nspans dropped (counted, refused and never resent) by service: {counts}")
    assert sum(dropped for _, dropped in counts.values()) > 0, counts  # not equal at zero


async def test_a_hung_ticketing_fires_target_down_and_the_gateways_error_ratio(
    live: Live,
) -> None:
    """Ticketing stops answering: Prometheus cannot scrape it, and the gateway answers every
    purchase with a 5xx once its upstream timeout (3 s) runs out."""
    process = live.running.suite.processes["ticketing"]

    async def hang() -> None:
        os.kill(process.pid, signal.SIGSTOP)

    async def wake() -> None:
        os.kill(process.pid, signal.SIGCONT)

    await fires_and_resolves(
        live, ("SafiriTargetDown", "SafiriHighErrorRatio"), hang, wake, resolve_timeout=90
    )
    gateway_5xx = (
        f'safiri:http_server_5xx_ratio:rate5m{{job="safiri-gateway"}}[{live.seconds_so_far()}s]'
    )
    assert await live.query(f"max_over_time({gateway_5xx}) > 0.05"), "not the gateway's ratio"


@pytest.mark.timeout(300)
async def test_a_short_total_outage_leaves_the_fast_burn_quiet(live: Live) -> None:
    """A total outage after a minute of healthy sales, healed as soon as the 5-minute window
    (5 s) crosses 14.4 %: the 1-hour window (60 s) stays below it, so the page must not go out.

    The provider client retries, so a very short outage fails no purchase at all; this one
    lasts as long as it takes to fail enough of them and no longer.
    """
    name = "SafiriPurchaseSLOBurnFast"
    healthy = "safiri:purchase_errors:ratio_rate1h < 0.01"

    async def a_healthy_minute() -> bool:  # a whole 1-hour window (60 s), nearly error-free
        return live.seconds_so_far() >= 70 and await _any(live, healthy)

    await eventually(a_healthy_minute, timeout=150, what="a minute of healthy sales")
    mark = len(live.watch.changes.get(name, ["inactive"]))
    short = "safiri:purchase_errors:ratio_rate5m > (14.4 * 0.01)"
    started = asyncio.get_running_loop().time()
    await _set_faults(live, outage="http_503")
    try:
        await eventually(lambda: _any(live, short), timeout=30, what="the short window to cross")
    finally:
        await _set_faults(live)
    lasted = asyncio.get_running_loop().time() - started
    print(f"\n{name}: the outage lasted {lasted:.1f} s")
    assert lasted < 15, "not a short outage any more"
    # Until the short window is back below the threshold, the long one must stay below it.
    while await _any(live, short):
        assert await live.query("safiri:purchase_errors:ratio_rate1h < (14.4 * 0.01)")
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # longer than the rule's `for` (2 m → 2 s) after the last crossing
    seen = live.watch.changes.get(name, ["inactive"])[mark:]
    assert seen == [], f"{name} went {seen} on a {lasted:.0f}-second outage"


async def test_a_sustained_outage_pages_the_fast_burn_and_provider_failing(live: Live) -> None:
    async def outage() -> None:
        await _set_faults(live, outage="http_503")

    async def heal() -> None:
        await _set_faults(live)

    await fires_and_resolves(
        live,
        ("SafiriPaymentProviderFailing", "SafiriPurchaseSLOBurnFast"),
        outage,
        heal,
        resolve_timeout=90,
    )


async def test_a_locked_trip_saturates_the_pool_and_slows_responses(live: Live) -> None:
    """A transaction that holds a trip's row lock (a stuck migration, a hung admin session):
    every purchase of the trip waits for it holding a pool connection."""
    trip_id = await live.running.add_trip(seats=2000)
    conn = await asyncpg.connect(live.running.config.database_url("ticketing"))
    transaction = conn.transaction()

    async def lock() -> None:
        await transaction.start()
        await conn.execute("SELECT 1 FROM trips WHERE trip_id = $1::uuid FOR UPDATE", trip_id)
        live.shop.trip = trip_id

    async def unlock() -> None:
        live.shop.trip = None
        await transaction.rollback()

    try:
        await fires_and_resolves(
            live,
            ("SafiriDatabasePoolSaturated", "SafiriSlowResponses"),
            lock,
            unlock,
            resolve_timeout=90,
        )
    finally:
        await conn.close()


async def test_an_order_held_by_a_stuck_transaction_fires_orders_stuck_pending(
    live: Live,
) -> None:
    """The order's row is locked: the sweeper skips it (SKIP LOCKED) and it stays pending."""
    running = live.running
    status, body, _ = await running.place_order(live.shop.trips[0], phone=NEVER_PAYS)
    assert status == 202
    conn = await asyncpg.connect(running.config.database_url("ticketing"))
    transaction = conn.transaction()

    async def hold() -> None:
        await transaction.start()
        locked = await conn.fetchval(
            "SELECT order_id FROM orders WHERE order_id = $1::uuid"
            " AND status = 'PENDING_PAYMENT' FOR UPDATE",
            body["order_id"],
        )
        assert locked is not None, "the order settled before it could be held"

    async def release() -> None:
        await transaction.rollback()

    try:
        await fires_and_resolves(
            live, ("SafiriOrdersStuckPending",), hold, release, resolve_timeout=60
        )
    finally:
        await conn.close()
    final = await running.final_order(body["order_id"])
    assert final["status"] == "EXPIRED"


async def test_a_slow_provider_backs_the_payment_queue_up(live: Live) -> None:
    """Payment takes 4 requests at a time; at 1.5 s a push it keeps up with under 3/s."""
    shop = live.shop

    async def slow() -> None:
        await _set_faults(live, latency_seconds=1.5)
        shop.rate = 20

    async def heal() -> None:
        shop.rate = 8
        await _set_faults(live)

    async def fired_then_redeliver() -> None:
        await slow()
        # While requests are in flight, the broker drops every connection of the vhost: the
        # unacknowledged requests are delivered again (the redeliveries panel).
        await live.watch.until("SafiriQueueBacklogGrowing", "pending", timeout=60)
        rabbitmqctl("close_all_connections", "--vhost", live.vhost, "--limit", "100", "test")

    await fires_and_resolves(
        live, ("SafiriQueueBacklogGrowing",), fired_then_redeliver, heal, resolve_timeout=120
    )


async def test_a_broker_that_refuses_publishes_fires_outbox_not_draining(live: Live) -> None:
    async def refuse() -> None:
        rabbitmqctl("set_permissions", "-p", live.vhost, "guest", ".*", "^$", ".*")
        # An open channel keeps the permissions it was opened with: make every client
        # reconnect under the new ones.
        rabbitmqctl("close_all_connections", "--vhost", live.vhost, "--limit", "100", "test")

    async def allow() -> None:
        rabbitmqctl("set_permissions", "-p", live.vhost, "guest", ".*", ".*", ".*")

    await fires_and_resolves(live, ("SafiriOutboxNotDraining",), refuse, allow)


async def test_maintenance_mode_fires_its_info_alert_until_the_flag_is_off(live: Live) -> None:
    """Last of the faults: new orders are refused while it is on (the shop's purchases get 503),
    which must page nothing but the info alert (the gateway's deliberate 503s are left out of
    SafiriHighErrorRatio)."""
    flags_file = live.running.config.flags_file
    assert flags_file is not None, "the suite runs without a flag file of its own"

    async def on() -> None:
        set_default_variant(flags_file, "maintenance-mode", "on")

    async def off() -> None:
        set_default_variant(flags_file, "maintenance-mode", "off")

    refused_before = live.shop.answered.count(503)
    error_ratio_seen = len(live.watch.changes.get("SafiriHighErrorRatio", []))
    try:
        await fires_and_resolves(live, ("SafiriMaintenanceMode",), on, off)
    finally:
        await off()
    assert live.shop.answered.count(503) > refused_before, "no order was refused while it was on"
    since = live.watch.changes.get("SafiriHighErrorRatio", [])[error_ratio_seen:]
    assert not since, f"the maintenance 503s moved SafiriHighErrorRatio: {since}"


def test_every_alert_is_fired_live_here_or_by_a_chaos_experiment() -> None:
    here = set(FIRED_HERE)
    by_chaos = {
        safiri_extension(load_experiment(path))["expects"].get("alert")
        for path in [*CHAOS.glob("*.json"), *CHAOS.glob("cluster/*.json")]
    } - {None}
    assert set(ALERT_RULES) <= here | by_chaos, set(ALERT_RULES) - here - by_chaos


FIRED_HERE = {
    "SafiriMessagesDeadLettered",
    "SafiriTelemetryExportFailing",
    "SafiriTargetDown",
    "SafiriPurchaseSLOBurnSlow",
    "SafiriPaymentProviderFailing",
    "SafiriHighErrorRatio",
    "SafiriPurchaseSLOBurnFast",
    "SafiriDatabasePoolSaturated",
    "SafiriSlowResponses",
    "SafiriOrdersStuckPending",
    "SafiriQueueBacklogGrowing",
    "SafiriOutboxNotDraining",
    "SafiriMaintenanceMode",
}


async def test_each_alert_named_here_went_through_its_states(live: Live) -> None:
    assert set(live.fired) == FIRED_HERE, FIRED_HERE - set(live.fired)


# ----------------------------------------------------------------------------- dashboards

ABOVE_ZERO = "above 0"
FINITE = "finite"


@dataclass(frozen=True)
class Expect:
    kind: str = ABOVE_ZERO  # the panel showed a value above 0 at some point of the run
    final: float | None = None  # and every series ends at this value
    peak: float | None = None  # and the highest value of the run is this one
    # One series per label value (route, queue): a series whose label saw no traffic in any
    # window reads NaN all along, as the panel shows it (no data); the others must be finite.
    sparse: bool = False


# What a panel must show besides "a value above 0 at some point of the run".
EXPECT: dict[str, Expect] = {
    # Ratios: a finite number in [0, 1] (failures are checked by the failure-ratio panels).
    "control-tower/Payment success ratio (5m)/A": Expect(FINITE),
    "payments/Payment success ratio (5m)/A": Expect(FINITE),
    # A quantile per route: NaN for a route with no request in a window (a route asked once).
    "engine-room/p95 latency by route/A": Expect(sparse=True),
    "payments/Payment service latency p95 by route (exemplars open the trace)/A": Expect(
        sparse=True
    ),
    # Per canary arm: the canary gets about 1 % of orders, so its series is NaN (0 / 0) in
    # windows without one; the baseline's is finite all along.
    "payments/Canary vs baseline: payment error ratio (10m)/A": Expect(FINITE, sparse=True),
    "payments/Canary vs baseline: STK push p95 (10m)/A": Expect(sparse=True),
    # Every service was scraped at the end, and the hung one was not for a while.
    "engine-room/Scrape targets/A": Expect(final=1.0),
    # The breaker opened during the outage (2) and is closed again (0).
    "payments/Provider circuit breaker/A": Expect(final=0.0, peak=2.0),
}
# Panels that may show only zero here, and why.
ZERO_ONLY: dict[str, str] = {}


def without_fallbacks(expr: str) -> str:
    """``expr`` without ``or vector(0)`` and ``(failures or total * 0)`` fallback terms."""
    expr = re.sub(r"\s+or\s+vector\(0\)", "", expr)
    out, i = "", 0
    while (at := expr.find(" or ", i)) >= 0:
        depth, end = 0, at
        for end in range(at, len(expr)):  # the right operand ends where its group closes
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            if depth < 0:
                break
        right = expr[at + 4 : end]
        if re.search(r"\*\s*0\s*$", right):
            out, i = out + expr[i:at], end
        else:
            out, i = out + expr[i : at + 4], at + 4
    return out + expr[i:]


def test_without_fallbacks_strips_only_the_fallback_terms() -> None:
    assert without_fallbacks('(sum(a{x="1"}) or sum(a) * 0) / sum(a)') == (
        '(sum(a{x="1"})) / sum(a)'
    )
    assert without_fallbacks("(sum(rate(b[5m])) or vector(0)) + c") == "(sum(rate(b[5m]))) + c"
    assert without_fallbacks("a or b") == "a or b"


async def _over_run(live: Live, func: str, expr: str) -> list[float]:
    window = f"[{live.seconds_so_far()}s:1s]"
    return [float(s["value"][1]) for s in await live.query(f"{func}(({expr}){window})")]


@pytest.mark.parametrize(("ident", "expr", "variables"), QUERIES, ids=[q[0] for q in QUERIES])
async def test_every_dashboard_panel_shows_what_it_declares(
    live: Live, ident: str, expr: str, variables: list[str]
) -> None:
    if ident in ZERO_ONLY:
        pytest.skip(f"proven only at zero: {ZERO_ONLY[ident]}")
    expect = EXPECT.get(ident, Expect())
    shown = evaluable(expr, variables)
    for form in dict.fromkeys([shown, without_fallbacks(shown)]):
        peaks = await _over_run(live, "max_over_time", form)
        assert peaks, f"{ident}: no data over the run for {form}"
        if expect.sparse:
            peaks = [v for v in peaks if not math.isnan(v)]
            assert peaks, f"{ident}: NaN in every series for {form}"
        assert all(math.isfinite(v) for v in peaks), f"{ident}: {peaks} for {form}"
        if expect.kind == ABOVE_ZERO:
            assert max(peaks) > 0, f"{ident}: never above 0 ({peaks}) for {form}"
        if expect.peak is not None:
            assert max(peaks) == expect.peak, f"{ident}: peak {max(peaks)}, not {expect.peak}"
    if expect.final is not None:
        finals = [float(s["value"][1]) for s in await live.query(shown)]
        assert finals and all(v == expect.final for v in finals), (ident, finals)
    print(f"\n{ident}: expected {expect.kind}, observed peak {max(peaks):g}")


def _recording_rules() -> list[tuple[str, str]]:
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [(r["record"], r["expr"]) for r in group["rules"] if "record" in r]
    return out


@pytest.mark.parametrize(
    ("name", "expr"), _recording_rules(), ids=[r[0] for r in _recording_rules()]
)
async def test_every_recording_rule_as_shipped_rises_above_zero_on_the_run(
    live: Live, name: str, expr: str
) -> None:
    """The shipped expression (not the time-scaled copy) without its fallback terms."""
    peaks = await _over_run(live, "max_over_time", without_fallbacks(expr))
    assert peaks and all(math.isfinite(v) for v in peaks), (name, peaks)
    assert max(peaks) > 0, (name, peaks)
    print(f"\n{name}: observed peak {max(peaks):g}")


def _alert_expressions() -> list[tuple[str, str]]:
    return [(name, rule["expr"]) for name, rule in ALERT_RULES.items()]


@pytest.mark.parametrize(("name", "expr"), _alert_expressions(), ids=list(ALERT_RULES))
async def test_every_alert_expression_evaluates_on_real_data(
    live: Live, name: str, expr: str
) -> None:
    await live.query(expr)  # asserts status success


async def _at_least(shop: Shop, n: int) -> bool:
    return shop.accepted() >= n


async def _true(value: bool) -> bool:
    return value


async def _any(live: Live, expr: str) -> bool:
    return bool(await live.query(expr))
