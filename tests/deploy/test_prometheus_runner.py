"""The one Prometheus runner (``safiri_chaos.prometheus``), as the chaos experiments, ``safiri
up``, the dashboards' test and the live signal tests use it: its own port and data directory,
ready when it says so, stopped through its own process, and a clear error when it cannot start.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from safiri_chaos.prometheus import PrometheusError, running_prometheus

pytestmark = pytest.mark.deploy


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_prometheus_runs_on_its_own_port_and_data_dir_until_the_block_exits(
    tmp_path: Path,
) -> None:
    started: list[tuple[int, int]] = []
    workdir = tmp_path / "prometheus"
    async with running_prometheus(
        {}, [], workdir, "15s", on_started=lambda pid, port: started.append((pid, port))
    ) as url:
        [(pid, port)] = started
        assert url == f"http://127.0.0.1:{port}"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}/api/v1/status/flags") as response,
        ):
            assert response.status == 200  # ready when the block starts
            flags = (await response.json())["data"]
        assert flags["storage.tsdb.path"] == str(workdir / "data")
        assert "exemplar-storage" in flags["enable-feature"]  # as in docker-compose.yml
        assert _alive(pid)
    assert not _alive(pid), "the process should be stopped when the block exits"
    assert (workdir / "prometheus.yml").is_file()
    assert (workdir / "data").is_dir()


async def test_a_prometheus_that_cannot_start_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: broken\n    rules:\n      - alert: X\n        expr: (\n")
    with pytest.raises(PrometheusError, match=r"prometheus exited with \d+:\n(.|\n)*broken"):
        async with running_prometheus({}, [broken], tmp_path / "prometheus", "15s"):
            pytest.fail("a Prometheus with a broken rule file should not become ready")
