"""The simulator's ledger: every push it took, the ground truth for "was money taken"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from .model import LedgerEntry

__all__ = ["ADMIN_KEY_HEADER", "Ledger", "read_ledger"]

ADMIN_KEY_HEADER = "X-Simulator-Admin-Key"


@dataclass(frozen=True)
class Ledger:
    entries: list[LedgerEntry]
    since: datetime | None  # when the simulator's record begins
    durable: bool  # kept across simulator restarts (a journal file)

    def joined(self, other: Ledger) -> Ledger:
        """Both providers' pushes as one ledger: money taken is money taken, whichever route
        took it (an order charged on both is charged twice). It covers the orders from the
        later of the two beginnings, and is durable only if both are."""
        starts = [s for s in (self.since, other.since) if s is not None]
        return Ledger(
            [*self.entries, *other.entries],
            max(starts) if starts else None,
            self.durable and other.durable,
        )


async def read_ledger(url: str | None, admin_key: str, provider: str = "mpesa") -> Ledger | None:
    if url is None:
        return None
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, headers={ADMIN_KEY_HEADER: admin_key}) as response,
    ):
        response.raise_for_status()
        body = json.loads(await response.text())
    entries = [
        LedgerEntry(
            checkout_request_id=str(t["checkout_request_id"]),
            account_reference=str(t["account_reference"]),
            amount=int(t["amount"]),
            state=str(t["state"]),
            result_code=t["result_code"] if isinstance(t["result_code"], int) else None,
            receipt=t.get("receipt"),
            provider=provider,
        )
        for t in body["transactions"]
    ]
    since = body.get("since")
    return Ledger(
        entries, datetime.fromisoformat(since) if since else None, bool(body.get("durable"))
    )
