"""The restart probe passes only when a process started after the fault and was scraped: it
compares with the fault's time, not with a baseline Prometheus may not have had yet (the
probe it replaces passed when the gateway was never restarted but not yet scraped at the
fault: a rise from "nothing" to any start time)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from safiri_chaos.events import FAULT_INJECTED, EventLog
from safiri_chaos.probes import ProbeFailed
from safiri_chaos.symptoms import time_after_fault

pytestmark = pytest.mark.unit


class FakePrometheus:
    """The instant-query API answering one value (or no sample at all)."""

    def __init__(self) -> None:
        self.value: float | None = None

        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                result = (
                    [] if owner.value is None else [{"metric": {}, "value": [0, str(owner.value)]}]
                )
                body = json.dumps(
                    {"status": "success", "data": {"resultType": "vector", "result": result}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def _configuration(results: Path, prometheus_url: str) -> dict[str, str]:
    EventLog(results).record(FAULT_INJECTED, faults={"crash_loop": "gateway"})
    urls = ["gateway_url", "simulator_url", "amqp_url"]
    databases = ["ticketing_database_url", "payment_database_url", "gateway_database_url"]
    return {
        **dict.fromkeys(urls, "http://127.0.0.1:1"),
        **dict.fromkeys(databases, "postgresql://127.0.0.1/x"),
        "prometheus_url": prometheus_url,
        "results_dir": str(results),
    }


def test_a_process_started_after_the_fault_passes(
    prometheus: FakePrometheus, tmp_path: Path
) -> None:
    configuration = _configuration(tmp_path, prometheus.url)
    prometheus.value = time.time() + 2  # started (and scraped) two seconds after the fault
    assert 1 < time_after_fault("max(process_start_time_seconds)", configuration, 1) < 4


@pytest.mark.parametrize("scraped", ["the old process", "nothing yet"])
def test_no_new_process_fails(prometheus: FakePrometheus, tmp_path: Path, scraped: str) -> None:
    configuration = _configuration(tmp_path, prometheus.url)
    prometheus.value = time.time() - 600 if scraped == "the old process" else None
    with pytest.raises(ProbeFailed, match="no new process was scraped"):
        time_after_fault("max(process_start_time_seconds)", configuration, 0.5)
