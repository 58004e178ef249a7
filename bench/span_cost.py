"""CPU time per span, split into where it goes: creating it, queueing it, encoding it, sending it.

    .venv/bin/python bench/span_cost.py --spans 20000

Each variant creates the same spans (a server span with two business spans inside, Safiri's
attributes on each) through ``safiri_telemetry.business_span`` and counts the process's CPU
time, the exporter thread included (``time.process_time``), until every span has been exported:

- ``disabled``: ``OTEL_SDK_DISABLED=true`` (the no-op tracer);
- ``sdk_discard``: the SDK records the spans and the batch processor hands them to an exporter
  that drops them (creation and queueing only);
- ``sdk_encode``: as above, and the exporter encodes each batch with the SDK's OTLP encoder;
- ``otlp_http``: the shipped pipeline (the SDK's OTLP/HTTP exporter) to a discarding endpoint
  in another process.

Figures (µs of CPU per span, and the machine) go to bench/results/span_cost.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from provenance import run_metadata

from safiri_telemetry import _tracing, business_span
from safiri_telemetry._config import TelemetryConfig
from safiri_telemetry._export import DroppedSpans
from safiri_telemetry._tracing import build_resource, build_tracer_provider

ROOT = Path(__file__).resolve().parent
ATTRIBUTES = {
    "safiri.order.id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "safiri.trip.id": "9e107d9d-372b-4b6d-8a2e-7e1f0cc3e1a2",
    "safiri.seat_count": 2,
    "safiri.amount": 3000,
    "safiri.payment.provider": "mpesa",
}


class Discard(SpanExporter):
    def __init__(self, encode: str | None) -> None:
        self.encode = encode
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.encode == "sdk":
            encode_spans(spans).SerializeToString()
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _spans(tracer: trace.Tracer, purchases: int) -> None:
    for _ in range(purchases):
        with tracer.start_as_current_span(
            "POST /api/v1/orders", kind=trace.SpanKind.SERVER, attributes={"http.route": "x"}
        ):
            with business_span("hold_seats", ATTRIBUTES):
                pass
            with business_span("request_payment", ATTRIBUTES):
                pass


def _provider(variant: str, endpoint: str | None) -> tuple[TracerProvider | None, Any]:
    if variant == "disabled":
        return None, None
    if variant == "otlp_http":
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint or "", "OTEL_BSP_MAX_QUEUE_SIZE": "100000"}
        config = TelemetryConfig.from_env("bench", "0", env)
        return build_tracer_provider(config, dropped=DroppedSpans(CollectorRegistry())), None
    exporter = Discard(encode={"sdk_encode": "sdk"}.get(variant))
    provider = TracerProvider(resource=build_resource(TelemetryConfig.from_env("bench", "0", {})))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    return provider, exporter


def _measure(variant: str, spans: int, endpoint: str | None) -> float:
    provider, _ = _provider(variant, endpoint)
    tracer = (provider or trace.NoOpTracerProvider()).get_tracer("bench")
    started = time.process_time()
    # business_span's tracer follows the global provider; point it at this variant's.
    _tracing._TRACER = tracer
    _spans(tracer, spans // 3)
    if provider is not None:
        provider.force_flush()
        provider.shutdown()
    return (time.process_time() - started) / spans * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = ["disabled", "sdk_discard", "sdk_encode", "otlp_http"]
    figures: dict[str, list[float]] = {v: [] for v in variants}
    port = 4399
    sink = subprocess.Popen([sys.executable, str(ROOT / "otlp_sink.py"), str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    time.sleep(1.0)  # the sink answers within a second; a failed export would show as drops
    try:
        for _ in range(args.rounds):
            for variant in variants:
                figures[variant].append(round(_measure(variant, args.spans, endpoint), 2))
    finally:
        sink.terminate()
        sink.wait()
    best = {v: min(f) for v, f in figures.items()}
    report = {
        "benchmark": "CPU µs per span (process time incl. the exporter thread), best of rounds",
        **run_metadata(
            variant={
                "disabled": "OTEL_SDK_DISABLED=true (the no-op tracer)",
                "sdk_discard": "the SDK records; the batch processor's exporter drops",
                "sdk_encode": "as sdk_discard, each batch encoded by the SDK's OTLP encoder",
                "otlp_http": "the SDK's OTLP/HTTP exporter to a discarding endpoint",
            }
        ),
        "parameters": vars(args),
        "runs_us_per_span": figures,
        "best_us_per_span": best,
    }
    out = ROOT / "results" / "span_cost.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(best))


if __name__ == "__main__":
    main()
