"""libs/telemetry installs alone into a fresh virtual environment, at both ends of the
OpenTelemetry range its pyproject declares, and its README example works there: one trace
from the request to the consumer reaches a real OTLP endpoint, log lines over OTLP carry it.

The oldest end is installed with ``--resolution lowest-direct`` over the library's own
requirements, so every lower bound it declares (aiohttp, loguru, prometheus-client, aio-pika
and OpenTelemetry) is the version installed; the newest end is whatever the registry has
newest inside the ranges. uv fetches from the package registry (cached after the first run).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from safiri.otlp import running_receiver
from tests.conftest import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "libs" / "telemetry"
README = LIBRARY / "README.md"
SCRIPT = Path(__file__).resolve().parent / "install" / "run_readme_example.py"


def _requirements() -> list[str]:
    project = tomllib.loads((LIBRARY / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["rabbitmq"]]


def _lower_bound(package: str) -> str:
    [spec] = [r for r in _requirements() if re.match(rf"{re.escape(package)}\s*[<>=]", r)]
    found = re.search(r">=\s*([\w.]+)", spec)
    assert found, f"{package} has no lower bound in libs/telemetry: {spec}"
    return found[1]


def _fresh_environment(where: Path, oldest: bool) -> Path:
    uv = shutil.which("uv")
    assert uv is not None, "uv is not installed (make test installs it)"
    # The interpreter these tests run on (its base, through the project's venv).
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(where)], check=True, timeout=120)
    interpreter = where / "bin" / "python"
    # The library from its source tree, with its own requirements named directly, so that
    # lowest-direct takes each one's lower bound.
    command = [uv, "pip", "install", "-q", "-p", str(interpreter), f"{LIBRARY}[rabbitmq]"]
    command += _requirements()
    if oldest:
        command += ["--resolution", "lowest-direct"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return interpreter


@pytest.mark.parametrize("end", ["oldest", "newest"])
async def test_the_readme_example_runs_in_a_fresh_environment(
    end: str, tmp_path: Path, amqp_url: str
) -> None:
    interpreter = await asyncio.to_thread(_fresh_environment, tmp_path / "venv", end == "oldest")
    async with running_receiver() as (store, otlp):
        process = await asyncio.create_subprocess_exec(
            str(interpreter),
            str(SCRIPT),
            str(README),
            amqp_url,
            otlp,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,  # nothing of the repository's on the path
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()[-3000:]
        result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
        trace_id = result["trace_id"]

        names = {"POST /trips/{trip_id}/bookings", "book_seat", "publish"}
        names.add("process bookings")

        async def whole_trace() -> bool:
            return names <= {s.name for s in store.trace(trace_id)}

        await eventually(whole_trace, timeout=10, what="the example's trace over OTLP")
        client_trace = result["client_trace_id"]

        async def client_span() -> Any:
            found = [s for s in store.trace(client_trace) if s.kind == 3]  # CLIENT
            return found[0] if found else None

        client = await eventually(client_span, timeout=10, what="the client call's span")
        logs = await eventually(
            lambda: asyncio.sleep(0, store.logs_of(trace_id) or None),
            timeout=10,
            what="the example's log lines over OTLP",
        )

    versions = result["versions"]
    if end == "oldest":
        assert versions["opentelemetry-sdk"] == _lower_bound("opentelemetry-sdk") + ".0"
        assert versions["aiohttp"] == _lower_bound("aiohttp") + ".0"
        assert versions["aio-pika"] == _lower_bound("aio-pika") + ".0"
    else:
        locked = _locked("opentelemetry-sdk")
        assert _key(versions["opentelemetry-sdk"]) >= _key(locked), (versions, locked)
    assert result["status"] == 201
    lines = {line["message"]: line for line in result["logs"]}
    assert lines["seat booked"]["trace_id"] == trace_id
    assert lines["booking confirmed"]["trace_id"] == trace_id
    assert {log.body for log in logs} >= {"seat booked", "booking confirmed"}
    spans = store.trace(trace_id)
    producer = next(s for s in spans if s.name == "publish")
    consumer = next(s for s in spans if s.name == "process bookings")
    assert consumer.parent_span_id == producer.span_id
    assert 'http_route="/trips/{trip_id}/bookings"' in result["metrics"]
    # The client span, by the aiohttp-client instrumentation, after the stable conventions.
    assert client.name == "GET"
    assert client.attributes["http.request.method"] == "GET"
    assert client.attributes["http.response.status_code"] == 200
    assert "token" not in client.attributes["url.full"]


def _locked(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])
