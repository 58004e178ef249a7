"""Chaos Toolkit probes of the suite itself: purchases succeed, orders end, invariants hold.

Probes that wait do so against a deadline and say what they saw when it passes; what does
not show up in time raises ``ProbeFailed`` (Chaos Toolkit records a failed activity).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import asyncpg

from .checker import check_suite
from .events import FAULT_HEALED, FAULT_INJECTED
from .gateway import HEALTHY_PHONE as HEALTHY
from .gateway import Buyer
from .history import read_history
from .impact import customer_impact
from .invariants import in_flight
from .invariants.orders import check_orders_final
from .invariants.read import read_orders
from .target import Target

__all__ = [
    "POLL",
    "ProbeFailed",
    "invariant_violations",
    "no_purchase_failed",
    "orders_final",
    "purchases_go_through",
    "purchases_succeed",
    "retries_get_one_order",
]

Config = Mapping[str, Any]
POLL = 0.25


class ProbeFailed(Exception):
    """The symptom or state a probe looks for did not appear in time."""


def purchases_succeed(
    configuration: Config,
    secrets: Config | None = None,
    count: int | str = 2,
    timeout_seconds: float | str = 20,
) -> bool:
    """Buy ``count`` tickets one after another; true when every order ends CONFIRMED, else
    ``ProbeFailed`` saying what the order became."""
    target = Target.from_config(configuration, secrets)

    async def buy() -> bool:
        async with aiohttp.ClientSession() as http:
            buyer = target.buyer(http)
            trips = await buyer.trips_on_sale(target.trip_days, enough=int(count))
            if not trips:
                raise ProbeFailed(f"no seat on sale in the next {target.trip_days} days")
            for n in range(int(count)):
                op = await buyer.purchase("steady-state", trips[n % len(trips)])
                if op.type != "ok" or op.order_id is None:
                    raise ProbeFailed(f"a purchase was not accepted: {op.status or op.error}")
                status = await _final_status(buyer, op.order_id, float(timeout_seconds))
                if status != "CONFIRMED":
                    # Say what happened: a probe that only answers false hides the cause.
                    raise ProbeFailed(
                        f"order {op.order_id} ended {status}, not CONFIRMED"
                        f" (after up to {float(timeout_seconds):g} s)"
                    )
            return True

    return asyncio.run(buy())


def purchases_go_through(
    provider: str,
    configuration: Config,
    secrets: Config | None = None,
    count: int | str = 3,
    timeout_seconds: float | str = 30,
) -> dict[str, Any]:
    """New purchases are paid through ``provider``: buy one ticket at a time until ``count``
    have been paid through it, each CONFIRMED (read from payment's record of the route that
    took each payment). Purchases routed elsewhere before the route switch took effect are
    passed over; one routed elsewhere after it, or one through ``provider`` that does not
    confirm, fails the probe, and so does running out of time."""
    target = Target.from_config(configuration, secrets)
    timeout = float(timeout_seconds)

    async def buy() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        through: list[str] = []
        elsewhere: dict[str, int] = {}
        switched_after: float | None = None
        async with aiohttp.ClientSession() as http:
            buyer = target.buyer(http)
            trips = await buyer.trips_on_sale(target.trip_days, enough=int(count) + 5)
            if not trips:
                raise ProbeFailed(f"no seat on sale in the next {target.trip_days} days")
            n = 0
            while len(through) < int(count):
                if loop.time() > deadline:
                    raise ProbeFailed(
                        f"{len(through)} of {count} purchases paid through {provider} within"
                        f" {timeout:g} s (elsewhere: {elsewhere or 'none'})"
                    )
                op = await buyer.purchase(f"through-{provider}", trips[n % len(trips)])
                n += 1
                if op.type != "ok" or op.order_id is None:
                    raise ProbeFailed(f"a purchase was not accepted: {op.status or op.error}")
                status = await _final_status(buyer, op.order_id, max(deadline - loop.time(), 1))
                took = await payment_provider(target.payment_database_url, op.order_id)
                if took != provider:
                    if through:
                        raise ProbeFailed(
                            f"order {op.order_id} was paid through {took} after purchases"
                            f" had gone through {provider}: the route flapped"
                        )
                    elsewhere[str(took)] = elsewhere.get(str(took), 0) + 1
                    continue
                if status != "CONFIRMED":
                    raise ProbeFailed(
                        f"order {op.order_id} was paid through {provider} and ended {status},"
                        " not CONFIRMED"
                    )
                if switched_after is None:
                    switched_after = round(loop.time() - started, 1)
                through.append(op.order_id)
        return {
            "provider": provider,
            "confirmed": len(through),
            "first_through_after_s": switched_after,
            "paid_elsewhere_first": elsewhere,
        }

    return asyncio.run(buy())


async def payment_provider(payment_database_url: str, order_id: str) -> str | None:
    """The route that took the order's payment, as payment recorded it (None: no payment)."""
    conn = await asyncpg.connect(payment_database_url)
    try:
        took: str | None = await conn.fetchval(
            "SELECT provider FROM payments WHERE order_id = $1::uuid", order_id
        )
        return took
    finally:
        await conn.close()


async def _final_status(buyer: Buyer, order_id: str, timeout: float) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await buyer.order_status(order_id)
        if status != "PENDING_PAYMENT" or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(POLL)


def orders_final(configuration: Config) -> dict[str, Any]:
    """Wait until every order is final (each has until its bound); fails on the first late one."""
    target = Target.from_config(configuration)
    limits = target.limits()

    async def settle() -> dict[str, Any]:
        while True:
            snapshot = await read_orders(target.ticketing_database_url)
            if not in_flight(snapshot, limits):
                break
            await asyncio.sleep(POLL)
        result = check_orders_final(snapshot, limits)
        if not result.ok:
            first = result.violations[0]
            raise ProbeFailed(
                f"{len(result.violations)} order(s) not final in time, e.g. {first.subject}:"
                f" {first.detail}"
            )
        return result.facts

    return asyncio.run(settle())


def invariant_violations(configuration: Config, secrets: Config | None = None) -> int:
    """Check every invariant (after in-flight orders settle); writes invariants.{txt,json}."""
    target = Target.from_config(configuration, secrets)
    history = target.history_path
    ops = list(read_history(history)) if history.exists() else None
    report = asyncio.run(
        check_suite(
            target.sources,
            target.limits(),
            ops,
            api_key=target.api_key or None,
            wait_for_in_flight=True,
        )
    )
    target.results_dir.mkdir(parents=True, exist_ok=True)
    (target.results_dir / "invariants.txt").write_text(report.render() + "\n")
    (target.results_dir / "invariants.json").write_text(report.to_json() + "\n")
    if ops is not None:  # what the customers lived through, for the run's report
        orders = asyncio.run(read_orders(target.sources.ticketing_database_url)).orders
        events = target.events
        injected = events.last(FAULT_INJECTED)
        healed = events.first(FAULT_HEALED, after=injected.at) if injected else None
        impact = customer_impact(
            ops,
            {o.order_id: o.status for o in orders},
            injected.at if injected else None,
            healed.at if healed else None,
        )
        (target.results_dir / "impact.json").write_text(json.dumps(impact.to_dict()) + "\n")
    return len(report.violations)


def no_purchase_failed(configuration: Config) -> dict[str, int]:
    """Every purchase recorded so far was answered 202: no customer saw an error or a dropped
    connection (what a rolling restart must achieve). Fails naming the first that did not."""
    target = Target.from_config(configuration)
    ops = list(read_history(target.history_path)) if target.history_path.exists() else []
    completed = [op for op in ops if op.type != "invoke"]
    bad = [op for op in completed if op.type != "ok"]
    if not completed:
        raise ProbeFailed("no purchase was recorded: nothing shows the customers were served")
    if bad:
        first = bad[0]
        raise ProbeFailed(
            f"{len(bad)} of {len(completed)} purchases not accepted, e.g. {first.type}"
            f" {first.status or ''} {first.error or ''}".rstrip()
        )
    return {"purchases": len(completed), "not_accepted": 0}


def retries_get_one_order(
    configuration: Config,
    secrets: Config | None = None,
    count: int | str = 3,
    attempts: int | str = 10,
) -> dict[str, int]:
    """A client that retries with the same Idempotency-Key gets one order: ``count`` purchases,
    each retried (same key) until accepted, then sent once more; every answer names the same
    order. Run during a fault, when first attempts may meet a dying replica."""
    target = Target.from_config(configuration, secrets)

    async def buy() -> dict[str, int]:
        timeout = aiohttp.ClientTimeout(total=target.request_timeout_seconds)
        auth = {"Authorization": f"Bearer {target.api_key}"}
        retried = 0
        async with aiohttp.ClientSession(timeout=timeout) as http:
            buyer = target.buyer(http)
            trips = await buyer.trips_on_sale(target.trip_days, enough=int(count))
            for n in range(int(count)):
                key = str(uuid.uuid4())
                body = {"trip_id": trips[n % len(trips)], "seat_count": 1, "phone": HEALTHY}
                headers = {**auth, "Idempotency-Key": key}
                answers: list[str] = []
                for _ in range(int(attempts)):
                    order = await _post_once(http, target.gateway_url, body, headers)
                    if order is not None:
                        answers.append(order)
                        if len(answers) == 2:
                            break
                    else:
                        retried += 1
                        await asyncio.sleep(POLL)
                if len(answers) < 2:
                    raise ProbeFailed(f"key {key}: not accepted twice in {attempts} attempts")
                if answers[0] != answers[1]:
                    raise ProbeFailed(f"key {key} made two orders: {answers}")
        return {"purchases": int(count), "retries": retried}

    return asyncio.run(buy())


async def _post_once(
    http: aiohttp.ClientSession, gateway: str, body: dict[str, Any], headers: dict[str, str]
) -> str | None:
    """The order id of a 202, or None for an answer worth retrying (5xx, 409 in flight,
    a dropped connection)."""
    try:
        async with http.post(f"{gateway}/api/v1/orders", json=body, headers=headers) as response:
            answer: dict[str, Any] = await response.json(content_type=None) or {}
            if response.status == 202:
                return str(answer["order_id"])
            if response.status >= 500 or response.status == 409:
                return None
            raise ProbeFailed(f"purchase refused: {response.status} {answer.get('title')}")
    except (TimeoutError, aiohttp.ClientError):
        return None
