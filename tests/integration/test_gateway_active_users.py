"""Active users on the real store: two gateway replicas sharing one PostgreSQL count each
customer once, on a clock the test sets and through the API; a real Prometheus scraping both
replicas answers the Control Tower's active-users panel with that number."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from safiri_chaos.prometheus import running_prometheus
from safiri_gateway.adapters.active_users import (
    ACTIVE_USERS,
    ActiveUsers,
    PostgresSightings,
    active_users_gauge,
)
from safiri_gateway.adapters.schema import apply_schema, ensure_database
from tests.conftest import eventually
from tests.integration.gateway_harness import (
    fake_ticketing,
    gateway_settings,
    order_body,
    order_headers,
    running_gateway,
)

pytestmark = pytest.mark.integration

CONTROL_TOWER = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/control-tower.json"


def active_users_expr() -> str:
    panels = json.loads(CONTROL_TOWER.read_text())["panels"]
    (expr,) = [
        t["expr"]
        for p in panels
        for t in p.get("targets", [])
        if "active_users" in t.get("expr", "")
    ]
    return str(expr)


async def test_the_shared_store_counts_the_distinct_customers_of_the_last_five_minutes(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_database("active_users_store")
    await ensure_database(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    try:
        await apply_schema(pool)
        now = datetime.now(UTC)
        clocks = {"a": now, "b": now}
        replicas = {}
        for name in clocks:
            registry = CollectorRegistry()
            users = ActiveUsers(
                PostgresSightings(pool),
                active_users_gauge(registry),
                b"secret",
                lambda name=name: clocks[name],  # type: ignore[misc]
            )
            replicas[name] = (users, registry)
        a, b = replicas["a"][0], replicas["b"][0]
        a.seen("254712345678")
        b.seen("254712345678")  # the same customer on the other replica
        b.seen("254722000001")
        clocks["a"] = clocks["b"] = now + timedelta(minutes=4)
        a.seen("254733000002")
        # Each replica writes its sightings at its next flush (within FLUSH_SECONDS); once both
        # have, every replica counts the same customers.
        for users, _ in replicas.values():
            await users.flush()
        for users, registry in replicas.values():
            await users.refresh()
            assert registry.get_sample_value("active_users") == 3
        clocks["a"] = clocks["b"] = now + timedelta(minutes=5, seconds=1)
        for users, registry in replicas.values():
            await users.refresh()
            assert registry.get_sample_value("active_users") == 1
        stored = await pool.fetch("SELECT customer FROM customer_sightings")
        assert len(stored) == 1  # the older sightings are gone
        assert all(b"2547" not in bytes(r["customer"]) for r in stored)
    finally:
        await pool.close()


async def test_orders_through_two_replicas_show_on_the_active_users_panel(
    make_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    url = await make_database("active_users_gateways")
    phones = [f"2547{n:08d}" for n in (11, 12, 13)]
    async with fake_ticketing() as ticketing:
        settings = gateway_settings(ticketing.url, url)
        async with running_gateway(settings) as one, running_gateway(settings) as two:
            # 11 and 12 through one replica, 12 and 13 through the other: three customers.
            for gateway, phone in (
                (one, phones[0]),
                (one, phones[1]),
                (two, phones[1]),
                (two, phones[2]),
            ):
                async with gateway.client.post(
                    "/api/v1/orders", json=order_body(phone=phone), headers=order_headers()
                ) as response:
                    assert response.status == 202, await response.text()
            for gateway in (one, two):
                await gateway.client.server.app[ACTIVE_USERS].refresh()
            conn = await asyncpg.connect(url)
            try:
                rows = await conn.fetch("SELECT customer::text FROM customer_sightings")
            finally:
                await conn.close()
            assert len(rows) == 3
            assert not any(p in r["customer"] for r in rows for p in phones)

            targets = [f"127.0.0.1:{g.client.server.port}" for g in (one, two)]
            async with (
                running_prometheus({"gateway": targets}, [], tmp_path / "prometheus") as prom,
                aiohttp.ClientSession() as http,
            ):
                expr = active_users_expr()

                async def shown() -> float | None:
                    async with http.get(f"{prom}/api/v1/query", params={"query": expr}) as r:
                        result = (await r.json())["data"]["result"]
                    return float(result[0]["value"][1]) if result else None

                async def both_scraped() -> bool:
                    async with http.get(
                        f"{prom}/api/v1/query", params={"query": "count(active_users)"}
                    ) as r:
                        result = (await r.json())["data"]["result"]
                    return bool(result) and float(result[0]["value"][1]) == 2

                await eventually(both_scraped, what="both replicas scraped")
                assert await shown() == 3  # max over replicas: not 6, their sum
