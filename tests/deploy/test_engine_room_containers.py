"""The Engine Room's CPU and memory panels read each service's container series (cAdvisor in
compose, the kubelet's cAdvisor in Kubernetes) where they exist and its process series
otherwise, on a real Prometheus holding backfilled series of both shapes.

The series are written as OpenMetrics and turned into TSDB blocks by ``promtool tsdb
create-blocks-from openmetrics``; Prometheus then serves them. Three services: gateway has a
compose container (from 12 minutes before the end on) and its process, ticketing only its
process, payment a Kubernetes container and its process. Other containers (RabbitMQ, a
machine's root cgroup, a pod's sandbox and pod-level sums) are there too and must not show.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yaml

from safiri_chaos.prometheus import running_prometheus

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
ENGINE_ROOM = ROOT / "deploy" / "grafana" / "dashboards" / "engine-room.json"
COMPOSE_PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"

STEP = 15  # seconds between samples, as the compose Prometheus scrapes
SPAN = 40 * 60  # the series cover the 40 minutes before END
CONTAINERS_FOR = 12 * 60  # the containers' series only the last 12 minutes of those
END = int(time.time()) // STEP * STEP - 60


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    per_second: float = 0.0  # a counter's rate; 0 for a gauge
    value: float = 0.0  # a gauge's value
    containers_only: bool = False  # from END - CONTAINERS_FOR on

    def lines(self) -> list[str]:
        start = END - (CONTAINERS_FOR if self.containers_only else SPAN)
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return [
            f"{self.name}{{{labels}}} {self.value + self.per_second * (t - start):.6f} {t}"
            for t in range(start, END + 1, STEP)
        ]


def _compose(service: str) -> dict[str, str]:
    """A cAdvisor series as the compose Prometheus keeps it (the service label relabelled)."""
    return {
        "job": "cadvisor",
        "instance": "cadvisor:8080",
        "id": f"/system.slice/docker-{service}.scope",
        "name": f"safiri-{service}-1",
        "image": f"safiri-{service}:0.1.0",
        "container_label_com_docker_compose_service": service,
        "service": service,
    }


def _kubelet(container: str) -> dict[str, str]:
    """A kubelet cAdvisor series (kube-prometheus' ``kubelet`` job, /metrics/cadvisor)."""
    return {
        "job": "kubelet",
        "instance": "10.0.0.7:10250",
        "metrics_path": "/metrics/cadvisor",
        "namespace": "safiri",
        "pod": "payment-6d9f-x2",
        "container": container,
    }


def _process(service: str) -> dict[str, str]:
    return {"job": f"safiri-{service}", "instance": f"{service}:8080"}


OTHER_JOBS = ("rabbitmq", "cadvisor", "kubelet")
CPU = "container_cpu_usage_seconds_total"
MEMORY = "container_memory_working_set_bytes"
SERIES = [
    # Processes: every service.
    Series("process_cpu_seconds_total", _process("gateway"), per_second=0.05),
    Series("process_cpu_seconds_total", _process("ticketing"), per_second=0.07),
    Series("process_cpu_seconds_total", _process("payment"), per_second=0.03),
    Series("process_resident_memory_bytes", _process("gateway"), value=50e6),
    Series("process_resident_memory_bytes", _process("ticketing"), value=60e6),
    Series("process_resident_memory_bytes", _process("payment"), value=70e6),
    # Containers: gateway in compose, payment in Kubernetes; ticketing has none.
    Series(CPU, _compose("gateway") | {"cpu": "total"}, per_second=0.11, containers_only=True),
    Series(MEMORY, _compose("gateway"), value=80e6, containers_only=True),
    Series(CPU, _kubelet("payment") | {"cpu": "total"}, per_second=0.13, containers_only=True),
    Series(MEMORY, _kubelet("payment"), value=90e6, containers_only=True),
    # What must not show: another compose service, the root cgroup, a pod's sandbox and sum.
    Series(CPU, _compose("rabbitmq") | {"cpu": "total"}, per_second=0.5, containers_only=True),
    Series(MEMORY, _compose("rabbitmq"), value=500e6, containers_only=True),
    Series(CPU, {"job": "cadvisor", "id": "/", "cpu": "total"}, per_second=0.9),
    Series(MEMORY, {"job": "cadvisor", "id": "/"}, value=900e6),
    Series(CPU, _kubelet("POD") | {"cpu": "total"}, per_second=0.01, containers_only=True),
    Series(CPU, _kubelet("") | {"cpu": "total"}, per_second=0.95, containers_only=True),
    Series(MEMORY, _kubelet(""), value=950e6, containers_only=True),
    # Every target is up.
    *[
        Series("up", {"job": job}, value=1.0)
        for job in ("safiri-gateway", "safiri-ticketing", "safiri-payment", *OTHER_JOBS)
    ],
]


def _openmetrics(series: list[Series]) -> str:
    lines = [line for s in sorted(series, key=lambda s: s.name) for line in s.lines()]
    return "\n".join(lines) + "\n# EOF\n"


@pytest_asyncio.fixture(scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    workdir = tmp_path_factory.mktemp("engine-room")
    source = workdir / "series.om"
    source.write_text(_openmetrics(SERIES))
    await asyncio.to_thread(
        subprocess.run,
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), "data"],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=120,
    )
    async with running_prometheus({}, [], workdir, "15s") as url:
        yield url


def _panel_expr(metric: str) -> str:
    """The one Engine Room expression that reads ``metric``."""
    dashboard = json.loads(ENGINE_ROOM.read_text())
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    found = [t["expr"] for p in panels for t in p.get("targets", []) if metric in t.get("expr", "")]
    assert len(found) == 1, f"{metric}: {found}"
    return str(found[0])


def _job_variable() -> dict[str, str]:
    dashboard = json.loads(ENGINE_ROOM.read_text())
    [job] = [v for v in dashboard["templating"]["list"] if v["name"] == "job"]
    return dict(job)


async def _by_job(prometheus: str, metric: str, job: str, at: int) -> dict[str, float]:
    query = _panel_expr(metric).replace("$__rate_interval", "1m").replace("$job", job)
    params = {"query": query, "time": str(at)}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{prometheus}/api/v1/query", params=params) as response,
    ):
        body = await response.json()
    assert body["status"] == "success", (body, query)
    out: dict[str, float] = {}
    for sample in body["data"]["result"]:
        job_label = sample["metric"].get("job", "")
        assert job_label not in out, f"two series for {job_label}: {body['data']['result']}"
        out[job_label] = round(float(sample["value"][1]), 6)
    return out


ALL = "safiri-.*"  # the job variable's "All", as Grafana sends it


def test_all_is_the_safiri_jobs() -> None:
    assert _job_variable()["allValue"] == ALL


@pytest.mark.parametrize("job", [ALL, ".*"])
async def test_cpu_is_the_containers_where_they_exist_and_the_processes_otherwise(
    prometheus: str, job: str
) -> None:
    assert await _by_job(prometheus, CPU, job, END) == {
        "safiri-gateway": 0.11,  # its compose container
        "safiri-ticketing": 0.07,  # no container: its process
        "safiri-payment": 0.13,  # its Kubernetes container
    }


@pytest.mark.parametrize("job", [ALL, ".*"])
async def test_memory_is_the_containers_where_they_exist_and_the_processes_otherwise(
    prometheus: str, job: str
) -> None:
    assert await _by_job(prometheus, MEMORY, job, END) == {
        "safiri-gateway": 80e6,
        "safiri-ticketing": 60e6,
        "safiri-payment": 90e6,
    }


async def test_before_the_containers_were_scraped_the_processes_show(prometheus: str) -> None:
    before = END - CONTAINERS_FOR - 5 * 60
    assert await _by_job(prometheus, CPU, ALL, before) == {
        "safiri-gateway": 0.05,
        "safiri-ticketing": 0.07,
        "safiri-payment": 0.03,
    }
    assert await _by_job(prometheus, MEMORY, ALL, before) == {
        "safiri-gateway": 50e6,
        "safiri-ticketing": 60e6,
        "safiri-payment": 70e6,
    }


@pytest.mark.parametrize(
    ("job", "cpu", "memory"),
    [("safiri-gateway", 0.11, 80e6), ("safiri-ticketing", 0.07, 60e6)],
)
async def test_one_chosen_service_shows_alone(
    prometheus: str, job: str, cpu: float, memory: float
) -> None:
    assert await _by_job(prometheus, CPU, job, END) == {job: cpu}
    assert await _by_job(prometheus, MEMORY, job, END) == {job: memory}


def test_the_compose_prometheus_keeps_what_the_panels_read() -> None:
    """The cadvisor job drops every other series: the panels' must pass its keep rule."""
    config = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "cadvisor"]
    [keep] = [r for r in job["metric_relabel_configs"] if r.get("action") == "keep"]
    for metric in (CPU, MEMORY):
        assert re.fullmatch(keep["regex"], metric), metric
        assert metric in _panel_expr(metric)
    [service] = [r for r in job["metric_relabel_configs"] if r.get("target_label") == "service"]
    assert service["source_labels"] == ["container_label_com_docker_compose_service"]
