"""A real Prometheus scraping the running suite, with a test copy of the repository's rules.

The copy keeps every expression and shortens only time: rate windows, ``for`` durations and the
evaluation interval, so an alert that takes minutes in production fires within seconds here.
The shipped rules are never changed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import Running

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
SERVICES = ("gateway", "ticketing", "payment", "mpesa-simulator")

_WINDOW = re.compile(r"\[(\d+)([mh])\]")
_FOR = re.compile(r"^(\s+for:\s*)(\d+)([smh])\s*$", re.MULTILINE)


def fast_rules(text: str, window: str = "15s", hold: str = "3s") -> str:
    """The same rules with ``[5m]``-style windows → ``window`` and ``for:`` → ``hold``."""
    return _FOR.sub(lambda m: f"{m.group(1)}{hold}", _WINDOW.sub(f"[{window}]", text))


def write_fast_rules(directory: Path) -> list[Path]:
    out = []
    for path in RULES:
        target = directory / path.name
        target.write_text(fast_rules(path.read_text()))
        out.append(target)
    return out


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
