"""``python -m safiri_mpesa_sim`` serves until SIGTERM and refuses bad settings clearly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import pytest

from tests.conftest import eventually, free_port

pytestmark = pytest.mark.integration


def simulator_env(**overrides: str) -> dict[str, str]:
    # No collector runs in tests; a disabled SDK also keeps shutdown from waiting on export.
    return {**os.environ, "OTEL_SDK_DISABLED": "true", **overrides}


async def wait_until_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            assert process.returncode is None, "the simulator exited during start-up"
            try:
                async with http.get(url) as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(healthy, timeout=15, what=f"{url} to answer 200")


@pytest.mark.parametrize(
    ("asked", "runs_on"), [(None, "uvloop"), ("asyncio", "asyncio"), ("uvloop", "uvloop")]
)
async def test_module_serves_until_sigterm_then_exits_cleanly_on_the_loop_asked_for(
    asked: str | None, runs_on: str
) -> None:
    port = free_port()
    loop = {"SAFIRI_EVENT_LOOP": asked} if asked else {}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safiri_mpesa_sim",
        env=simulator_env(SAFIRI_MPESA_SIM_PORT=str(port), **loop),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert b'"service": "mpesa-simulator"' in stdout
    assert b"Traceback" not in stdout + stderr
    # The start-up line names the loop it serves on (asked of the running loop): uvloop unless
    # SAFIRI_EVENT_LOOP says otherwise.
    started = [line for line in stdout.splitlines() if b"service starting" in line]
    assert len(started) == 1, stdout.decode()
    assert f'"event_loop": "{runs_on}"'.encode() in started[0]


async def test_bad_settings_exit_2_naming_each_variable() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safiri_mpesa_sim",
        env=simulator_env(SAFIRI_MPESA_SIM_PORT="eighty", SAFIRI_MPESA_SIM_CALLBACK_DELAY="soon"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 2
    assert b"SAFIRI_MPESA_SIM_PORT" in stderr
    assert b"SAFIRI_MPESA_SIM_CALLBACK_DELAY" in stderr
    assert b"Traceback" not in stderr
