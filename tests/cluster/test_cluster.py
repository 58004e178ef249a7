"""Two replicas of every service on a three-node RabbitMQ cluster keep Safiri's promises: no
seat sold twice across gateway replicas, no outbox row published twice by two relays, the
reconciliation job on exactly one replica and taken over within seconds of a kill -9, and a
RabbitMQ node lost under load losing and duplicating nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from safiri_chaos.checker import check_suite
from safiri_chaos.gateway import Buyer
from safiri_chaos.history import HistoryRecorder, read_history
from safiri_chaos.invariants import Limits
from safiri_chaos.invariants.read import Sources
from safiri_chaos.load import run_load
from safiri_suite.cluster import ctl
from safiri_suite.ps import read_processes
from tests.conftest import eventually

from .conftest import NODES, REPLICAS, Cluster, state_file

pytestmark = [pytest.mark.cluster, pytest.mark.serial]


def sources(cluster: Cluster) -> Sources:
    c = cluster.config
    return Sources(
        ticketing_database_url=c.database_url("ticketing"),
        payment_database_url=c.database_url("payment"),
        gateway_database_url=c.database_url("gateway"),
        ledger_url=f"http://127.0.0.1:{c.mpesa_port}/simulator/ledger",
        amqp_url=c.amqp_url,
    )


def strict(healed_at: datetime | None = None) -> Limits:
    return Limits(hold_ttl_seconds=8, final_grace_seconds=15, healed_at=healed_at, strict=True)


async def test_every_replica_and_node_runs_is_ready_and_is_listed(cluster: Cluster) -> None:
    processes = await asyncio.to_thread(read_processes, state_file(cluster))
    roles = sorted((p["role"], p["replica"]) for p in processes)
    for role in ("gateway", "ticketing", "payment"):
        assert [r for r in roles if r[0] == role] == [(role, i) for i in range(REPLICAS)]
    assert [r for r in roles if r[0] == "rabbitmq"] == [("rabbitmq", i) for i in range(NODES)]
    assert ("haproxy", 0) in roles and ("mpesa-simulator", 0) in roles and ("redis", 0) in roles
    assert all(p["ready"] and p["alive"] for p in processes), processes
    node = cluster.suite.rabbit_nodes[0].node
    status = json.loads(await ctl(node, "cluster_status", "--formatter", "json"))
    assert len(status["running_nodes"]) == NODES, status
    # Every queue Safiri consumes is a quorum queue with a member on each node.
    members = await ctl(node, "list_queues", "name", "type", "members", "--no-table-headers")
    consumed = [
        line for line in members.splitlines() if line.startswith(("payment.", "ticketing."))
    ]
    assert consumed, members
    for line in consumed:
        assert "\tquorum\t" in line and line.count("@localhost") == NODES, line


async def test_concurrent_buyers_on_both_gateways_never_share_a_seat(cluster: Cluster) -> None:
    trip = await cluster.add_trip(seats=6)

    async def buy(n: int) -> tuple[int, dict[str, object]]:
        status, body, _ = await cluster.place_order(trip, phone="254712345678")
        return status, body

    answers = await asyncio.gather(*(buy(n) for n in range(30)))
    accepted = [body["order_id"] for status, body in answers if status == 202]
    assert 1 <= len(accepted) <= 6, answers
    assert {status for status, _ in answers} <= {202, 409}
    for order_id in accepted:
        assert (await cluster.final_order(str(order_id)))["status"] == "CONFIRMED"
    # Both gateway replicas took requests: HAProxy spread them.
    for replica in range(REPLICAS):
        served = await cluster.replica_metric(
            "gateway", replica, "http_server_request_duration_seconds_count"
        )
        assert served > 0, f"gateway-{replica} served nothing"
    report = await check_suite(sources(cluster), strict(), [], api_key=cluster.api_key)
    assert report.ok, report.render()


async def test_two_relays_never_publish_an_outbox_row_twice(cluster: Cluster) -> None:
    trip = await cluster.add_trip(seats=40)
    results = await asyncio.gather(
        *(cluster.place_order(trip, phone="254712345678") for _ in range(40))
    )
    for _, body, _ in results:
        await cluster.final_order(str(body["order_id"]))
    for role in ("ticketing", "payment"):
        conn = await asyncpg.connect(cluster.config.database_url(role))
        try:
            rows = await eventually(
                lambda conn=conn: _all_published(conn), what=f"{role}'s outbox to drain"
            )
        finally:
            await conn.close()
        sent = await cluster.total_metric(role, "messaging_client_sent_messages_total")
        per_replica = [
            await cluster.replica_metric(role, r, "messaging_client_sent_messages_total")
            for r in range(REPLICAS)
        ]
        assert sent == rows, f"{role}: {rows} outbox rows, {sent} publishes ({per_replica})"


async def _all_published(conn: asyncpg.Connection) -> int | None:  # type: ignore[type-arg]
    pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return int(await conn.fetchval("SELECT count(*) FROM outbox")) if pending == 0 else None


async def test_reconciliation_runs_on_one_replica_and_moves_within_seconds_of_a_kill_9(
    cluster: Cluster,
) -> None:
    job = {"job": "reconcile_payments"}

    async def holders() -> list[int]:
        active = []
        for r in range(REPLICAS):
            try:
                value = await cluster.replica_metric(
                    "payment", r, "safiri_background_job_active", **job
                )
            except aiohttp.ClientError:
                continue  # being restarted
            if value == 1:
                active.append(r)
        return active

    async def one(other_than: int | None = None) -> list[int] | None:
        found = await holders()
        return found if len(found) == 1 and found[0] != other_than else None

    [holder] = await eventually(one, what="one reconciling replica")
    name = f"payment-{holder}"
    pid = cluster.suite.processes[name].pid
    os.killpg(pid, signal.SIGKILL)
    killed = time.monotonic()
    [successor] = await eventually(
        lambda: one(other_than=holder), timeout=15, what="another replica to take over"
    )
    took = time.monotonic() - killed
    print(f"\nreconciliation moved from payment-{holder} to payment-{successor} in {took:.2f} s")
    assert took < 5.0
    # The killed replica is restarted by the supervisor, and waits as the standby.
    await eventually(
        lambda: _true(cluster.suite.processes[name].pid != pid), what=f"{name} restarted"
    )
    await cluster.suite.wait_ready(30, services=[name])
    assert await holders() == [successor]


async def _true(value: bool) -> bool | None:
    return True if value else None


async def test_a_rabbitmq_node_lost_under_load_loses_and_duplicates_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    stop = asyncio.Event()
    buyer = Buyer(
        cluster.http, cluster.url("gateway", ""), cluster.api_key, HistoryRecorder(history)
    )
    trips = await buyer.trips_on_sale(2)
    load = asyncio.create_task(run_load(buyer, trips, 10, 60, stop.is_set))
    await asyncio.sleep(3)
    victim = cluster.suite.rabbit_nodes[1].node
    await ctl(victim, "stop_app")
    await asyncio.sleep(6)  # purchases go on through the two nodes left (a quorum)
    await ctl(victim, "start_app")
    healed = datetime.now(UTC)
    await asyncio.sleep(3)
    stop.set()
    summary = await load
    ops = list(read_history(history))
    assert summary["purchases"] >= 80, summary
    report = await check_suite(
        sources(cluster),
        strict(healed_at=healed),
        ops,
        api_key=cluster.api_key,
        wait_for_in_flight=True,
    )
    print(f"\n{summary}\n{report.render()}")
    assert report.ok, report.render()
    facts = report.check("recorded operations accounted for").facts
    assert facts["ok"] >= 0.95 * facts["invoked"], facts


async def test_the_public_entry_serves_the_api_but_never_metrics(cluster: Cluster) -> None:
    """Through HAProxy on the gateway's port only /api/v1 is routed; Prometheus still scrapes
    every replica on its own port."""
    for path in ("/metrics", "/healthz", "/readyz"):
        async with cluster.http.get(cluster.url("gateway", path)) as response:
            assert response.status == 404, path
            assert response.content_type == "application/problem+json"
    async with cluster.http.get(
        cluster.url("gateway", "/api/v1/trips"), headers=cluster.auth
    ) as response:
        assert response.status == 400  # the API answers (a search without its parameters)
    for slot in cluster.suite.replicas_of("gateway"):
        async with cluster.http.get(f"http://127.0.0.1:{slot.port}/metrics") as response:
            assert response.status == 200


async def test_one_trace_per_purchase_across_replicas_each_span_naming_its_replica(
    cluster: Cluster,
) -> None:
    trip = await cluster.add_trip(seats=4)
    orders = []
    for _ in range(4):  # round-robin: both replicas of each service take part
        status, body, _ = await cluster.place_order(trip)
        assert status == 202, body
        orders.append(str(body["order_id"]))
    instances: set[str] = set()
    for order_id in orders:
        await cluster.final_order(order_id)

        async def whole(order_id: str = order_id) -> set[str] | None:
            trace_id = cluster.spans.trace_of_order(order_id)
            spans = cluster.spans.trace(trace_id) if trace_id else []
            services = {s.service for s in spans}
            # Each service exports in batches of its own: wait for all four, not one step.
            whole = {"gateway", "ticketing", "payment", "mpesa-simulator"} <= services
            return services if whole and "confirm_order" in {s.name for s in spans} else None

        services = await eventually(whole, what=f"the whole trace of {order_id}")
        assert {"gateway", "ticketing", "payment", "mpesa-simulator"} <= services
        trace_id = cluster.spans.trace_of_order(order_id)
        assert trace_id is not None
        for span in cluster.spans.trace(trace_id):
            assert span.instance is not None
            if span.service in ("gateway", "ticketing", "payment"):
                assert re.fullmatch(rf"{span.service}-[01]", span.instance), span.instance
                instances.add(span.instance)
    assert {"gateway-0", "gateway-1"} <= instances, instances
