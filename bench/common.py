"""What the benchmarks share: free ports, a vhost of their own, trip discovery, the OTLP sink,
the suite's configuration, and what a result file records about its run (bench/provenance.py).

Imported by bench/purchase_throughput.py and bench/sustained_rate.py (run as scripts, so this
directory is on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from datetime import date, timedelta
from pathlib import Path

import aiohttp
from provenance import machine, run_metadata

from safiri_suite.suite import SuiteConfig, drop_databases, free_port, isolated_config

__all__ = [
    "ROOT",
    "ROUTES",
    "free_port",
    "isolated_run",
    "machine",
    "otlp_sink",
    "run_metadata",
    "trips",
    "vhost",
]

ROOT = Path(__file__).resolve().parent
ROUTES = [
    ("Nairobi", "Mombasa"),
    ("Mombasa", "Nairobi"),
    ("Nairobi", "Kisumu"),
    ("Kisumu", "Nairobi"),
    ("Nairobi", "Nakuru"),
    ("Nakuru", "Nairobi"),
    ("Nairobi", "Eldoret"),
    ("Eldoret", "Nairobi"),
    ("Mombasa", "Malindi"),
    ("Malindi", "Mombasa"),
]


def vhost(action: str, name: str) -> None:
    """``add_vhost`` (with guest's permissions) or ``delete_vhost`` by rabbitmqctl.

    Tried three times: on a busy machine rabbitmqctl now and then fails to reach the node.
    """
    for attempt in range(3):
        done = subprocess.run(["rabbitmqctl", "-q", action, name], capture_output=True)
        if done.returncode == 0:
            break
        if attempt == 2:
            raise subprocess.CalledProcessError(
                done.returncode, done.args, done.stdout, done.stderr
            )
        time.sleep(1)
    if action == "add_vhost":
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )


async def trips(
    http: aiohttp.ClientSession,
    base: str,
    auth: dict[str, str],
    days: Iterable[int] = range(1, 4),
) -> list[str]:
    """The trip ids the gateway lists on each route, ``days`` days from today."""
    out: list[str] = []
    for offset in days:
        day = (date.today() + timedelta(days=offset)).isoformat()
        for origin, destination in ROUTES:
            async with http.get(
                f"{base}/trips",
                headers=auth,
                params={"origin": origin, "destination": destination, "date": day},
            ) as r:
                out += [t["trip_id"] for t in (await r.json())["trips"]]
    return out


@contextlib.asynccontextmanager
async def otlp_sink() -> AsyncIterator[str]:
    """A discarding OTLP endpoint in a process of its own (as a collector would be)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "otlp_sink.py"),
        str(port),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{url}/counts"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        await process.wait()


@contextlib.asynccontextmanager
async def isolated_run(
    name: str,
    *,
    log_dir: Path,
    extra_env: dict[str, str],
    service_env: dict[str, dict[str, str]] | None = None,
) -> AsyncIterator[tuple[SuiteConfig, str]]:
    """A suite configuration of its own (vhost, databases, free ports) exporting to a
    discarding OTLP sink; the vhost and databases are removed afterwards. Yields the
    configuration and the sink's URL; starting the suite is the caller's."""
    vhost("add_vhost", f"safiri-bench-{name}")
    try:
        async with otlp_sink() as otlp_url:
            config = isolated_config(
                api_key=secrets.token_urlsafe(12),
                database_prefix=f"safiri_bench_{name.replace('-', '_')}",
                amqp_url=f"amqp://guest:guest@127.0.0.1:5672/safiri-bench-{name}",
                otlp_endpoint=otlp_url,
                log_dir=log_dir,
                extra_env=extra_env,
                service_env=service_env,
            )
            try:
                yield config, otlp_url
            finally:
                await drop_databases(config)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            vhost("delete_vhost", f"safiri-bench-{name}")
