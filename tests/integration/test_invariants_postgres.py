"""The invariant checker against real PostgreSQL databases built with the services' own
schemas, a ledger served over HTTP, and dead-letter queues on a real RabbitMQ vhost.

A seat sold twice cannot be written (the schema forbids it); what the checker must still
catch is what the schema allows: a seat neither held, sold nor free, an order left pending
past its bound, a charge without a confirmed order, an event stuck in an outbox, a parked
message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web

from safiri_chaos import Limits, Sources, check_suite
from safiri_chaos.cli import add_chaos_command
from safiri_gateway.adapters.schema import SCHEMA as GATEWAY_SCHEMA
from safiri_payment.adapters.postgres import SCHEMA as PAYMENT_SCHEMA
from safiri_ticketing.adapters.schema import SCHEMA as TICKETING_SCHEMA
from tests.conftest import own_vhost, serving

pytestmark = pytest.mark.integration

ADMIN_KEY = "it-admin-key"
LIMITS = Limits(hold_ttl_seconds=300, final_grace_seconds=30)
MINUTE = timedelta(minutes=1)


@dataclass
class Suite:
    """Three databases, a ledger and two dead-letter queue names of one test's own."""

    ticketing: asyncpg.Connection[Any]
    payment: asyncpg.Connection[Any]
    gateway: asyncpg.Connection[Any]
    sources: Sources
    ledger: list[dict[str, Any]] = field(default_factory=list)
    trip_id: str = ""

    async def add_order(
        self, status: str, seats: list[int], age: timedelta = MINUTE, sold: bool = False
    ) -> str:
        order_id = str(uuid.uuid4())
        await self.ticketing.execute(
            "INSERT INTO orders (order_id, trip_id, seat_count, phone, amount, currency, status,"
            " seats, expires_at, created_at, updated_at) VALUES ($1::uuid, $2::uuid, $3,"
            " '254712345678', $4, 'KES', $5, $6, now() - $7::interval + interval '5 minutes',"
            " now() - $7::interval, now() - $7::interval + interval '1 second')",
            order_id,
            self.trip_id,
            max(1, len(seats)),
            700 * max(1, len(seats)),
            status,
            seats,
            age,
        )
        for seat in seats:
            await self.ticketing.execute(
                "INSERT INTO seat_allocations (trip_id, seat_no, order_id, sold)"
                " VALUES ($1::uuid, $2, $3::uuid, $4)",
                self.trip_id,
                seat,
                order_id,
                sold,
            )
            if sold:
                await self.ticketing.execute(
                    "INSERT INTO tickets (ticket_id, order_id, trip_id, seat_no)"
                    " VALUES ($1::uuid, $2::uuid, $3::uuid, $4)",
                    str(uuid.uuid4()),
                    order_id,
                    self.trip_id,
                    seat,
                )
        return order_id

    async def add_payment(self, order_id: str, status: str, amount: int = 700) -> None:
        await self.payment.execute(
            "INSERT INTO payments (payment_id, order_id, amount, currency, phone, status,"
            " callback_token_hash) VALUES ($1::uuid, $2::uuid, $3, 'KES', '254712345678', $4, 'h')",
            str(uuid.uuid4()),
            order_id,
            amount,
            status,
        )

    def charge(self, order_id: str, amount: int = 700, result_code: int = 0) -> None:
        self.ledger.append(
            {
                "checkout_request_id": f"ws_CO_{len(self.ledger)}",
                "account_reference": order_id[:12],
                "amount": amount,
                "state": "completed",
                "result_code": result_code,
                "receipt": f"RCP{len(self.ledger)}",
            }
        )


@pytest_asyncio.fixture
async def suite(
    make_database: Callable[[str], Awaitable[str]], amqp_url: str
) -> AsyncIterator[Suite]:
    name = f"inv_{uuid.uuid4().hex[:8]}"
    urls = {s: await make_database(f"{name}_{s}") for s in ("ticketing", "payment", "gateway")}
    conns = {s: await asyncpg.connect(url) for s, url in urls.items()}
    for service, schema in (
        ("ticketing", TICKETING_SCHEMA),
        ("payment", PAYMENT_SCHEMA),
        ("gateway", GATEWAY_SCHEMA),
    ):
        await conns[service].execute(schema)
    ledger: list[dict[str, Any]] = []

    async def serve_ledger(request: web.Request) -> web.Response:
        if request.headers.get("X-Simulator-Admin-Key") != ADMIN_KEY:
            return web.json_response({"title": "Unauthorized"}, status=401)
        return web.json_response({"transactions": ledger})

    app = web.Application()
    app.router.add_get("/simulator/ledger", serve_ledger)
    async with serving(app) as ledger_base:
        dlqs = (f"{name}.parked.dlq", f"{name}.never-declared.dlq")
        sources = Sources(
            ticketing_database_url=urls["ticketing"],
            payment_database_url=urls["payment"],
            gateway_database_url=urls["gateway"],
            ledger_url=f"{ledger_base}/simulator/ledger",
            simulator_admin_key=ADMIN_KEY,
            amqp_url=amqp_url,
            dead_letter_queues=dlqs,
        )
        s = Suite(conns["ticketing"], conns["payment"], conns["gateway"], sources, ledger)
        s.trip_id = str(uuid.uuid4())
        await s.ticketing.execute(
            "INSERT INTO trips VALUES ($1::uuid, 'Nairobi', 'Nakuru', now() + interval '1 day',"
            " now() + interval '1 day 3 hours', 'KB1', 700, 'KES', 4)",
            s.trip_id,
        )
        await s.ticketing.execute(
            "INSERT INTO seats SELECT $1::uuid, g FROM generate_series(1, 4) g", s.trip_id
        )
        try:
            yield s
        finally:
            for conn in conns.values():
                await conn.close()


async def a_clean_purchase_history(suite: Suite) -> tuple[str, str]:
    """Order A confirmed on seat 1 and charged once; order B failed and charged nothing."""
    confirmed = await suite.add_order("CONFIRMED", [1], sold=True)
    await suite.add_payment(confirmed, "SUCCEEDED")
    suite.charge(confirmed)
    failed = await suite.add_order("PAYMENT_FAILED", [])
    await suite.add_payment(failed, "FAILED")
    suite.charge(failed, result_code=1)
    return confirmed, failed


async def test_a_consistent_suite_passes(suite: Suite) -> None:
    await a_clean_purchase_history(suite)
    report = await check_suite(suite.sources, LIMITS)
    assert report.violations == [], report.render()
    seats = report.check("held + sold + free = capacity").facts
    assert (seats["held"], seats["sold"], seats["free"], seats["capacity"]) == (0, 1, 3, 4)
    assert report.check("dead letters accounted for").facts == {
        suite.sources.dead_letter_queues[1]: "not declared",
        suite.sources.dead_letter_queues[0]: "not declared",
    }


async def test_money_taken_too_late_for_the_seats_is_accounted_for_by_its_refund(
    suite: Suite,
) -> None:
    _, failed = await a_clean_purchase_history(suite)
    suite.charge(failed)  # the provider took the money after all
    report = await check_suite(suite.sources, LIMITS)
    assert [v.invariant for v in report.violations] == ["charge without confirmed order"]

    await suite.ticketing.execute(
        "INSERT INTO refunds (order_id, amount, currency, reason)"
        " VALUES ($1::uuid, 700, 'KES', 'paid after the order ended')",
        failed,
    )
    report = await check_suite(suite.sources, LIMITS)
    assert report.violations == [], report.render()
    assert report.check("at most one successful payment per order").facts["refunds"] == 1


async def test_the_schema_itself_forbids_selling_a_seat_twice(suite: Suite) -> None:
    confirmed, _ = await a_clean_purchase_history(suite)
    other = await suite.add_order("CONFIRMED", [])
    with pytest.raises(asyncpg.UniqueViolationError):
        await suite.ticketing.execute(
            "INSERT INTO tickets (ticket_id, order_id, trip_id, seat_no)"
            " VALUES ($1::uuid, $2::uuid, $3::uuid, 1)",
            str(uuid.uuid4()),
            other,
            suite.trip_id,
        )
    with pytest.raises(asyncpg.UniqueViolationError):
        await suite.ticketing.execute(
            "INSERT INTO seat_allocations (trip_id, seat_no, order_id)"
            " VALUES ($1::uuid, 1, $2::uuid)",
            suite.trip_id,
            other,
        )
    with pytest.raises(asyncpg.UniqueViolationError):
        await suite.add_payment(confirmed, "SUCCEEDED")


async def test_what_the_schema_allows_the_checker_catches(suite: Suite, amqp_url: str) -> None:
    _, failed = await a_clean_purchase_history(suite)
    # A seat left allocated to an order that ended unpaid: neither held, sold nor free.
    await suite.ticketing.execute(
        "INSERT INTO seat_allocations (trip_id, seat_no, order_id) VALUES ($1::uuid, 3, $2::uuid)",
        suite.trip_id,
        failed,
    )
    # An order still pending ten minutes after a five-minute hold.
    stale = await suite.add_order("PENDING_PAYMENT", [2], age=10 * MINUTE)
    # Money taken for the failed order (a late success the suite never applied).
    suite.charge(failed)
    # A payment result that never left the payment service's outbox.
    stuck = str(uuid.uuid4())
    await suite.payment.execute(
        "INSERT INTO outbox (message_id, routing_key, payload, created_at)"
        " VALUES ($1::uuid, 'payment.succeeded', '{}', now() - interval '2 minutes')",
        stuck,
    )
    await park_two_messages(amqp_url, suite.sources.dead_letter_queues[0])

    report = await check_suite(suite.sources, LIMITS)

    found = {(v.invariant, v.subject) for v in report.violations}
    assert found == {
        ("held + sold + free ≠ capacity", f"trip {suite.trip_id}"),
        ("order not final in time", f"order {stale}"),
        ("charge without confirmed order", f"account reference {failed[:12]}"),
        ("event not published", f"payment outbox {stuck}"),
        ("messages dead-lettered", suite.sources.dead_letter_queues[0]),
    }, report.render()
    seats = report.check("held + sold + free = capacity").facts
    assert (seats["held"], seats["sold"], seats["free"]) == (1, 1, 1)
    assert (
        report.check("dead letters accounted for").facts[suite.sources.dead_letter_queues[0]] == 2
    )


async def park_two_messages(amqp_url: str, queue_name: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        for n in range(2):
            await channel.default_exchange.publish(
                aio_pika.Message(body=f"poison {n}".encode()), routing_key=queue_name
            )


async def test_safiri_chaos_check_prints_the_report_and_exits_1_on_a_violation(
    suite: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    await a_clean_purchase_history(suite)
    stale = await suite.add_order("PENDING_PAYMENT", [2], age=60 * MINUTE)
    parser = argparse.ArgumentParser(prog="safiri")
    add_chaos_command(parser.add_subparsers(dest="command"))
    s = suite.sources
    # The command checks the standard dead-letter queues: use a vhost where no other test parks
    # messages in them.
    with own_vhost(f"safiri-test-inv-{uuid.uuid4().hex[:8]}") as amqp_url:
        await _check_from_the_command_line(parser, s, amqp_url, stale, capsys)


async def _check_from_the_command_line(
    parser: argparse.ArgumentParser,
    s: Sources,
    amqp_url: str,
    stale: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parser.parse_args(
        [
            "chaos",
            "check",
            f"--ticketing-db={s.ticketing_database_url}",
            f"--payment-db={s.payment_database_url}",
            f"--gateway-db={s.gateway_database_url}",
            f"--ledger-url={s.ledger_url}",
            f"--admin-key={ADMIN_KEY}",
            f"--amqp-url={amqp_url}",
            "--hold-ttl=300",
        ]
    )
    # The command runs its own event loop, as it does from the shell.
    assert await asyncio.to_thread(args.func, args) == 1
    text = capsys.readouterr().out
    assert "invariants VIOLATED (1 violations)" in text
    assert f"order not final in time: order {stale}" in text

    assert await asyncio.to_thread(args.func, parser.parse_args([*sys_args(args), "--json"])) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is False
    assert body["violations"] == 1


def sys_args(args: argparse.Namespace) -> list[str]:
    return [
        "chaos",
        "check",
        f"--ticketing-db={args.ticketing_db}",
        f"--payment-db={args.payment_db}",
        f"--gateway-db={args.gateway_db}",
        f"--ledger-url={args.ledger_url}",
        f"--admin-key={args.admin_key}",
        f"--amqp-url={args.amqp_url}",
        "--hold-ttl=300",
    ]
