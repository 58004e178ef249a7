"""An OTLP/HTTP endpoint that accepts and discards: the collector's cost kept out of the benchmark.

.venv/bin/python bench/otlp_sink.py PORT

It counts what it receives, by service: ``GET /counts`` answers
``{"spans": {service: n}, "logs": {service: n}}``, so a benchmark can say how many spans and
log records one purchase costs; ``GET /counts?by=name`` answers ``{"service span-name": n}``;
``GET /durations`` answers ``{"service span-name": [duration ms, ...]}`` (kept only after
``POST /durations/start``, so a benchmark records the window it measures and nothing else);
``GET /spans`` answers the same window's spans as ``[service, name, trace id, span id, parent
span id, start ns, end ns]`` rows, so a benchmark can take each span's own time (its duration
less its children's) and the gaps between a parent and its children.
"""

from __future__ import annotations

import sys
from collections import Counter

from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

COUNTS: dict[str, Counter[str]] = {"spans": Counter(), "logs": Counter()}
# Spans by "service span-name", for ``GET /counts?by=name``: which spans a purchase costs.
SPAN_NAMES: Counter[str] = Counter()
# Span durations in ms by "service span-name", recorded between POST /durations/start and the
# next GET /durations: where one request's latency goes.
DURATIONS: dict[str, list[float]] = {}
SPANS: list[tuple[str, str, str, str, str, int, int]] = []
RECORDING = False


def _service(resource: object) -> str:
    for attribute in getattr(resource, "attributes", []):
        if attribute.key == "service.name":
            return str(attribute.value.string_value)
    return "unknown"


async def traces(request: web.Request) -> web.Response:
    body = ExportTraceServiceRequest.FromString(await request.read())
    for resource_spans in body.resource_spans:
        service = _service(resource_spans.resource)
        for scope in resource_spans.scope_spans:
            COUNTS["spans"][service] += len(scope.spans)
            SPAN_NAMES.update(f"{service} {span.name}" for span in scope.spans)
            if RECORDING:
                for span in scope.spans:
                    ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
                    DURATIONS.setdefault(f"{service} {span.name}", []).append(ms)
                    SPANS.append(
                        (
                            service,
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                        )
                    )
    return web.Response(body=b"", content_type="application/x-protobuf")


async def logs(request: web.Request) -> web.Response:
    body = ExportLogsServiceRequest.FromString(await request.read())
    for resource_logs in body.resource_logs:
        n = sum(len(scope.log_records) for scope in resource_logs.scope_logs)
        COUNTS["logs"][_service(resource_logs.resource)] += n
    return web.Response(body=b"", content_type="application/x-protobuf")


async def counts(request: web.Request) -> web.Response:
    if request.query.get("by") == "name":
        return web.json_response(dict(SPAN_NAMES.most_common()))
    return web.json_response({kind: dict(c) for kind, c in COUNTS.items()})


async def start_durations(request: web.Request) -> web.Response:
    global RECORDING
    DURATIONS.clear()
    SPANS.clear()
    RECORDING = True
    return web.json_response({})


async def durations(request: web.Request) -> web.Response:
    return web.json_response(DURATIONS)


async def spans(request: web.Request) -> web.Response:
    return web.json_response(SPANS)


def main() -> None:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/v1/logs", logs)
    app.router.add_get("/counts", counts)
    app.router.add_post("/durations/start", start_durations)
    app.router.add_get("/durations", durations)
    app.router.add_get("/spans", spans)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
