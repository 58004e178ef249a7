"""A steady, open-loop stream of purchases: one starts every 1/rate s, whether or not the
previous one has answered, so a slow suite sees the same arrival rate as a healthy one."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable

from .gateway import Buyer

__all__ = ["run_load"]


async def run_load(
    buyer: Buyer,
    trips: list[str],
    rate: float,
    max_seconds: float,
    should_stop: Callable[[], bool],
    *,
    max_in_flight: int = 500,
    check_every: float = 0.5,
) -> dict[str, float]:
    """Buy at ``rate``/s until ``should_stop()`` or ``max_seconds``; returns counts by outcome."""
    if not trips:
        raise RuntimeError("no trip has a seat on sale: nothing to buy")
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    in_flight = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def buy(n: int, trip_id: str) -> None:
        try:
            sent = loop.time()
            op = await buyer.purchase(f"load-{n}", trip_id)
            durations.append(loop.time() - sent)
            outcomes[op.type] += 1
        finally:
            in_flight.release()

    next_check = started
    trip_cycle = itertools.cycle(trips)
    for n in itertools.count():
        now = loop.time()
        if now - started >= max_seconds:
            break
        if now >= next_check:
            if should_stop():
                break
            next_check = now + check_every
        await asyncio.sleep(max(0.0, started + n / rate - now))
        await in_flight.acquire()
        task = asyncio.create_task(buy(n, next(trip_cycle)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_for = loop.time() - started
    await asyncio.gather(*tasks)
    return {
        "seconds": round(sent_for, 1),
        "purchases": sum(outcomes.values()),
        "rate": round(sum(outcomes.values()) / sent_for, 1) if sent_for else 0.0,
        **{k: float(v) for k, v in sorted(outcomes.items())},
        **_percentiles(durations),
    }


def _percentiles(durations: list[float]) -> dict[str, float]:
    """p50 and p99 of POST /orders as the buyers saw it, in milliseconds."""
    if not durations:
        return {}
    ordered = sorted(durations)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99)}
