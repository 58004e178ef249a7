"""A real Prometheus (and Alertmanager) for an experiment, ``safiri up`` and the tests: the
repository's rules, scraping the suite's services.

The one runner of these processes: the chaos experiments, ``safiri up``'s monitoring, the
deploy tests (the dashboards' expressions parsed by a real Prometheus) and the end-to-end
signal tests all start them through ``running_prometheus`` / ``running_alertmanager``. Each
process gets ports of its own (``safiri_suite.ports.free_port`` unless given), keeps its config,
data and log in the caller's directory, is polled on ``/-/ready`` until a deadline (exiting or
missing it raises ``PrometheusError`` with its exit status and the end of its log), and is
stopped through its own process (SIGTERM, SIGKILL after 10 s), never by name.

``rules="real"`` loads deploy/prometheus/rules/ as shipped; ``rules="fast"`` loads a copy that
keeps every expression and runs time faster in proportion (rate windows, ``for:``, age
thresholds: a minute becomes a second), so an alert that takes minutes in production fires
within seconds, for the same combination of windows. The shipped rules are never changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from safiri_suite.ports import free_port

__all__ = [
    "ALERTMANAGER_TEMPLATE",
    "RULES_DIR",
    "PrometheusError",
    "experiment_prometheus",
    "fast_rules",
    "local_alertmanager_config",
    "running_alertmanager",
    "running_prometheus",
    "write_rules",
]

_DEPLOY = Path(__file__).resolve().parents[4] / "deploy"
RULES_DIR = _DEPLOY / "prometheus" / "rules"
ALERTMANAGER_TEMPLATE = _DEPLOY / "alertmanager" / "alertmanager.yml.tmpl"
_PLACEHOLDER = re.compile(r"\$\{(SAFIRI_[A-Z_]+)\}")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"\[(\d+)(ms|s|m|h|d)\]")
_FOR = re.compile(r"^(\s+for:[ \t]*)(\d+)(ms|s|m|h|d)[ \t]*$", re.MULTILINE)
# A threshold on an age in seconds is time too: "older than 15 minutes" is 15 s at 1/60.
_AGE_THRESHOLD = re.compile(r"(_age_seconds\b[^\n>]*>\s*)(\d+(?:\.\d+)?)")
TIME_SCALE = 60.0
MIN_WINDOW_SECONDS = 4.0


class PrometheusError(RuntimeError):
    """Prometheus or Alertmanager is not installed, exited, or was not ready by the deadline;
    the message says which, with the end of its log."""


def _duration(seconds: float) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def fast_rules(
    text: str, scale: float = TIME_SCALE, min_window_seconds: float = MIN_WINDOW_SECONDS
) -> str:
    """The same rules with time running ``scale`` times faster, every duration in proportion.

    Rate windows (``[5m]`` → ``[5s]`` at 60), ``for:`` holds and thresholds on ``*_age_seconds``
    are divided by ``scale``, so a multi-window burn-rate alert keeps the ratio between its
    windows (1h : 5m stays 12 : 1) and fires for the same combination of windows as in
    production. Only a window shorter than ``min_window_seconds`` is raised to it: a rate needs
    a few scrapes in its window (``[1m]`` → 4 s rather than 1 s at a 1 s scrape interval).
    """
    if scale <= 0:
        raise ValueError(f"the time scale must be positive, not {scale}")

    def seconds(amount: str, unit: str) -> float:
        return int(amount) * _UNITS[unit] / scale

    def window(m: re.Match[str]) -> str:
        return f"[{_duration(max(seconds(m[1], m[2]), min_window_seconds))}]"

    def hold(m: re.Match[str]) -> str:
        return f"{m[1]}{_duration(seconds(m[2], m[3]))}"

    def age(m: re.Match[str]) -> str:
        return f"{m[1]}{float(m[2]) / scale:g}"

    return _AGE_THRESHOLD.sub(age, _FOR.sub(hold, _WINDOW.sub(window, text)))


def write_rules(directory: Path, fast: bool, scale: float = TIME_SCALE) -> list[Path]:
    shipped = sorted(RULES_DIR.glob("*.yml"))
    if not shipped:
        raise PrometheusError(f"no rules in {RULES_DIR}")
    if not fast:
        return shipped
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for path in shipped:
        target = directory / path.name
        target.write_text(fast_rules(path.read_text(), scale))
        out.append(target)
    return out


def _config(
    targets: Mapping[str, str | Sequence[str]],
    rules: list[Path],
    interval: str,
    alertmanager: str | None,
) -> str:
    """One job per service (``safiri-<service>``; RabbitMQ's nodes are ``rabbitmq``), one
    target per replica: each replica is its own ``instance``. No targets: nothing scraped, the
    rules still evaluated."""
    jobs = ""
    for service, addresses in targets.items():
        listed = [addresses] if isinstance(addresses, str) else list(addresses)
        name = service if service == "rabbitmq" else f"safiri-{service}"
        quoted = ", ".join(f"'{a}'" for a in listed)
        jobs += f"  - job_name: {name}\n    static_configs:\n      - targets: [{quoted}]\n"
    files = "".join(f"  - '{p.resolve()}'\n" for p in rules)
    alerting = ""
    if alertmanager:
        alerting = (
            "alerting:\n  alertmanagers:\n    - static_configs:\n"
            f"        - targets: ['{alertmanager}']\n"
        )
    scrape = f"scrape_configs:\n{jobs}" if jobs else "scrape_configs: []\n"
    return (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"rule_files:\n{files}{alerting}{scrape}"
    )


def _write_config(workdir: Path, text: str) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(text)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.asynccontextmanager
async def running_prometheus(
    targets: Mapping[str, str | Sequence[str]],
    rules: list[Path],
    workdir: Path,
    interval: str = "1s",
    ready_timeout: float = 30.0,
    *,
    port: int = 0,
    alertmanager: str | None = None,
    on_started: Callable[[int, int], None] | None = None,
) -> AsyncIterator[str]:
    """Prometheus scraping ``targets`` (service → host:port, or a list: one per replica) and
    evaluating ``rules`` every ``interval`` until the block exits; yields its URL.

    ``workdir`` (created if need be) holds ``prometheus.yml``, the TSDB (``data``) and
    ``prometheus.log``. ``port`` 0 takes a free one; ``alertmanager`` (host:port) receives the
    alerts; ``on_started(pid, port)`` is told where it runs. Exemplar storage is on, as in
    docker-compose.yml, so exemplar queries work against it too.
    """
    if shutil.which("prometheus") is None:
        raise PrometheusError(
            "prometheus is not installed (Debian: apt-get install -y prometheus;"
            " scripts/deps.sh --install --test does it)"
        )
    _write_config(workdir, _config(targets, rules, interval, alertmanager))
    port = port or free_port()
    argv = [
        "prometheus",
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
        "--log.level=warn",
    ]
    async with _serving(argv, workdir / "prometheus.log", port, ready_timeout, on_started) as url:
        yield url


async def _terminate(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


def local_alertmanager_config(env: Mapping[str, str]) -> str:
    """The shipped routing and inhibitions; a receiver whose webhook variable is unset
    records its alerts only (no webhook to nowhere)."""
    config = yaml.safe_load(
        _PLACEHOLDER.sub(
            lambda m: env.get(m.group(1), m.group(0)), ALERTMANAGER_TEMPLATE.read_text()
        )
    )
    for receiver in config.get("receivers", []):
        hooks = [h for h in receiver.get("webhook_configs", []) if "${" not in str(h["url"])]
        if hooks:
            receiver["webhook_configs"] = hooks
        else:
            receiver.pop("webhook_configs", None)
    return str(yaml.safe_dump(config, sort_keys=False))


def _write_alertmanager_config(workdir: Path, env: Mapping[str, str]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(local_alertmanager_config(env))
    return config


@contextlib.asynccontextmanager
async def running_alertmanager(
    workdir: Path,
    *,
    port: int = 0,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 30.0,
    on_started: Callable[[int, int], None] | None = None,
) -> AsyncIterator[str]:
    """Debian's Alertmanager with the shipped routing (``local_alertmanager_config``); its URL."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        raise PrometheusError(
            "alertmanager is not installed (Debian: apt-get install prometheus-alertmanager)"
        )
    config = _write_alertmanager_config(workdir, os.environ if env is None else env)
    port = port or free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # one instance: no gossip port to collide on
        "--log.level=warn",
    ]
    async with _serving(argv, workdir / "alertmanager.log", port, ready_timeout, on_started) as url:
        yield url


@contextlib.asynccontextmanager
async def _serving(
    argv: list[str],
    log_path: Path,
    port: int,
    ready_timeout: float,
    on_started: Callable[[int, int], None] | None,
) -> AsyncIterator[str]:
    """``argv`` (Prometheus or Alertmanager) until ``/-/ready`` answers on ``port``; its URL.
    ``on_started(pid, port)`` is told where it runs; the process is stopped on exit."""
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        await _wait_ready(url, process, log_path, ready_timeout)
        if on_started is not None:
            on_started(process.pid, port)
        yield url
    finally:
        await _terminate(process)


async def _wait_ready(
    url: str, process: asyncio.subprocess.Process, log: Path, timeout: float
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if process.returncode is not None:
                raise PrometheusError(f"{log.stem} exited with {process.returncode}:\n{_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{url}/-/ready") as response:
                    if response.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise PrometheusError(
                    f"{log.stem} at {url} not ready after {timeout} s:\n{_tail(log)}"
                )
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def experiment_prometheus(
    targets: Mapping[str, str | Sequence[str]], run_dir: Path, configuration: Mapping[str, Any]
) -> AsyncIterator[str]:
    """Prometheus as the experiment's configuration asks: ``rules`` ``real`` or ``fast``
    (time running ``rule_time_scale`` times faster, 60 by default: a minute is a second),
    every ``prometheus_interval``."""
    fast = str(configuration.get("rules", "real")) == "fast"
    rules = write_rules(run_dir / "rules", fast, float(configuration.get("rule_time_scale", 60)))
    interval = str(configuration.get("prometheus_interval", "1s" if fast else "15s"))
    async with running_prometheus(targets, rules, run_dir / "prometheus", interval) as url:
        yield url
