"""A real Prometheus (the Debian binary) on a free loopback port, for tests.

    async with running_prometheus(config_yaml, rule_files, tmp_path) as url:
        ...  # url is http://127.0.0.1:<port>, ready to answer /api/v1/*

The server keeps its TSDB and log in ``tmp_path`` and is terminated on exit. Exemplar storage
is on, as in docker-compose.yml, so exemplar queries work against it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conftest import free_port

__all__ = ["PrometheusNotReady", "running_prometheus"]

BINARY = "prometheus"


class PrometheusNotReady(RuntimeError):
    """Prometheus exited or did not report ready before the deadline; the message has its log."""


@contextlib.asynccontextmanager
async def running_prometheus(
    config_yaml: str,
    rule_files: Sequence[Path] | None,
    tmp_path: Path,
    *,
    ready_timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[str]:
    """Run Prometheus with ``config_yaml`` until the block exits; yield its base URL.

    ``rule_files``, when given, replace the config's own ``rule_files`` (absolute paths, so
    they load wherever the config is written). ``tmp_path`` must be a directory of the
    caller's; the config, the TSDB and ``prometheus.log`` are kept there.
    """
    if shutil.which(BINARY) is None:
        raise PrometheusNotReady(
            "prometheus is not installed (Debian: apt-get install -y prometheus;"
            " scripts/deps.sh --install --test does it)"
        )
    workdir, config_file = _prepare(config_yaml, rule_files, tmp_path)
    log_path = workdir / "prometheus.log"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            BINARY,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
            *extra_args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        await _wait_ready(url, process, log_path, ready_timeout)
        yield url
    finally:
        await _stop(process)


def _prepare(
    config_yaml: str, rule_files: Sequence[Path] | None, tmp_path: Path
) -> tuple[Path, Path]:
    config: dict[str, Any] = yaml.safe_load(config_yaml) or {}
    if rule_files is not None:
        config["rule_files"] = [os.path.abspath(p) for p in rule_files]
    workdir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=tmp_path))
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir, config_file


async def _wait_ready(
    url: str, process: asyncio.subprocess.Process, log_path: Path, timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if process.returncode is not None:
                raise PrometheusNotReady(
                    f"prometheus exited with {process.returncode}:\n{_tail(log_path)}"
                )
            try:
                async with http.get(f"{url}/-/ready") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise PrometheusNotReady(
                    f"prometheus at {url} not ready after {timeout} s:\n{_tail(log_path)}"
                )
            await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        process.kill()
        await process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
