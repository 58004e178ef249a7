"""The invariant checker's entry point: snapshot the suite, then judge it."""

from __future__ import annotations

import asyncio

from .history import Op
from .invariants import InvariantReport, Limits, check, in_flight
from .invariants.operations import client_id
from .invariants.read import Sources, read_snapshot

__all__ = ["check_suite"]


async def check_suite(
    sources: Sources,
    limits: Limits,
    ops: list[Op] | None = None,
    *,
    api_key: str | None = None,
    wait_for_in_flight: bool = False,
    poll_seconds: float = 0.5,
) -> InvariantReport:
    """Check every invariant (and ``ops``, a recorded history made with ``api_key``, if given).

    With ``wait_for_in_flight``, pending orders are first given time to settle.

    Waiting ends by itself: a pending order is in flight only until its bound, after which
    it is a violation.
    """
    while True:
        snapshot = await read_snapshot(sources)
        if not wait_for_in_flight or not in_flight(snapshot, limits):
            break
        await asyncio.sleep(poll_seconds)
    return check(snapshot, limits, ops, client_id(api_key) if api_key else None)
