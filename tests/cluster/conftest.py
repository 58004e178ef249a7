"""Cluster mode under test: two replicas of each service behind HAProxy, on a RabbitMQ cluster
of three nodes of the run's own (never the machine's broker), with databases of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from safiri.otlp import running_receiver
from tests.e2e.conftest import Running, sample_sum, suite_running

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
    async with (
        running_receiver() as (spans, otlp_url),
        suite_running(
            f"safiri_test_{run_id}_cluster",
            "",  # the suite's own RabbitMQ nodes
            tmp_path_factory.mktemp("cluster"),
            otlp_url,
            replicas=REPLICAS,
            rabbitmq_nodes=NODES,
            SAFIRI_QUEUE_POLL_SECONDS="0.5",
        ) as running,
    ):
        yield Cluster(running.suite, spans, running.api_key, running.http)


def state_file(cluster: Cluster) -> Path:
    path = cluster.suite.config.state_path
    assert path is not None
    return path
