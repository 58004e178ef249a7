"""Chaos Toolkit actions: the load, the fault switched on and off in the simulator, and a
feature flag switched in the suite's flag file (the incident's remedy: another payment route).

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
from .flagfile import set_default_variant
from .load import run_load
from .target import Target

__all__ = [
    "FLAG_SET",
    "buy_tickets",
    "heal_faults",
    "hold_fault",
    "inject_fault",
    "set_flag",
    "stop_load",
]

ADMIN_KEY_HEADER = "X-Simulator-Admin-Key"
FLAG_SET = "flag_set"
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


def set_flag(
    flag: str,
    variant: str,
    configuration: Config,
    delay_seconds: float | str = 0,
) -> dict[str, str]:
    """Serve ``variant`` for ``flag`` from the suite's flag file (``flags_file``, what the
    services read as SAFIRI_FLAGS_FILE): the file is replaced whole with that one change, and
    the services read it again within about a second. Setting it twice is harmless."""
    target = Target.from_config(configuration)
    if not target.flags_file:
        raise RuntimeError("no flags_file in the configuration: which file do the services read?")
    time.sleep(float(delay_seconds))
    previous = set_default_variant(target.flags_file, flag, variant)
    target.events.record(FLAG_SET, flag=flag, variant=variant, previous=previous)
    return {"flag": flag, "variant": variant, "previous": previous, "file": target.flags_file}


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
