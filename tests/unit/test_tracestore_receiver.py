"""The store's OTLP/HTTP receiver: what it accepts, what it refuses, and that a refusal stores
nothing. (A loopback port and a temporary SQLite file; no other I/O.)"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from safiri_tracestore import running_store
from safiri_tracestore.payload import MAX_PAYLOAD
from tests.unit.test_tracestore_decoding import as_otlp_json, log_request, sdk_export

pytestmark = pytest.mark.unit

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with (
        running_store(path=tmp_path / "traces.sqlite3") as url,
        aiohttp.ClientSession() as http,
    ):
        yield url, http


async def stored_traces(http: aiohttp.ClientSession, url: str) -> list[object]:
    async with http.get(f"{url}/api/traces", params={"since": "3650d"}) as response:
        assert response.status == 200
        traces: list[object] = (await response.json())["traces"]
        return traces


async def test_a_protobuf_export_is_answered_in_protobuf_and_stored(
    store: tuple[str, aiohttp.ClientSession],
) -> None:
    url, http = store
    async with http.post(f"{url}/v1/traces", data=sdk_export(), headers=PROTOBUF) as response:
        assert response.status == 200
        assert response.content_type == "application/x-protobuf"
        ExportTraceServiceResponse().ParseFromString(await response.read())
    summaries = await stored_traces(http, url)
    assert sum(s["span_count"] for s in summaries) == 3  # type: ignore[index]


async def test_a_gzipped_json_export_is_answered_in_json_and_stored(
    store: tuple[str, aiohttp.ClientSession],
) -> None:
    url, http = store
    message = ExportTraceServiceRequest()
    message.ParseFromString(sdk_export())
    body = gzip.compress(as_otlp_json(message))
    headers = {**JSON, "Content-Encoding": "gzip"}
    async with http.post(f"{url}/v1/traces", data=body, headers=headers) as response:
        assert response.status == 200
        assert await response.json() == {}
    async with http.post(
        f"{url}/v1/logs", data=log_request().SerializeToString(), headers=PROTOBUF
    ) as response:
        assert response.status == 200
    trace_id = "5b8efff798038103d269b633813fc60c"
    async with http.get(f"{url}/api/traces/{trace_id}") as response:
        assert (await response.json())["logs"][0]["body"] == "payment failed"


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"\xff\xffnot protobuf", PROTOBUF, 400),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}],'
            b' "resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}',
            JSON,
            400,
        ),
        (b'{"resourceLogs": 3, "resourceSpans": 3}', JSON, 400),
        (gzip.compress(b"{}", mtime=0)[:-4], {**JSON, "Content-Encoding": "gzip"}, 400),
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (b"{}", {**JSON, "Content-Encoding": "br"}, 415),
        (
            gzip.compress(b" " * (MAX_PAYLOAD + 1), mtime=0),
            {**JSON, "Content-Encoding": "gzip"},
            413,
        ),
        (b"\0" * (MAX_PAYLOAD + 1), PROTOBUF, 413),
    ],
)
async def test_what_cannot_be_read_is_refused_with_a_json_error_and_not_stored(
    store: tuple[str, aiohttp.ClientSession],
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    url, http = store
    data = io.BytesIO(body)  # aiohttp warns about sending large bytes objects directly
    async with http.post(f"{url}{path}", data=data, headers=headers) as response:
        assert response.status == status
        assert json.loads(await response.read())["error"]
    assert await stored_traces(http, url) == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/traces/not-a-trace-id", 400),
        (f"/api/traces/{'ab' * 16}", 404),
        ("/api/orders/56d8b732-1c4e-4f7a-9d1e-0a2b3c4d5e6f/trace", 404),
        ("/api/traces?since=soon", 400),
        ("/api/traces?limit=100000", 400),
        (f"/traces/{'ab' * 16}", 404),
        ("/?failed=perhaps", 400),
    ],
)
async def test_queries_that_cannot_be_answered_say_why(
    store: tuple[str, aiohttp.ClientSession], path: str, status: int
) -> None:
    url, http = store
    async with http.get(f"{url}{path}") as response:
        assert response.status == status
        assert response.content_type in ("application/json", "text/html")


async def test_health_and_readiness(store: tuple[str, aiohttp.ClientSession]) -> None:
    url, http = store
    for path, expected in (("/healthz", "ok"), ("/readyz", "ready")):
        async with http.get(f"{url}{path}") as response:
            assert response.status == 200
            assert (await response.json())["status"] == expected
