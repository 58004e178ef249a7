"""Placing an order at most once per key, against in-memory fakes of ticketing and the store."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from loguru import logger

from safiri_gateway.domain.idempotency import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    IdempotencyRecord,
    StoredResponse,
)
from safiri_gateway.domain.orders import OrderRequest
from safiri_gateway.service_layer.place_order import PlaceOrder
from safiri_gateway.service_layer.ports import (
    Claim,
    UpstreamReply,
    UpstreamTimeout,
    UpstreamUnavailable,
)

ORDER = OrderRequest("7d5b7e1c-3a57-4f2b-9a64-0f8f3a1e2b01", 2, "254712345678")
ACCEPTED = {"order_id": "3f1c", "status": "PENDING_PAYMENT", "seats": [1, 2]}
UNKNOWN_TRIP = {"type": "https://safiri.dev/problems/unknown-trip", "title": "Unknown trip"}


class InMemoryStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[str, str, StoredResponse | None]] = {}
        self._owners = itertools.count()

    async def claim(
        self, client: str, key: str, fingerprint: str, trace_id: str | None
    ) -> Claim | IdempotencyRecord:
        row = self.rows.get((client, key))
        if row is not None:
            return IdempotencyRecord(row[0], row[2])
        owner = str(next(self._owners))
        self.rows[(client, key)] = (fingerprint, owner, None)
        return Claim(client, key, owner)

    async def complete(self, claim: Claim, response: StoredResponse) -> None:
        fingerprint, owner, _ = self.rows[(claim.client, claim.key)]
        assert owner == claim.owner
        self.rows[(claim.client, claim.key)] = (fingerprint, owner, response)

    async def release(self, claim: Claim) -> None:
        del self.rows[(claim.client, claim.key)]

    async def check_alive(self) -> None:
        return None


class ScriptedTicketing:
    def __init__(self, *answers: UpstreamReply | Exception) -> None:
        self.answers = list(answers)
        self.placed: list[Mapping[str, Any]] = []
        self.request_keys: list[str] = []

    async def place_order(self, body: Mapping[str, Any], request_key: str) -> UpstreamReply:
        self.placed.append(body)
        self.request_keys.append(request_key)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def search_trips(self, params: Mapping[str, str]) -> UpstreamReply:
        raise NotImplementedError

    async def get_order(self, order_id: str) -> UpstreamReply:
        raise NotImplementedError

    async def check_alive(self) -> None:
        return None


async def test_an_accepted_order_is_answered_202_and_kept_for_replay() -> None:
    store, ticketing = InMemoryStore(), ScriptedTicketing(UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(store, ticketing)

    first = await place(ORDER, "client", "k1")
    again = await place(ORDER, "client", "k1")

    assert (first.response, first.replayed) == (StoredResponse(202, ACCEPTED), False)
    assert (again.response, again.replayed) == (StoredResponse(202, ACCEPTED), True)
    assert ticketing.placed == [ORDER.as_json()]


async def test_a_final_refusal_is_replayed_too() -> None:
    store, ticketing = InMemoryStore(), ScriptedTicketing(UpstreamReply(422, UNKNOWN_TRIP))
    place = PlaceOrder(store, ticketing)

    assert (await place(ORDER, "client", "k1")).response.status == 422
    replay = await place(ORDER, "client", "k1")

    assert replay.replayed
    assert replay.response == StoredResponse(422, UNKNOWN_TRIP)
    assert len(ticketing.placed) == 1


async def test_another_body_with_a_used_key_is_refused_without_calling_ticketing() -> None:
    store, ticketing = InMemoryStore(), ScriptedTicketing(UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(store, ticketing)
    await place(ORDER, "client", "k1")

    with pytest.raises(IdempotencyKeyReused):
        await place(OrderRequest(ORDER.trip_id, 3, ORDER.phone), "client", "k1")
    assert len(ticketing.placed) == 1


async def test_a_key_in_flight_is_refused() -> None:
    store = InMemoryStore()
    await store.claim("client", "k1", ORDER.fingerprint(), None)

    with pytest.raises(IdempotencyKeyInFlight):
        await PlaceOrder(store, ScriptedTicketing())(ORDER, "client", "k1")


async def test_keys_of_different_clients_do_not_meet() -> None:
    ticketing = ScriptedTicketing(UpstreamReply(201, ACCEPTED), UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(InMemoryStore(), ticketing)

    await place(ORDER, "client-a", "k1")
    other = await place(ORDER, "client-b", "k1")

    assert not other.replayed
    assert len(ticketing.placed) == 2
    assert len(set(ticketing.request_keys)) == 2  # ticketing tells them apart too


async def test_a_retry_after_a_timeout_carries_the_same_request_key_to_ticketing() -> None:
    """Ticketing may have created the order before the gateway stopped waiting: the retry
    must reach it with the same key, so it answers with that order instead of a second one."""
    ticketing = ScriptedTicketing(UpstreamTimeout("slow"), UpstreamReply(200, ACCEPTED))
    place = PlaceOrder(InMemoryStore(), ticketing)
    with pytest.raises(UpstreamTimeout):
        await place(ORDER, "client", "k1")
    await place(ORDER, "client", "k1")
    first, second = ticketing.request_keys
    assert first == second
    assert "k1" not in first and "client" not in first  # opaque: derived, not the raw key


@pytest.mark.parametrize("failure", [UpstreamUnavailable("500"), UpstreamTimeout("slow")])
async def test_a_failed_upstream_call_frees_the_key_for_a_retry(failure: Exception) -> None:
    store = InMemoryStore()
    place = PlaceOrder(store, ScriptedTicketing(failure, UpstreamReply(201, ACCEPTED)))

    with pytest.raises(type(failure)):
        await place(ORDER, "client", "k1")
    assert store.rows == {}
    retry = await place(ORDER, "client", "k1")

    assert (retry.response.status, retry.replayed) == (202, False)


async def test_seats_taken_right_now_free_the_key() -> None:
    conflict = UpstreamReply(409, {"title": "Not enough free seats"})
    store = InMemoryStore()
    place = PlaceOrder(store, ScriptedTicketing(conflict, UpstreamReply(201, ACCEPTED)))

    assert (await place(ORDER, "client", "k1")).response.status == 409
    assert store.rows == {}
    assert (await place(ORDER, "client", "k1")).response.status == 202


async def test_an_acceptance_without_an_order_id_is_an_upstream_failure() -> None:
    store = InMemoryStore()
    place = PlaceOrder(store, ScriptedTicketing(UpstreamReply(201, {"status": "?"})))

    with pytest.raises(UpstreamUnavailable):
        await place(ORDER, "client", "k1")
    assert store.rows == {}


class SlowToComplete(InMemoryStore):
    """A store whose ``complete`` waits until the test lets it finish (or fails)."""

    def __init__(self, failure: Exception | None = None) -> None:
        super().__init__()
        self.finish = asyncio.Event()
        self.failure = failure

    async def complete(self, claim: Claim, response: StoredResponse) -> None:
        await self.finish.wait()
        if self.failure is not None:
            raise self.failure
        await super().complete(claim, response)


async def test_an_accepted_order_is_answered_before_its_answer_is_stored() -> None:
    """Storing the answer for a replay is one more database round trip: the client does not
    wait for it (a retry before it lands is covered below, a lost one by ticketing's key)."""
    store = SlowToComplete()
    place = PlaceOrder(store, ScriptedTicketing(UpstreamReply(201, ACCEPTED)))

    first = await asyncio.wait_for(place(ORDER, "client", "k1"), timeout=5)

    assert first.response == StoredResponse(202, ACCEPTED)
    assert store.rows[("client", "k1")][2] is None  # not stored yet
    store.finish.set()
    await place.drain()
    assert store.rows[("client", "k1")][2] == StoredResponse(202, ACCEPTED)


async def test_a_retry_while_its_answer_is_being_stored_waits_for_it_and_is_replayed() -> None:
    store = SlowToComplete()
    ticketing = ScriptedTicketing(UpstreamReply(201, ACCEPTED))
    place = PlaceOrder(store, ticketing)
    await place(ORDER, "client", "k1")

    retry = asyncio.create_task(place(ORDER, "client", "k1"))
    await asyncio.sleep(0)
    assert not retry.done()  # waiting on the pending answer, not refused as in flight
    store.finish.set()
    again = await asyncio.wait_for(retry, timeout=5)

    assert (again.response, again.replayed) == (StoredResponse(202, ACCEPTED), True)
    assert len(ticketing.placed) == 1


async def test_an_answer_that_could_not_be_stored_still_reached_the_client() -> None:
    """The order exists: the client gets it. The key stays in flight until its lock runs out;
    a retry after that reaches ticketing with the same request key and gets the same order."""
    store = SlowToComplete(failure=OSError("database gone"))
    place = PlaceOrder(store, ScriptedTicketing(UpstreamReply(201, ACCEPTED)))

    first = await place(ORDER, "client", "k1")
    store.finish.set()
    await place.drain()  # logged, not raised

    assert first.response.status == 202
    assert store.rows[("client", "k1")][2] is None


async def test_shutdown_waits_for_answers_being_stored_but_not_forever() -> None:
    store = SlowToComplete()  # never told to finish: a database that stopped answering
    place = PlaceOrder(store, ScriptedTicketing(UpstreamReply(201, ACCEPTED)))
    await place(ORDER, "client", "k1")

    await asyncio.wait_for(place.drain(timeout=0.05), timeout=5)

    assert store.rows[("client", "k1")][2] is None  # given up, the key left in flight


@contextlib.contextmanager
def warnings_logged() -> Iterator[list[dict[str, Any]]]:
    """The WARNING lines logged inside: message and bound fields."""
    lines: list[dict[str, Any]] = []
    handler = logger.add(
        lambda m: lines.append({"message": m.record["message"], **m.record["extra"]}),
        level="WARNING",
    )
    try:
        yield lines
    finally:
        logger.remove(handler)


async def test_an_answer_not_stored_is_logged_with_why() -> None:
    store = SlowToComplete(failure=OSError("database gone"))
    place = PlaceOrder(store, ScriptedTicketing(UpstreamReply(201, ACCEPTED)))
    with warnings_logged() as lines:
        await place(ORDER, "client", "k1")
        store.finish.set()
        await place.drain()

    [line] = lines
    assert line["message"] == "order answer not stored for replay; a retry asks ticketing again"
    assert (line["error"], line["reason"]) == ("OSError", "database gone")
    assert line["trip_id"] == ORDER.trip_id  # the request's own fields, for its trace


async def test_answers_given_up_at_shutdown_are_logged_with_their_count() -> None:
    store = SlowToComplete()
    place = PlaceOrder(store, ScriptedTicketing(UpstreamReply(201, ACCEPTED)))
    await place(ORDER, "client", "k1")
    with warnings_logged() as lines:
        await place.drain(timeout=0.05)

    [line] = lines
    assert line["answers"] == 1
    assert "not stored for replay before shutdown" in line["message"]
