"""bench/profile_breakdown.py: py-spy's collapsed stacks, each busy sample given to one category.

A small hand-made sample of what ``py-spy record --format raw --full-filenames --threads``
writes (root frame first, the sample count last) stands for a service's profile: the event
loop's thread and the OTLP export thread, idle samples among them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
breakdown = load_script(ROOT / "bench" / "profile_breakdown.py")

PY = "/usr/lib/python3.13"
SP = "/work/.venv/lib/python3.13/site-packages"
SRC = "/work/services/gateway/src/safiri_gateway"

MAIN = "thread (0x7F0000000001): MainThread"
LOOP = ";".join(
    [
        MAIN,
        "_run_module_as_main (<frozen runpy>:198)",
        f"main ({SRC}/__main__.py:12)",
        f"run ({PY}/asyncio/runners.py:194)",
        f"Runner.run ({PY}/asyncio/runners.py:118)",
        f"BaseEventLoop.run_until_complete ({PY}/asyncio/base_events.py:706)",
        f"BaseEventLoop.run_forever ({PY}/asyncio/base_events.py:677)",
        f"BaseEventLoop._run_once ({PY}/asyncio/base_events.py:2034)",
    ]
)
HANDLER = ";".join(
    [
        LOOP,
        f"Handle._run ({PY}/asyncio/events.py:89)",
        f"RequestHandler._handle_request ({SP}/aiohttp/web_protocol.py:480)",
        "server_middleware.<locals>.middleware"
        " (/work/libs/telemetry/src/safiri_telemetry/_aiohttp.py:60)",
        f"create_order ({SRC}/entrypoints/http.py:40)",
    ]
)
EXPORT = ";".join(
    [
        "thread (0x7F0000000002): OtelBatchSpanRecordProcessor",
        f"Thread._bootstrap ({PY}/threading.py:1014)",
        f"Thread.run ({PY}/threading.py:992)",
        f"BatchProcessor.worker ({SP}/opentelemetry/sdk/_shared_internal/__init__.py:170)",
    ]
)

SAMPLE = "\n".join(
    [
        # idle: the loop waits in epoll, the export thread in Condition.wait
        f"{LOOP};EpollSelector.select ({PY}/selectors.py:452) 50",
        f"{EXPORT};Condition.wait ({PY}/threading.py:359) 40",
        # a socket send by asyncpg: the innermost known frame is asyncio's transport
        f"{HANDLER};Connection.execute ({SP}/asyncpg/connection.py:350);"
        f"_SelectorSocketTransport.write ({PY}/asyncio/selector_events.py:1057) 7",
        # the SDK calling the standard library: uuid is no known package, the SDK is
        f"{HANDLER};Tracer.start_span ({SP}/opentelemetry/sdk/trace/__init__.py:1130);"
        f"uuid4 ({PY}/uuid.py:720) 5",
        f"{HANDLER};PlaceOrder.__call__ ({SRC}/service_layer/place_order.py:51) 4",
        # json under loguru's sink: JSON is the innermost known package
        f"{HANDLER};Logger._log ({SP}/loguru/_logger.py:2100);dumps ({PY}/json/__init__.py:231) 3",
        f"{HANDLER};Logger._log ({SP}/loguru/_logger.py:2140) 1",
        # pydantic validates (its Rust core has no Python frame): JSON/validation
        f"{HANDLER};BaseModel.model_validate_json ({SP}/pydantic/main.py:746) 2",
        # a flag evaluation and the OpenTelemetry hook it runs
        f"{HANDLER};OpenFeatureClient.get_boolean_value ({SP}/openfeature/client.py:190);"
        f"contextmanager ({PY}/contextlib.py:300) 2",
        f"{HANDLER};get_all ({SP}/opentelemetry/baggage/__init__.py:60) 1",
        f"{LOOP} 3",
        # a third-party package's own asyncio module is not asyncio
        f"{HANDLER};AsyncRetrying.__call__ ({SP}/tenacity/asyncio/__init__.py:110) 1",
        f"{LOOP};Handle._run ({PY}/asyncio/events.py:89);"
        f"RequestHandler.start ({SP}/aiohttp/web_protocol.py:620) 2",
        # a frozen module under asyncio's own frames only
        f"{LOOP};Handle._run ({PY}/asyncio/events.py:89);_Environ.__getitem__ (<frozen os>:714) 1",
        # the export thread at work: the exporter over requests over http.client
        f"{EXPORT};BatchProcessor._export"
        f" ({SP}/opentelemetry/sdk/_shared_internal/__init__.py:200);"
        f"Session.post ({SP}/requests/sessions.py:637);"
        f"HTTPConnection.send ({PY}/http/client.py:1055) 6",
        # a thread of nothing but the standard library, at work (getaddrinfo) and waiting
        "thread (0x7F0000000003): asyncio_0;"
        f"Thread._bootstrap ({PY}/threading.py:1014);"
        f"_worker ({PY}/concurrent/futures/thread.py:90);"
        f"_WorkItem.run ({PY}/concurrent/futures/thread.py:59);"
        f"getaddrinfo ({PY}/socket.py:977) 2",
        # waits in a C call py-spy takes for work: the executor's queue, the flag file
        # watcher's sleep, the OTLP exporter waiting for the collector's answer
        "thread (0x7F0000000003): asyncio_0;"
        f"Thread._bootstrap ({PY}/threading.py:1014);"
        f"_worker ({PY}/concurrent/futures/thread.py:89) 30",
        "thread (0x7F0000000004): FlagdFileWatcherWorkerThread;"
        f"Thread._bootstrap ({PY}/threading.py:1014);"
        "FileWatcher.refresh_file"
        f" ({SP}/openfeature/contrib/provider/flagd/resolvers/process/connector/file_watcher.py:64)"
        " 20",
        f"{EXPORT};Session.post ({SP}/requests/sessions.py:637);"
        f"SocketIO.readinto ({PY}/socket.py:719) 10",
        "not a stack line",
    ]
)


def test_each_busy_sample_of_the_loop_goes_to_one_category_by_its_innermost_known_frame() -> None:
    result = breakdown.breakdown(SAMPLE, purchases=10, sample_rate_hz=100.0)
    loop = result["loop"]

    assert loop["idle_samples"] == 50
    assert loop["busy_samples"] == 32
    assert loop["categories"] == {
        "asyncio": 7 + 3 + 1,
        "other libraries": 1,
        "telemetry": 5 + 1,
        "safiri": 4,
        "json/validation": 3 + 2,
        "logging": 1,
        "flags": 2,
        "aiohttp": 2,
    }
    assert sum(loop["categories"].values()) == loop["busy_samples"]
    assert loop["shares"]["asyncio"] == pytest.approx(11 / 32, abs=1e-4)


def test_asyncio_work_is_also_shown_on_behalf_of_the_library_that_asked_for_it() -> None:
    loop = breakdown.breakdown(SAMPLE, purchases=10, sample_rate_hz=100.0)["loop"]

    assert loop["on_behalf_of"]["asyncpg"] == 7
    assert loop["on_behalf_of"]["asyncio"] == 3 + 1
    assert sum(loop["on_behalf_of"].values()) == loop["busy_samples"]


def test_probes_count_every_sample_with_the_frame_anywhere_on_its_stack() -> None:
    loop = breakdown.breakdown(SAMPLE, purchases=10, sample_rate_hz=100.0)["loop"]

    assert loop["probes"]["flags"] == 2
    assert loop["probes"]["baggage"] == 1
    assert loop["probes"]["logging"] == 3 + 1


def test_other_threads_are_counted_apart_and_idle_ones_left_out() -> None:
    other = breakdown.breakdown(SAMPLE, purchases=10, sample_rate_hz=100.0)["other_threads"]

    assert other["idle_samples"] == 40 + 30 + 20 + 10
    assert other["busy_samples"] == 6 + 2
    assert other["categories"] == {"telemetry": 6, "cpython other": 2}
    assert other["by_thread"] == {"OtelBatchSpanRecordProcessor": 6, "asyncio_0": 2}


def test_busy_samples_per_purchase_become_cpu_ms_at_the_sampling_rate() -> None:
    result = breakdown.breakdown(SAMPLE, purchases=10, sample_rate_hz=100.0)

    # 32 loop samples and 8 others at 10 ms each, over 10 purchases
    assert result["cpu_ms_per_purchase"] == {"loop": 32.0, "other_threads": 8.0, "total": 40.0}


def test_the_top_self_time_functions_are_ranked_by_their_leaf_samples() -> None:
    top = breakdown.breakdown(SAMPLE, purchases=10, sample_rate_hz=100.0)["loop"]["top_self"]

    assert top[0]["function"] == "_SelectorSocketTransport.write"
    assert top[0]["file"] == "asyncio/selector_events.py"
    assert top[0]["samples"] == 7
    assert top[0]["category"] == "asyncio"
    assert [t["function"] for t in top[1:3]] == ["uuid4", "PlaceOrder.__call__"]
    assert len(top) <= 10


def test_stacks_without_thread_ids_are_split_by_the_event_loop_frames() -> None:
    without = "\n".join(
        line.split(";", 1)[1] if line.startswith("thread (") else line
        for line in SAMPLE.splitlines()
    )
    a = breakdown.breakdown(SAMPLE, purchases=10, sample_rate_hz=100.0)
    b = breakdown.breakdown(without, purchases=10, sample_rate_hz=100.0)

    assert b["loop"]["categories"] == a["loop"]["categories"]
    assert b["other_threads"]["busy_samples"] == a["other_threads"]["busy_samples"]


def test_under_uvloop_a_sample_in_the_c_loop_is_the_event_loops_not_aiohttps() -> None:
    """uvloop's loop is C: its own work shows as samples whose innermost Python frame is the
    function that started it (aiohttp's run_app), which must not count as aiohttp's."""
    uv_loop = ";".join(
        [
            MAIN,
            f"main ({SRC}/__main__.py:12)",
            "run_service (/work/libs/web/src/safiri_web/runner.py:60)",
            f"run_app ({SP}/aiohttp/web.py:530)",
        ]
    )
    [in_loop] = list(breakdown.parse(f"{uv_loop} 7"))
    assert breakdown.categorize(in_loop)[:2] == ("asyncio", "asyncio")
    handler = uv_loop + f";RequestHandler._handle_request ({SP}/aiohttp/web_protocol.py:480)"
    [in_handler] = list(breakdown.parse(f"{handler} 3"))
    assert breakdown.categorize(in_handler)[0] == "aiohttp"
