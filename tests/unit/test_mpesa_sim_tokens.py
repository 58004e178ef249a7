"""Access tokens work for 3599 seconds and are never guessable."""

from __future__ import annotations

import pytest

from safiri_mpesa_sim.tokens import TOKEN_LIFETIME_SECONDS, AccessTokens

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_valid_until_it_expires() -> None:
    clock = FakeClock()
    tokens = AccessTokens(clock)
    token = tokens.issue()
    assert tokens.is_valid(token)
    clock.now += TOKEN_LIFETIME_SECONDS - 1
    assert tokens.is_valid(token)
    clock.now += 1
    assert not tokens.is_valid(token)


def test_unknown_or_empty_token_is_invalid() -> None:
    tokens = AccessTokens(FakeClock())
    tokens.issue()
    assert not tokens.is_valid("made-up")
    assert not tokens.is_valid("")


def test_each_token_is_distinct() -> None:
    tokens = AccessTokens(FakeClock())
    issued = {tokens.issue() for _ in range(50)}
    assert len(issued) == 50
    assert all(len(token) >= 24 for token in issued)


def test_expired_tokens_are_forgotten_when_new_ones_are_issued() -> None:
    clock = FakeClock()
    tokens = AccessTokens(clock, lifetime=10)
    old = tokens.issue()
    clock.now += 11
    fresh = tokens.issue()
    assert not tokens.is_valid(old)
    assert tokens.is_valid(fresh)
    assert len(tokens) == 1
