"""Bad messages and bad callbacks: a clear outcome, and nothing lost."""

from __future__ import annotations

import uuid

import aio_pika
import asyncpg
import pytest

from safiri_contracts import DEAD_LETTER_REASON_HEADER, EVENTS_EXCHANGE
from tests.conftest import eventually

from .conftest import Running

pytestmark = pytest.mark.e2e

POISON = [
    pytest.param(b"{not json", "m-1", id="not-json"),
    pytest.param(b"[1, 2]", "m-2", id="not-an-object"),
    pytest.param(b'{"order_id": "nope"}', "m-3", id="bad-fields"),
    pytest.param(b'{"order_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}', None, id="no-message-id"),
    pytest.param(b'{"schema_version": 9, "order_id": "x"}', "m-5", id="unknown-version"),
]
REASONS = {
    "m-1": "body is not JSON",
    "m-2": "body is not",  # the marker appended makes it invalid JSON
    "m-3": "order_id: String should match pattern",
    # Published without a message_id, it arrives with one here (given on the way); its body
    # is what is refused then.
    None: "Field required",
    "m-5": "schema_version 9 is not known",
}


@pytest.mark.parametrize(
    ("routing_key", "queue"),
    [
        ("payment.requested", "payment.requests"),
        ("payment.succeeded", "ticketing.payment-results"),
    ],
)
@pytest.mark.parametrize(("body", "message_id"), POISON)
async def test_a_malformed_message_is_dead_lettered_and_the_consumer_goes_on(
    running: Running, routing_key: str, queue: str, body: bytes, message_id: str | None
) -> None:
    marker = uuid.uuid4().hex
    body = (
        body.replace(b"{", b'{"marker": "' + marker.encode() + b'", ', 1)
        if (body.startswith(b"{") and b":" in body)
        else body + marker.encode()
    )
    connection = await aio_pika.connect(running.config.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(body, message_id=message_id), routing_key=routing_key, mandatory=True
        )
        dlq = await channel.declare_queue(f"{queue}.dlq", passive=True)

        async def parked() -> aio_pika.abc.AbstractIncomingMessage | None:
            while (message := await dlq.get(fail=False)) is not None:
                await message.ack()
                if marker.encode() in message.body:
                    return message
            return None

        found = await eventually(parked, what=f"the poison message in {queue}.dlq")
    # Parked with the reason an operator needs, not only in the consumer's log.
    reason = str((found.headers or {}).get(DEAD_LETTER_REASON_HEADER))
    assert REASONS[message_id] in reason, reason
    assert (found.headers or {}).get("x-safiri-dead-lettered-from") == queue

    trip = await running.next_trip("Eldoret", "Nairobi")
    status, order, _ = await running.place_order(trip["trip_id"])
    assert status == 202
    assert (await running.final_order(order["order_id"]))["status"] == "CONFIRMED"


async def test_a_callback_with_a_wrong_token_changes_nothing_and_is_logged(
    running: Running,
) -> None:
    trip = await running.next_trip("Kisumu", "Nairobi")
    status, order, _ = await running.place_order(trip["trip_id"], phone="254700009999")
    assert status == 202

    async def payment() -> asyncpg.Record | None:
        conn = await asyncpg.connect(running.config.database_url("payment"))
        try:
            return await conn.fetchrow(
                "SELECT payment_id::text, checkout_request_id, status FROM payments"
                " WHERE order_id = $1::uuid AND checkout_request_id IS NOT NULL",
                order["order_id"],
            )
        finally:
            await conn.close()

    row = await eventually(payment, what="the STK push to be accepted")
    callback = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "x",
                "CheckoutRequestID": row["checkout_request_id"],
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
            }
        }
    }
    async with running.http.post(
        running.url("payment", f"/callbacks/mpesa/{row['payment_id']}?token=forged"),
        json=callback,
    ) as response:
        assert response.status == 403
        assert response.headers["Content-Type"].startswith("application/problem+json")

    assert (await payment())["status"] == "AWAITING_CALLBACK"  # type: ignore[index]
    assert (await running.order(order["order_id"]))["status"] == "PENDING_PAYMENT"
    warnings = [
        ln
        for ln in running.log_lines("payment")
        if ln["message"] == "callback rejected" and ln.get("payment_id") == row["payment_id"]
    ]
    assert len(warnings) == 1 and warnings[0]["level"] == "WARNING"
    assert "forged" not in str(running.log_lines("payment"))
