"""The trace store on a loopback port with a SQLite file: query by order, restart, retention."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from safiri_tracestore import running_store
from tests.conftest import eventually, free_port
from tests.integration.test_tracestore_scenario import FAILURE, export_failed_purchase

pytestmark = pytest.mark.integration

HOUR_NS = 3600 * 10**9


def otlp_json_spans(trace_id: str, starts_ns: list[int], service: str = "gateway") -> bytes:
    spans = [
        {
            "traceId": trace_id,
            "spanId": f"{i + 1:016x}",
            "name": f"span-{i}",
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 1000),
        }
        for i, start in enumerate(starts_ns)
    ]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
    return json.dumps(body).encode()


async def get(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with http.get(url, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def whole(http: aiohttp.ClientSession, url: str, trace_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        document: dict[str, Any] = await get(http, f"{url}/api/traces/{trace_id}")
        return document if len(document["spans"]) == 15 else None

    return await eventually(probe, timeout=10, what="the whole trace stored")


async def test_an_order_id_finds_its_trace_spans_and_log_lines(tmp_path: Path) -> None:
    async with running_store(path=tmp_path / "t.sqlite3") as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)
        await whole(http, url, purchase.trace_id)
        document = await get(http, f"{url}/api/orders/{purchase.order_id}/trace")
    assert document["trace_ids"] == [purchase.trace_id]
    assert document["order_id"] == purchase.order_id
    names = {(s["service"], s["name"]) for s in document["spans"]}
    for service, span_names in purchase.span_names.items():
        assert {(service, n) for n in span_names} <= names
    assert [entry["body"] for entry in document["logs"]] == purchase.log_bodies
    (failing,) = [s for s in document["spans"] if s["status_code"] == 2]
    assert (failing["name"], failing["status_message"]) == ("handle_callback", FAILURE)
    assert failing["links"] and failing["attributes"]["safiri.payment.result_code"] == 1037


async def test_failed_traces_come_first_with_their_order_id(tmp_path: Path) -> None:
    async with running_store(path=tmp_path / "t.sqlite3") as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)
        await whole(http, url, purchase.trace_id)
        ok = uuid.uuid4().hex
        headers = {"Content-Type": "application/json"}
        body = otlp_json_spans(ok, [time.time_ns()])
        async with http.post(f"{url}/v1/traces", data=body, headers=headers) as response:
            assert response.status == 200
        failed = (await get(http, f"{url}/api/traces", failed="true", since="10m"))["traces"]
        recent = (await get(http, f"{url}/api/traces", since="10m"))["traces"]
    assert [t["trace_id"] for t in failed] == [purchase.trace_id]
    assert failed[0]["order_id"] == purchase.order_id
    assert failed[0]["root_cause"]["name"] == "handle_callback"
    assert [t["trace_id"] for t in recent] == [purchase.trace_id, ok]  # errors first


async def test_what_was_stored_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    async with running_store(path=path) as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)
        await whole(http, url, purchase.trace_id)
        before = await get(http, f"{url}/api/orders/{purchase.order_id}/trace")
    async with running_store(path=path) as url, aiohttp.ClientSession() as http:
        after = await get(http, f"{url}/api/orders/{purchase.order_id}/trace")
    assert len(after["spans"]) == 15 and len(after["logs"]) == 4
    assert after == before


async def test_rows_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    now = time.time_ns()
    old, fresh = uuid.uuid4().hex, uuid.uuid4().hex
    async with (
        running_store(path=tmp_path / "t.sqlite3", retention_hours=1, prune_interval_s=0.05) as url,
        aiohttp.ClientSession() as http,
    ):
        headers = {"Content-Type": "application/json"}
        for trace_id, start in ((old, now - 2 * HOUR_NS), (fresh, now)):
            body = otlp_json_spans(trace_id, [start, start + 1])
            async with http.post(f"{url}/v1/traces", data=body, headers=headers) as response:
                assert response.status == 200

        async def old_gone() -> bool:
            async with http.get(f"{url}/api/traces/{old}") as response:
                return response.status == 404

        await eventually(old_gone, timeout=10, what="the 2-hour-old trace pruned")
        assert len((await get(http, f"{url}/api/traces/{fresh}"))["spans"]) == 2


async def test_at_most_max_spans_are_kept_and_the_oldest_go_first(tmp_path: Path) -> None:
    now = time.time_ns()
    trace_id = uuid.uuid4().hex
    async with (
        running_store(path=tmp_path / "t.sqlite3", max_spans=5, prune_interval_s=0.05) as url,
        aiohttp.ClientSession() as http,
    ):
        body = otlp_json_spans(trace_id, [now - 8000 + i for i in range(8)])
        headers = {"Content-Type": "application/json"}
        async with http.post(f"{url}/v1/traces", data=body, headers=headers) as response:
            assert response.status == 200

        async def capped() -> list[str] | None:
            names = [s["name"] for s in (await get(http, f"{url}/api/traces/{trace_id}"))["spans"]]
            return names if len(names) == 5 else None

        names = await eventually(capped, timeout=10, what="the store capped at 5 spans")
    assert names == [f"span-{i}" for i in range(3, 8)]


async def test_the_store_runs_as_its_own_process_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SAFIRI_TRACE_STORE_PORT": str(port),
        "SAFIRI_TRACE_STORE_PATH": str(tmp_path / "proc.sqlite3"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safiri_tracestore",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"{url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout=20, what="python -m safiri_tracestore ready")
            body = otlp_json_spans(uuid.uuid4().hex, [time.time_ns()])
            headers = {"Content-Type": "application/json"}
            async with http.post(f"{url}/v1/traces", data=body, headers=headers) as response:
                assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, output
    assert (tmp_path / "proc.sqlite3").exists()
    first = json.loads(output.decode().splitlines()[0])
    assert first["service"] == "trace-store"
