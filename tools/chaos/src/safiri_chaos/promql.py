"""The two questions an experiment asks Prometheus: an alert's state, and a query's value."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp

__all__ = ["PrometheusError", "alert_state", "query_value"]


class PrometheusError(RuntimeError):
    pass


async def _get(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> Any:
    async with http.get(url, params=params) as response:
        body = await response.json(content_type=None)
    if body.get("status") != "success":
        raise PrometheusError(f"{url} {params}: {body.get('error', body)}")
    return body["data"]


async def alert_state(
    http: aiohttp.ClientSession,
    prometheus_url: str,
    name: str,
    labels: Mapping[str, str] | None = None,
) -> str:
    """``inactive``, ``pending`` or ``firing`` (the worst of the alert's series; with
    ``labels``, of the series that carry them, e.g. ``{"provider": "mpesa"}``)."""
    data = await _get(http, f"{prometheus_url}/api/v1/alerts", {})
    wanted = {"alertname": name, **(labels or {})}
    states = {
        a["state"]
        for a in data["alerts"]
        if all(a["labels"].get(k) == v for k, v in wanted.items())
    }
    for state in ("firing", "pending"):
        if state in states:
            return state
    return "inactive"


async def query_value(
    http: aiohttp.ClientSession, prometheus_url: str, expr: str, at: datetime | None = None
) -> float:
    """The sum of an instant query's samples (0 when it has none)."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at.timestamp():.3f}"
    data = await _get(http, f"{prometheus_url}/api/v1/query", params)
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    return sum(float(sample["value"][1]) for sample in data["result"])
