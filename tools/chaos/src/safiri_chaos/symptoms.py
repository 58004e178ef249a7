"""Chaos Toolkit probes of the symptoms, as Prometheus sees them: alerts and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from .events import ALERT_FIRING, ALERT_PENDING, ALERT_RESOLVED
from .probes import POLL, ProbeFailed
from .promql import alert_state as current_alert_state
from .promql import query_value
from .target import Target

__all__ = [
    "alert_fires",
    "alert_resolves",
    "alert_state",
    "metric_rose",
    "metric_settles",
    "readiness_fails",
    "time_after_fault",
]

Config = Mapping[str, Any]


def alert_state(
    alert: str,
    configuration: Config,
    wait_for: str = "",
    timeout_seconds: float | str = 0,
    labels: Mapping[str, str] | None = None,
) -> str:
    """The alert's state; with ``wait_for``, polled until it is that state or time is up."""
    target = Target.from_config(configuration)
    return asyncio.run(_await_alert(target, alert, wait_for, float(timeout_seconds), labels))


def alert_fires(
    alert: str,
    configuration: Config,
    timeout_seconds: float | str = 300,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Wait for ``alert`` to fire (with ``labels``: a series carrying them, e.g. the provider
    that fails); returns how long after the fault it went pending and firing."""
    target = Target.from_config(configuration)
    state = asyncio.run(_await_alert(target, alert, "firing", float(timeout_seconds), labels))
    if state != "firing":
        named = f" for {dict(labels)}" if labels else ""
        raise ProbeFailed(f"{alert}{named} did not fire within {timeout_seconds} s (it is {state})")
    injected = target.events.injected_at()
    found: dict[str, Any] = {"alert": alert, **({"labels": dict(labels)} if labels else {})}
    for event in target.events.read():
        if event.data.get("alert") != alert or event.name not in (ALERT_PENDING, ALERT_FIRING):
            continue
        if injected is not None and event.at >= injected:
            label = event.name.removeprefix("alert_")
            after = round((event.at - injected).total_seconds(), 1)
            found.setdefault(f"{label}_after_fault_s", after)
    return found


def alert_resolves(
    alert: str, configuration: Config, timeout_seconds: float | str = 300
) -> dict[str, Any]:
    """Wait for ``alert`` to stop firing once the fault is healed."""
    target = Target.from_config(configuration)
    state = asyncio.run(_await_alert(target, alert, "inactive", float(timeout_seconds)))
    if state != "inactive":
        raise ProbeFailed(f"{alert} still {state} {timeout_seconds} s after the fault healed")
    event = target.events.record(ALERT_RESOLVED, alert=alert)
    healed = target.events.healed_at()
    after = round((event.at - healed).total_seconds(), 1) if healed is not None else None
    return {"alert": alert, "resolved_after_heal_s": after}


async def _await_alert(
    target: Target,
    alert: str,
    wait_for: str,
    timeout: float,
    labels: Mapping[str, str] | None = None,
) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while True:
            state = await current_alert_state(http, target.prometheus_url, alert, labels)
            if state != last and state in ("pending", "firing") and wait_for == "firing":
                target.events.record(f"alert_{state}", alert=alert)
            last = state
            if not wait_for or state == wait_for or loop.time() > deadline:
                return state
            await asyncio.sleep(POLL)


def metric_rose(
    query: str,
    configuration: Config,
    min_increase: float | str = 1,
    timeout_seconds: float | str = 0,
) -> float:
    """How much ``query`` grew since the fault went in; fails below ``min_increase``.

    With ``timeout_seconds``, Prometheus is asked again until the growth is enough or the time
    is up (a gauge that climbs while the fault lasts, a restart that shows at the next scrape).
    """
    target = Target.from_config(configuration)
    injected = target.events.injected_at()

    async def measure() -> float:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout_seconds)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            before = await query_value(http, target.prometheus_url, query, injected)
            while True:
                rose = await query_value(http, target.prometheus_url, query) - before
                if rose >= float(min_increase) or loop.time() > deadline:
                    return rose
                await asyncio.sleep(POLL)

    rose = asyncio.run(measure())
    if rose < float(min_increase):
        within = f" within {timeout_seconds} s" if float(timeout_seconds) else ""
        raise ProbeFailed(
            f"{query} rose by {rose:g} since the fault{within}, expected ≥ {min_increase}"
        )
    return rose


def time_after_fault(query: str, configuration: Config, timeout_seconds: float | str = 60) -> float:
    """Wait until ``query``, a Unix time such as ``max(process_start_time_seconds{...})``, is
    later than the moment the fault went in: a process started after it and was scraped.
    Returns how many seconds after the fault that was; fails at the deadline.

    Unlike a rise of the metric since the fault, this needs no baseline, so it cannot pass
    because Prometheus had not scraped the old process yet when the fault went in.
    """
    target = Target.from_config(configuration)
    injected = target.events.injected_at()
    if injected is None:
        raise ProbeFailed("no fault was recorded: nothing to compare the time with")

    async def measure() -> float | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout_seconds)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                value = await query_value(http, target.prometheus_url, query)
                if value > injected.timestamp():
                    return value - injected.timestamp()
                if loop.time() > deadline:
                    return None
                await asyncio.sleep(POLL)

    after = asyncio.run(measure())
    if after is None:
        raise ProbeFailed(
            f"{query} never passed the fault's time ({injected:%H:%M:%S}) within"
            f" {timeout_seconds} s: no new process was scraped"
        )
    return round(after, 3)


def metric_settles(
    query: str,
    configuration: Config,
    at_most: float | str = 0,
    timeout_seconds: float | str = 60,
) -> float:
    """Wait until ``query`` is at most ``at_most`` (an outbox drained, a backlog gone);
    returns its value then, and fails with the last value at the deadline."""
    target = Target.from_config(configuration)

    async def watch() -> float:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout_seconds)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                value = await query_value(http, target.prometheus_url, query)
                if value <= float(at_most):
                    return value
                if loop.time() > deadline:
                    raise ProbeFailed(
                        f"{query} is still {value:g} after {timeout_seconds} s"
                        f" (expected ≤ {at_most})"
                    )
                await asyncio.sleep(POLL)

    return asyncio.run(watch())


def readiness_fails(
    service_url_key: str, configuration: Config, timeout_seconds: float | str = 30
) -> dict[str, Any]:
    """Poll the service's ``/readyz`` (its URL is the configuration entry ``service_url_key``,
    e.g. ``ticketing_url``) until it answers anything but 200 or cannot be reached; returns
    what it said and how long after the fault."""
    target = Target.from_config(configuration)
    url = f"{str(configuration[service_url_key]).rstrip('/')}/readyz"
    injected = target.events.injected_at()

    async def watch() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout_seconds)
        last: Any = None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while True:
                try:
                    async with http.get(url) as response:
                        body = await response.json(content_type=None)
                        if response.status != 200:
                            return {"status": response.status, "checks": body.get("checks")}
                        last = body
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    return {"status": None, "error": repr(exc)}
                if loop.time() > deadline:
                    raise ProbeFailed(f"{url} still ready {timeout_seconds} s on: {last}")
                await asyncio.sleep(POLL)

    found = asyncio.run(watch())
    if injected is not None:
        found["after_fault_s"] = round(datetime.now(UTC).timestamp() - injected.timestamp(), 1)
    return found
