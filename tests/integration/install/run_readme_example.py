"""Run libs/telemetry's README example in whatever environment runs this file (a fresh one,
holding only the library and what it depends on), exporting over real OTLP/HTTP.

    python run_readme_example.py README.md AMQP_URL OTLP_ENDPOINT

Books one seat through the example service, waits until its consumer confirmed it, reads its
/metrics, stops it, and prints one JSON object: the trace id of the response, the log lines,
the /metrics text and the installed versions.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from importlib.metadata import version
from pathlib import Path

import aiohttp
from aiohttp import web

from safiri_telemetry import Telemetry


async def main(readme: str, amqp_url: str, otlp: str) -> dict[str, object]:
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    [block] = [b for b in blocks if "create_app" in b]
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(block, "README.md", "exec"), namespace)
    logs = io.StringIO()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    telemetry = Telemetry.setup("booking", env=env, log_stream=logs)
    app = await namespace["create_app"](telemetry, amqp_url)  # type: ignore[operator]
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/trips/t-42/bookings") as response:
                status, trace_id = response.status, response.headers.get("X-Trace-Id")
            for _ in range(200):
                if "booking confirmed" in logs.getvalue():
                    break
                await asyncio.sleep(0.05)
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
        # A call through the library's traced client session (the instrumentation package).
        async with (
            telemetry.client_session() as client,
            client.get(f"{base}/metrics?token=s3cret") as response,
        ):
            client_trace_id = response.headers.get("X-Trace-Id")
    finally:
        await runner.cleanup()  # shuts the telemetry down: what is queued is exported
    return {
        "status": status,
        "trace_id": trace_id,
        "client_trace_id": client_trace_id,
        "logs": [json.loads(line) for line in logs.getvalue().splitlines()],
        "metrics": metrics,
        "versions": {
            p: version(p)
            for p in ("opentelemetry-sdk", "opentelemetry-api", "aiohttp", "aio-pika", "loguru")
        },
    }


if __name__ == "__main__":
    result = asyncio.run(main(Path(sys.argv[1]).read_text(), sys.argv[2], sys.argv[3]))
    print(json.dumps(result))
