"""Chaos Toolkit actions: the load, and the fault switched on and off in the simulator.

Each is a plain synchronous function, as Chaos Toolkit's Python provider calls them (in a
thread of its own when the activity runs in the background); ``configuration`` and ``secrets``
are the experiment's, injected by name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from .events import FAULT_HEALED, FAULT_INJECTED, LOAD_STOP
from .load import run_load
from .target import Target

__all__ = ["buy_tickets", "heal_faults", "hold_fault", "inject_fault", "stop_load"]

ADMIN_KEY_HEADER = "X-Simulator-Admin-Key"
Config = Mapping[str, Any]


def buy_tickets(configuration: Config, secrets: Config | None = None) -> dict[str, float]:
    """Purchases at ``rate``/s until ``stop_load`` (or ``load_max_seconds``), all recorded."""
    target = Target.from_config(configuration, secrets)
    rate = float(configuration["rate"])
    max_seconds = float(configuration["load_max_seconds"])
    events = target.events
    started = events.record("load_started", rate=rate).at

    def stopped() -> bool:
        return events.first(LOAD_STOP, after=started) is not None

    async def buy() -> dict[str, float]:
        async with aiohttp.ClientSession() as http:
            buyer = target.buyer(http)
            trips = await buyer.trips_on_sale(target.trip_days)
            return await run_load(buyer, trips, rate, max_seconds, stopped)

    summary = asyncio.run(buy())
    events.record("load_finished", **summary)
    return summary


def inject_fault(
    faults: dict[str, Any],
    configuration: Config,
    secrets: Config | None = None,
    delay_seconds: float | str = 0,
) -> dict[str, Any]:
    """After ``delay_seconds`` of healthy load, put ``faults`` in force in the simulator."""
    target = Target.from_config(configuration, secrets)
    time.sleep(float(delay_seconds))
    wanted = {k: _number(v) for k, v in faults.items()}
    answer = asyncio.run(_faults(target, "PUT", wanted))
    target.events.record(FAULT_INJECTED, faults=wanted, in_force=answer)
    return answer


def heal_faults(configuration: Config, secrets: Config | None = None) -> dict[str, Any]:
    """Every simulator fault off (also the rollback: healing twice is harmless)."""
    target = Target.from_config(configuration, secrets)
    answer = asyncio.run(_faults(target, "DELETE", None))
    target.events.record(FAULT_HEALED)
    return answer


def hold_fault(seconds: float | str, configuration: Config) -> float:
    """Keep the fault until ``seconds`` after it went in; returns how long it has been on."""
    target = Target.from_config(configuration)
    injected = target.events.injected_at()
    if injected is None:
        raise RuntimeError("no fault was injected")
    remaining = injected.timestamp() + float(seconds) - time.time()
    if remaining > 0:
        time.sleep(remaining)
    return round(time.time() - injected.timestamp(), 1)


def stop_load(configuration: Config) -> None:
    """Tell the background load to stop (it finishes the purchases in flight)."""
    Target.from_config(configuration).events.record(LOAD_STOP)


def _number(value: Any) -> Any:
    """A configuration value from the environment is a string: "2.5" means the number."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


async def _faults(target: Target, method: str, body: dict[str, Any] | None) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.request(
            method,
            f"{target.simulator_url}/simulator/faults",
            json=body,
            headers={ADMIN_KEY_HEADER: target.simulator_admin_key},
        ) as response,
    ):
        answer: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200:
            raise RuntimeError(f"the simulator refused {method} faults: {answer}")
        return answer
