"""Cluster mode under test: two replicas of each service behind HAProxy, on a RabbitMQ cluster
of three nodes of the run's own (never the machine's broker), with databases of its own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from safiri.otlp import running_receiver
from safiri.suite import Suite, drop_databases, isolated_config
from tests.e2e.conftest import HOLD_TTL_SECONDS, Running, sample_sum

REPLICAS = 2
NODES = 3


class Cluster(Running):
    async def replica_metric(self, role: str, replica: int, name: str, **labels: str) -> float:
        """``name`` summed over the samples with ``labels``, read from one replica directly."""
        [slot] = [s for s in self.suite.replicas_of(role) if s.replica == replica]
        async with self.http.get(f"http://127.0.0.1:{slot.port}/metrics") as response:
            return sample_sum(await response.text(), name, **labels)

    async def total_metric(self, role: str, name: str, **labels: str) -> float:
        """``name`` summed over every replica of ``role`` (each read directly)."""
        return sum(
            [
                await self.replica_metric(role, slot.replica, name, **labels)
                for slot in self.suite.replicas_of(role)
            ]
        )


@pytest_asyncio.fixture(scope="session")
async def cluster(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    api_key = secrets.token_urlsafe(16)
    log_dir = tmp_path_factory.mktemp("cluster")
    async with running_receiver() as (spans, otlp_url):
        config = isolated_config(
            api_key=api_key,
            database_prefix=f"safiri_test_{run_id}_cluster",
            amqp_url="",  # the suite's own RabbitMQ nodes
            log_dir=log_dir,
            otlp_endpoint=otlp_url,
            extra_env={
                "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0.1",
                "SAFIRI_HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),
                "SAFIRI_SWEEP_INTERVAL_SECONDS": "0.5",
                "SAFIRI_SEED_DAYS": "3",
                "SAFIRI_RECONCILE_AFTER_SECONDS": "1",
                "SAFIRI_RECONCILE_INTERVAL_SECONDS": "0.5",
                "SAFIRI_QUEUE_POLL_SECONDS": "0.5",
            },
        )
        config.replicas, config.rabbitmq_nodes = REPLICAS, NODES
        config.state_path = log_dir / "suite-state.json"
        try:
            async with Suite(config) as suite, aiohttp.ClientSession() as http:
                yield Cluster(suite, spans, api_key, http)
        finally:
            await drop_databases(config)


def state_file(cluster: Cluster) -> Path:
    path = cluster.suite.config.state_path
    assert path is not None
    return path
