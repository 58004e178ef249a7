"""The Idempotency-Key rules, independent of where keys are stored."""

from __future__ import annotations

import pytest

from safiri_gateway.domain.idempotency import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    IdempotencyRecord,
    StoredResponse,
    is_valid_key,
    replay_of,
    worth_keeping,
)

ACCEPTED = StoredResponse(202, {"order_id": "o-1"})


@pytest.mark.parametrize("key", ["a", "x" * 255, "8e0f-4c1b key with spaces ~!"])
def test_keys_are_1_to_255_printable_ascii_characters(key: str) -> None:
    assert is_valid_key(key)


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey", "ключ", "line\n"])
def test_other_keys_are_invalid(key: str) -> None:
    assert not is_valid_key(key)


def test_the_same_body_gets_the_first_answer_again() -> None:
    assert replay_of(IdempotencyRecord("fp", ACCEPTED), "fp") == ACCEPTED


def test_another_body_with_the_same_key_is_refused() -> None:
    with pytest.raises(IdempotencyKeyReused):
        replay_of(IdempotencyRecord("fp", ACCEPTED), "other")


def test_another_body_is_refused_even_while_the_first_is_in_flight() -> None:
    with pytest.raises(IdempotencyKeyReused):
        replay_of(IdempotencyRecord("fp", None), "other")


def test_the_same_body_while_the_first_is_in_flight_is_refused() -> None:
    with pytest.raises(IdempotencyKeyInFlight):
        replay_of(IdempotencyRecord("fp", None), "fp")


@pytest.mark.parametrize("status", [200, 201, 202, 400, 404, 422])
def test_final_answers_are_kept(status: int) -> None:
    assert worth_keeping(status)


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_answers_that_may_change_free_the_key(status: int) -> None:
    assert not worth_keeping(status)
