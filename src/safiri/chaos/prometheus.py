"""A real Prometheus for an experiment: the repository's rules, scraping the suite's services.

``rules="real"`` loads deploy/prometheus/rules/ as shipped; ``rules="fast"`` loads a copy that
keeps every expression and shortens only time (rate windows, ``for:``), so an alert that takes
minutes in production fires within seconds. The shipped rules are never changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

__all__ = [
    "RULES_DIR",
    "PrometheusError",
    "experiment_prometheus",
    "fast_rules",
    "running_prometheus",
    "write_rules",
]

RULES_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "rules"
_WINDOW = re.compile(r"\[(\d+)([mh])\]")
_FOR = re.compile(r"^(\s+for:\s*)(\d+)([smh])\s*$", re.MULTILINE)


class PrometheusError(RuntimeError):
    pass


def fast_rules(text: str, window: str = "15s", hold: str = "3s") -> str:
    """The same rules with ``[5m]``-style windows → ``window`` and ``for:`` → ``hold``."""
    return _FOR.sub(lambda m: f"{m.group(1)}{hold}", _WINDOW.sub(f"[{window}]", text))


def write_rules(directory: Path, fast: bool, window: str = "15s", hold: str = "3s") -> list[Path]:
    shipped = sorted(RULES_DIR.glob("*.yml"))
    if not shipped:
        raise PrometheusError(f"no rules in {RULES_DIR}")
    if not fast:
        return shipped
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for path in shipped:
        target = directory / path.name
        target.write_text(fast_rules(path.read_text(), window, hold))
        out.append(target)
    return out


def _config(targets: Mapping[str, str], rules: list[Path], interval: str) -> str:
    jobs = "".join(
        f"  - job_name: safiri-{service}\n    static_configs:\n      - targets: ['{address}']\n"
        for service, address in targets.items()
    )
    files = "".join(f"  - '{p.resolve()}'\n" for p in rules)
    return (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"rule_files:\n{files}scrape_configs:\n{jobs}"
    )


def _write_config(workdir: Path, text: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(text)


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


@contextlib.asynccontextmanager
async def running_prometheus(
    targets: Mapping[str, str],
    rules: list[Path],
    workdir: Path,
    interval: str = "1s",
    ready_timeout: float = 30.0,
) -> AsyncIterator[str]:
    """Prometheus scraping ``targets`` (service → host:port) until the block exits; its URL."""
    if shutil.which("prometheus") is None:
        raise PrometheusError("prometheus is not installed (Debian: apt-get install prometheus)")
    _write_config(workdir, _config(targets, rules, interval))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (workdir / "prometheus.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        await _wait_ready(url, process, workdir / "prometheus.log", ready_timeout)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_ready(
    url: str, process: asyncio.subprocess.Process, log: Path, timeout: float
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if process.returncode is not None:
                raise PrometheusError(f"prometheus exited: {_read(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{url}/-/ready") as response:
                    if response.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise PrometheusError(f"prometheus at {url} not ready after {timeout} s")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def experiment_prometheus(
    targets: Mapping[str, str], run_dir: Path, configuration: Mapping[str, Any]
) -> AsyncIterator[str]:
    """Prometheus as the experiment's configuration asks: ``rules`` ``real`` or ``fast``
    (``rule_window``, ``rule_for``), every ``prometheus_interval``."""
    fast = str(configuration.get("rules", "real")) == "fast"
    rules = write_rules(
        run_dir / "rules",
        fast,
        str(configuration.get("rule_window", "15s")),
        str(configuration.get("rule_for", "3s")),
    )
    interval = str(configuration.get("prometheus_interval", "1s" if fast else "15s"))
    async with running_prometheus(targets, rules, run_dir / "prometheus", interval) as url:
        yield url
