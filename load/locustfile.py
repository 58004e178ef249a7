"""Safiri's load scenarios for Locust: buyers on the public API, at a fixed rate over time.

Usually run by ``safiri load SCENARIO`` (which then checks the metrics against the database),
but Locust can run it directly against ``make up``::

    SAFIRI_LOAD_API_KEY=<key make up printed> SAFIRI_LOAD_SCENARIO=baseline \\
        .venv/bin/locust -f load/locustfile.py --host http://127.0.0.1:8080

Variables: ``SAFIRI_LOAD_SCENARIO`` (a name in ``safiri_load.scenarios.SCENARIOS`` or a
scenario's JSON), ``SAFIRI_LOAD_API_KEY`` (else the first of ``SAFIRI_API_KEYS``),
``SAFIRI_LOAD_ORDERS_FILE`` (a JSON line per order placed, for the check),
``SAFIRI_LOAD_TRIP_DAYS`` (buy trips departing within this many days, default 13),
``SAFIRI_LOAD_USER_RPS`` (actions/s per user, default 0.25), ``SAFIRI_LOAD_FINAL_TIMEOUT``
(seconds a buyer polls its order, default 20), ``SAFIRI_LOAD_POLL_SECONDS`` (default 0.25).

Every request is named by its route template, so Locust's table has one row per route; what
is not a request is reported under the type ``ORDER``: ``final state`` (the order reached the
state its phone number chooses; its time is from the POST to that state) and ``no seat on sale``.
A request the gateway refuses with 429 fails as ``429 rate-limited: <the gateway's detail>``
(the limit it applied), which ``safiri load`` counts apart.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import date, timedelta
from typing import IO, Any
from urllib.parse import urlencode

import gevent
from gevent.lock import Semaphore
from locust import FastHttpUser, LoadTestShape, events, task

from safiri_load.scenarios import (
    DEFAULT_USER_RPS,
    FAILING_PHONES,
    POLL_SECONDS,
    scenario_from_env_value,
    users_for,
)
from safiri_load.stats import (
    BROWSE,
    ORDER_TYPE,
    POLL,
    PURCHASE,
    PURCHASE_RETRY,
    RATE_LIMITED,
    STOCK,
)

_ENV = os.environ
SCENARIO = scenario_from_env_value(_ENV.get("SAFIRI_LOAD_SCENARIO", "baseline"))
USER_RPS = float(_ENV.get("SAFIRI_LOAD_USER_RPS", DEFAULT_USER_RPS))
TRIP_DAYS = int(_ENV.get("SAFIRI_LOAD_TRIP_DAYS", "13"))
FINAL_TIMEOUT = float(_ENV.get("SAFIRI_LOAD_FINAL_TIMEOUT", "20"))
POLL_INTERVAL = float(_ENV.get("SAFIRI_LOAD_POLL_SECONDS", str(POLL_SECONDS)))
API_KEY = _ENV.get("SAFIRI_LOAD_API_KEY") or next(
    (k.strip() for k in _ENV.get("SAFIRI_API_KEYS", "").split(",") if k.strip()), ""
)
if not API_KEY:
    raise SystemExit("set SAFIRI_LOAD_API_KEY to an API key the gateway accepts")
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_SEATS = max(SCENARIO.seat_counts)
POOL_SIZE = 20  # purchases go round-robin over this many trips, so no one trip's lock is hot
RETRIES = 4  # a POST that got no answer is sent again with the same Idempotency-Key
FINAL = {"CONFIRMED", "PAYMENT_FAILED", "EXPIRED"}


# Actions and purchases are numbered across the run, so the proportions are exact rather than
# drawn at random: with a share of 1/10, purchases 10, 20, 30, ... pay from a failing number.
ACTIONS = itertools.count()
PURCHASES = itertools.count()


def _every(counter: itertools.count[int], share: float) -> bool:
    """Whether the counter's next item is one of the ``share`` picked, spread evenly."""
    n = next(counter)
    return int((n + 1) * share + 1e-9) > int(n * share + 1e-9)


def success_phone() -> str:
    """A valid Kenyan MSISDN outside the simulator's table of failing numbers (254700…)."""
    return f"25471{random.randrange(10**7):07d}"


class OrderLog:
    """One JSON line per order the gateway accepted: the run's orders, for the check."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._file: IO[str] | None = None

    def record(self, order_id: str, seat_count: int, expect: str) -> None:
        if self._path is None:
            return
        if self._file is None:
            self._file = open(self._path, "a", buffering=1)  # noqa: SIM115 - closed on quit
        line = {"order_id": order_id, "seat_count": seat_count, "expect": expect}
        self._file.write(json.dumps(line) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


ORDERS = OrderLog(_ENV.get("SAFIRI_LOAD_ORDERS_FILE"))


@events.quitting.add_listener
def _close_order_log(**_: Any) -> None:
    ORDERS.close()


def _answer(response: Any) -> dict[str, Any]:
    """A response's JSON object, or {} (no body, not JSON, not an object)."""
    if not response.text:
        return {}
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _failure_text(status: int, answer: Mapping[str, Any]) -> str:
    """A failed request as Locust's failures table shows it: the status and problem type; a
    refusal by the rate limit with the gateway's detail, which names the limit it applied."""
    if status == 429:
        return f"{RATE_LIMITED}: {answer.get('detail', '')}".strip()
    problem = str(answer.get("type", "")).rsplit("/", 1)[-1]
    return f"{status} {problem or answer.get('title', '')}".strip()


def _order_event(user: FastHttpUser, name: str, started: float, error: str | None) -> None:
    user.environment.events.request.fire(
        request_type=ORDER_TYPE,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        response=None,
        context={},
        exception=Exception(error) if error else None,
    )


# The routes the public search has shown (origin, destination): what a browsing customer
# searches. Learnt from the answers, not imported from ticketing's internals.
ROUTES_SEEN: list[tuple[str, str]] = []


class TripPool:
    """Trips with seats on sale, found by searching the public API day after day.

    Seats are counted down here as they are bought (a failed payment's seats are not given
    back), so the buyers move on before a trip sells out rather than meeting 409s.
    """

    def __init__(self, days: int) -> None:
        self._searches = iter(range(1, days + 1))
        self._trips: deque[list[Any]] = deque()  # [trip_id, seats left]
        self._lock = Semaphore()

    def take(self, user: FastHttpUser, seats: int) -> str | None:
        with self._lock:
            if len(self._trips) < POOL_SIZE:
                self._restock(user)
            while self._trips:
                trip = self._trips.popleft()
                if trip[1] < seats:
                    continue
                trip[1] -= seats
                if trip[1] >= MAX_SEATS:
                    self._trips.append(trip)
                return str(trip[0])
            return None

    def drop(self, trip_id: str) -> None:
        self._trips = deque(t for t in self._trips if t[0] != trip_id)

    def _restock(self, user: FastHttpUser) -> None:
        for offset in self._searches:
            query = {"date": (date.today() + timedelta(days=offset)).isoformat()}
            with user.client.get(
                f"/api/v1/trips?{urlencode(query)}",
                name=STOCK[1],
                headers=AUTH,
                catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(_failure_text(response.status_code, _answer(response)))
                    continue
                trips = response.json()["trips"]
            for trip in trips:
                if (trip["origin"], trip["destination"]) not in ROUTES_SEEN:
                    ROUTES_SEEN.append((trip["origin"], trip["destination"]))
            known = {t[0] for t in self._trips}
            for trip in trips:
                if trip["seats_available"] >= MAX_SEATS and trip["trip_id"] not in known:
                    self._trips.append([trip["trip_id"], int(trip["seats_available"])])
            if len(self._trips) >= POOL_SIZE:
                return


POOL = TripPool(TRIP_DAYS)


class Buyer(FastHttpUser):
    """Browses timetables and buys tickets, starting actions at the scenario's rate."""

    _next = 0.0  # when this user's next action is due (time.monotonic())

    def on_start(self) -> None:
        # Spread the users over one interval, so they do not all act in the same instant.
        gevent.sleep(random.uniform(0, self._interval()))
        self._next = time.monotonic()

    def _interval(self) -> float:
        """Seconds between a user's actions: the users together start ``rate`` per second."""
        shape = self.environment.shape_class
        t = shape.get_run_time() if shape is not None else 0.0
        rate = SCENARIO.rate_at(t) or SCENARIO.stages[-1].rate
        return users_for(rate, USER_RPS) / rate

    def wait_time(self) -> float:
        now = time.monotonic()
        interval = self._interval()
        # Behind schedule (a slow purchase): catch up by at most one action, never in a burst.
        self._next = max(self._next + interval, now - interval)
        return max(0.0, self._next - now)

    @task
    def act(self) -> None:
        """The next action of the run: a purchase or a browse, in the scenario's proportion."""
        if _every(ACTIONS, SCENARIO.buy_share):
            self.buy()
        else:
            self.browse()

    def buy(self) -> None:
        seats = random.choice(SCENARIO.seat_counts)
        failing = _every(PURCHASES, SCENARIO.failure_share)
        phone = random.choice(FAILING_PHONES) if failing else success_phone()
        expect = "PAYMENT_FAILED" if failing else "CONFIRMED"
        started = time.perf_counter()
        trip_id = POOL.take(self, seats)
        if trip_id is None:
            _order_event(self, "no seat on sale", started, "no trip with seats left")
            return
        body = {"trip_id": trip_id, "seat_count": seats, "phone": phone}
        started = time.perf_counter()
        order_id = self._place(body)
        if order_id is None:
            return
        ORDERS.record(order_id, seats, expect)
        self._follow(order_id, expect, started)

    def _place(self, body: dict[str, Any]) -> str | None:
        """POST /orders; a 5xx or lost answer is retried with the same Idempotency-Key, which
        either replays the first answer or places the order once."""
        headers = {**AUTH, "Idempotency-Key": str(uuid.uuid4())}
        for attempt in range(RETRIES + 1):
            name = PURCHASE[1] if attempt == 0 else PURCHASE_RETRY[1]
            with self.client.post(
                "/api/v1/orders", json=body, headers=headers, name=name, catch_response=True
            ) as response:
                status = response.status_code
                answer = _answer(response)
                if status == 202 and "order_id" in answer:
                    response.success()
                    return str(answer["order_id"])
                problem = str(answer.get("type", "")).rsplit("/", 1)[-1]
                response.failure(_failure_text(status, answer))
            if status == 409 and "seats-unavailable" in problem:
                POOL.drop(body["trip_id"])
                return None
            retryable = status == 0 or status >= 500 or "in-flight" in problem
            if not retryable:
                return None
            gevent.sleep(0.2 * 2**attempt)
        return None

    def _follow(self, order_id: str, expect: str, started: float) -> None:
        """Poll the order until it is final; report whether it ended as its phone chose."""
        deadline = started + FINAL_TIMEOUT
        status = "PENDING_PAYMENT"
        while status not in FINAL:
            if time.perf_counter() > deadline:
                _order_event(self, "final state", started, f"not final within {FINAL_TIMEOUT:g} s")
                return
            gevent.sleep(POLL_INTERVAL)
            with self.client.get(
                f"/api/v1/orders/{order_id}", name=POLL[1], headers=AUTH, catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(_failure_text(response.status_code, _answer(response)))
                    continue
                status = str(response.json().get("status"))
        error = None if status == expect else f"expected {expect}, got {status}"
        _order_event(self, "final state", started, error)

    def browse(self) -> None:
        day = date.today() + timedelta(days=random.randint(1, TRIP_DAYS))
        query = {"date": day.isoformat()}
        if ROUTES_SEEN:  # a customer searches a route once the pool has seen some
            query["origin"], query["destination"] = random.choice(ROUTES_SEEN)
        with self.client.get(
            f"/api/v1/trips?{urlencode(query)}", name=BROWSE[1], headers=AUTH, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(_failure_text(response.status_code, _answer(response)))


class ScenarioShape(LoadTestShape):
    """As many users as carry the current stage's rate; None (stop) when the stages are over."""

    def tick(self) -> tuple[int, float] | None:
        rate = SCENARIO.rate_at(self.get_run_time())
        if rate is None:
            return None
        users = users_for(rate, USER_RPS)
        return users, max(10.0, float(users))  # every user of a stage starts within ~1 s
