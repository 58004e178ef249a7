"""OAuth access tokens: issued for the consumer credentials, valid for 3599 seconds."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

__all__ = ["TOKEN_LIFETIME_SECONDS", "AccessTokens"]

TOKEN_LIFETIME_SECONDS = 3599


class AccessTokens:
    """The tokens handed out so far and when each stops working."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        lifetime: float = TOKEN_LIFETIME_SECONDS,
    ) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        now = self._clock()
        # Forget expired tokens here so a long load test cannot grow the table without bound.
        self._expiry = {token: at for token, at in self._expiry.items() if at > now}
        token = secrets.token_urlsafe(24)
        self._expiry[token] = now + self._lifetime
        return token

    def __len__(self) -> int:
        """How many tokens are remembered (expired ones linger until the next ``issue``)."""
        return len(self._expiry)

    def is_valid(self, token: str) -> bool:
        expires_at = self._expiry.get(token)
        return expires_at is not None and self._clock() < expires_at
