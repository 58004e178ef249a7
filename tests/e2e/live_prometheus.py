"""A real Prometheus scraping the running suite, with a test copy of the repository's rules.

The copy keeps every expression and runs time 60 times faster, in proportion: rate windows,
``for`` durations and age thresholds (``safiri.chaos.prometheus.fast_rules``), so an alert that
takes minutes in production fires within seconds here, for the same combination of windows.
The shipped rules are never changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from safiri.chaos.prometheus import RULES_DIR, write_rules

from .conftest import Running

RULES = sorted(RULES_DIR.glob("*.yml"))
SERVICES = ("gateway", "ticketing", "payment", "mpesa-simulator")


def write_fast_rules(directory: Path) -> list[Path]:
    return write_rules(directory, fast=True)


def scrape_config(running: Running, interval: str = "1s") -> str:
    jobs = "\n".join(
        f"  - job_name: safiri-{service}\n"
        f"    static_configs:\n"
        f"      - targets: ['127.0.0.1:{running.config.port(service)}']"
        for service in SERVICES
    )
    return (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"scrape_configs:\n{jobs}\n"
    )


async def query(http: aiohttp.ClientSession, url: str, expr: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def alerts(http: aiohttp.ClientSession, url: str, name: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/api/v1/alerts") as response:
        body = await response.json()
    return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]
