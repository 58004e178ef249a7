"""``python -m safiri_fleet_sim`` as the suite starts it (role ``fleet-simulator``): it asks a
ticketing for the trips under way, publishes their buses' fixes to a real RabbitMQ, and stops
cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from aiohttp import web

from safiri_contracts import EVENTS_EXCHANGE, BusPositionReported
from safiri_suite.suite import REPLICATED, SuiteConfig, plan_slots
from tests.conftest import eventually, free_port, own_vhost, serving
from tests.integration.test_mpesa_sim_process import wait_until_healthy

pytestmark = pytest.mark.integration

TRIP = "4f0c2a57-1e0b-4c1e-9d7a-2f6b3c4d5e6f"


def test_the_suite_runs_one_fleet_simulator_on_its_port_even_with_replicas() -> None:
    config = SuiteConfig(api_keys=["k"], fleet_port=free_port(), replicas=2)
    slots = [s for s in plan_slots(config).values() if s.role == "fleet-simulator"]
    assert [(s.replica, s.port) for s in slots] == [(0, config.fleet_port)]
    assert "fleet-simulator" not in REPLICATED
    assert config.env()["SAFIRI_FLEET_SIM_PORT"] == str(config.fleet_port)


async def fake_ticketing() -> web.Application:
    now = datetime.now(UTC)
    trip = {
        "trip_id": TRIP,
        "bus_id": "KB0001",
        "origin": "Nairobi",
        "destination": "Mombasa",
        "departs_at": (now - timedelta(hours=2)).isoformat(),
        "arrives_at": (now + timedelta(hours=6)).isoformat(),
    }

    async def under_way(request: web.Request) -> web.Response:
        return web.json_response({"at": now.isoformat(), "trips": [trip]})

    app = web.Application()
    app.router.add_get("/fleet/trips-under-way", under_way)
    return app


async def test_the_module_publishes_fixes_and_exits_cleanly_on_sigterm() -> None:
    with own_vhost(f"safiri-test-fleet-proc-{uuid.uuid4().hex[:8]}") as amqp_url:
        connection = await aio_pika.connect_robust(amqp_url)
        async with connection, serving(await fake_ticketing()) as ticketing_url:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, BusPositionReported.routing_key)
            port = free_port()
            env = {
                **os.environ,
                "OTEL_SDK_DISABLED": "true",
                "SAFIRI_FLEET_SIM_PORT": str(port),
                "SAFIRI_AMQP_URL": amqp_url,
                "SAFIRI_TICKETING_URL": ticketing_url,
                "SAFIRI_FLEET_SIM_FIX_INTERVAL_SECONDS": "0.2",
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "safiri_fleet_sim",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                await wait_until_healthy(f"http://127.0.0.1:{port}/readyz", process)

                async def a_fix() -> aio_pika.abc.AbstractIncomingMessage | None:
                    return await queue.get(fail=False, no_ack=True)

                message = await eventually(a_fix, what="a fix from the simulator process")
                fix = BusPositionReported.from_body(message.body)
                assert isinstance(fix, BusPositionReported)
                assert (fix.bus_id, fix.trip_id) == ("KB0001", TRIP)
                assert -4.1 < fix.latitude < -1.2 and 36.8 < fix.longitude < 39.7
                process.send_signal(signal.SIGTERM)
                stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert b'"service": "fleet-simulator"' in stdout
    assert b"Traceback" not in stdout + stderr
