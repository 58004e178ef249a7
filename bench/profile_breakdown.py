"""Where each service's CPU per purchase goes: py-spy samples, each given to one category.

    .venv/bin/python bench/profile_breakdown.py                      # 20/s, then saturation
    .venv/bin/python bench/profile_breakdown.py --phases 20,saturation --rounds 2 --seconds 25
    .venv/bin/python bench/profile_breakdown.py --gil --nonblocking --name profile_baseline_gil
    .venv/bin/python bench/profile_breakdown.py --analyze RAW.txt --purchases 500  # one file
    .venv/bin/python bench/profile_breakdown.py --reanalyze bench/results/profile_baseline.json

Starts the suite once (telemetry on as shipped, 100 % sampling, spans and logs over OTLP to
the discarding bench/otlp_sink.py; the simulator's callback delay 0, as bench/sustained_rate.py
runs it) and drives POST /api/v1/orders in phases:

- a number R: open-loop arrivals at R purchases/s, whatever the answers take;
- ``saturation``: as many purchases as the suite completes, closed loop on whole purchases:
  ``--workers`` concurrent POSTs, and no new POST while ``--max-unconfirmed`` accepted orders
  are not yet CONFIRMED (read from ticketing's database every 0.1 s), so that no backlog grows
  and the rate reached is the suite's own.

In each phase, after ``--warmup-seconds``, gateway, ticketing and payment are recorded in turn
by py-spy (``record --format raw --full-filenames --threads``, ``--rate`` Hz, blocking:
each sample pauses the process; with ``--gil`` only the thread holding the GIL is sampled, with
``--nonblocking`` the process is never paused) for ``--seconds``. Over the same window the
script reads every suite process's CPU time (psutil: /proc), the machine's CPU times and load
average, and counts the purchases CONFIRMED in ticketing's database.

Each busy sample (``breakdown``) goes to ONE category: the one of the innermost frame that
belongs to a known package, a frame's package taken by its file path in the order of
``CATEGORIES`` (the first rule that matches wins: loguru's sink in safiri_telemetry is logging,
the flagd provider and Safiri's flag library are flags, Sentry's module in safiri_telemetry is
Sentry, then the rest of safiri_telemetry is telemetry, before Safiri's own packages).
Standard-library modules other than asyncio, selectors, json and logging are no known package:
their time goes to the caller that is (``uuid4`` under the SDK is telemetry); a sample of only
such frames is "cpython other". pydantic and pydantic_core are "json/validation" (pydantic's
Rust core has no Python frame: its time lands in the pydantic frame that called it). Samples
whose leaf is a wait (``IDLE_LEAVES``: the selector's epoll, ``Condition.wait``; ``IDLE_AT``:
a leaf blocked in a C call, such as the executor's queue, the flag file watcher's sleep, a
blocking recv) are idle and left out. The event loop's thread (MainThread, or without thread
ids a stack through asyncio's runner or loop) is broken down apart from the process's other
threads (OTLP export, ...).

Also per sample: ``on_behalf_of`` gives a sample whose category is asyncio or cpython other to
the innermost known frame that is neither (a socket write under asyncpg is asyncpg's), and
``probes`` count the samples with a frame of a kind anywhere on the stack (flag evaluation,
baggage, logging, OTel log records, traceback formatting ...), inclusive.

CPU ms per purchase: busy samples x (1000 / py-spy's sample rate) / purchases in the
sampled seconds; beside it, the process's own CPU time (user + system, all threads) over the
window / purchases in the window. py-spy counts a thread that is runnable but waiting for a
core as busy (and, with ``--gil``, one preempted while holding the GIL), so on a saturated
machine the first exceeds the second; with ``--gil`` it leaves out the time spent in system
calls that release the GIL (socket sends and receives), so on an idle machine it falls short.
``--reanalyze`` computes a report's breakdowns again from its raw files with these rules.

The report: bench/results/<--name>.json; its tables are rendered by bench/render.py
(``profile-*`` tables) into bench/results/profile/breakdown.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# (category, path fragments); a frame takes the first category one of whose fragments its file
# path contains. Order is the precedence.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("/safiri_telemetry/_logging.py",)),
    (
        "flags",
        (
            "/openfeature/",
            "/safiri_flags/",
            "/json_logic/",
            "/mmh3/",
            "/semver/",
            "/cachebox/",
            "/cbor2/",
        ),
    ),
    ("sentry", ("/sentry_sdk/", "/safiri_telemetry/_sentry.py")),
    (
        "telemetry",
        ("/opentelemetry/", "/safiri_telemetry/", "/google/protobuf/", "/requests/", "/urllib3/"),
    ),
    ("metrics", ("/prometheus_client/",)),
    ("logging", ("/loguru/", "/logging/")),
    (
        "json/validation",
        (
            "/json/",
            "/orjson",
            "/pydantic/",
            "/pydantic_core/",
            "/annotated_types/",
            "/typing_inspection/",
        ),
    ),
    ("asyncpg", ("/asyncpg/",)),
    ("broker client", ("/aio_pika/", "/aiormq/", "/pamqp/")),
    (
        "aiohttp",
        (
            "/aiohttp/",
            "/yarl/",
            "/multidict/",
            "/aiosignal/",
            "/frozenlist/",
            "/propcache/",
            "/aiohappyeyeballs/",
        ),
    ),
    ("asyncio", ("/asyncio/", "/selectors.py", "/uvloop/")),
    ("safiri", ("/safiri_", "/safiri/")),
]
STDLIB = {"/asyncio/", "/selectors.py", "/json/", "/logging/"}
OTHER_LIBRARIES = "other libraries"  # a site-packages file no rule names
CPYTHON_OTHER = "cpython other"  # a sample with no frame of a known package
GENERIC = {"asyncio", CPYTHON_OTHER}  # what on_behalf_of looks through
# ... up to the loop's dispatch: Handle._run, _run_once, the runner (below them: main()).
LOOP_DISPATCH = ("asyncio/events.py", "asyncio/base_events.py", "asyncio/runners.py")
CATEGORY_ORDER = [
    "asyncio",
    "aiohttp",
    "telemetry",
    "logging",
    "json/validation",
    "asyncpg",
    "broker client",
    "flags",
    "sentry",
    "metrics",
    "safiri",
    OTHER_LIBRARIES,
    CPYTHON_OTHER,
]
# Leaves where a thread waits rather than runs (py-spy's own idle detection misses some).
IDLE_LEAVES = {
    "EpollSelector.select",
    "PollSelector.select",
    "SelectSelector.select",
    "KqueueSelector.select",
    "Condition.wait",
    "Event.wait",
    "Thread._wait_for_tstate_lock",
}
# Leaves blocked in a C call without a Python frame of its own, which py-spy 0.4.3 counted as
# active on this machine (its idle detection missed them): (function, file, line or None).
IDLE_AT = [
    ("_worker", "concurrent/futures/thread.py", 89),  # work_queue.get(block=True)
    (
        "FileWatcher.refresh_file",  # time.sleep between two looks at the flag file
        "flagd/resolvers/process/connector/file_watcher.py",
        64,
    ),
    ("SocketIO.readinto", "socket.py", None),  # a blocking recv: OTLP export awaiting its answer
]
# Inclusive counts: (name, file fragments, function-name fragments); a sample counts once when
# any of its frames matches.
PROBES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("flags", tuple(CATEGORIES[1][1]), ()),
    ("baggage", ("/opentelemetry/baggage/",), ("baggage",)),
    ("logging", ("/loguru/", "/logging/", "/safiri_telemetry/_logging.py"), ()),
    (
        "otel log records",
        ("/opentelemetry/sdk/_logs/", "/opentelemetry/_logs/", "/safiri_telemetry/_otlp_logs.py"),
        (),
    ),
    ("json", ("/json/",), ()),
    ("pydantic", ("/pydantic/", "/pydantic_core/"), ()),
    ("traceback formatting", ("/traceback.py",), ()),
    ("asyncpg", ("/asyncpg/",), ()),
    ("broker client", ("/aio_pika/", "/aiormq/", "/pamqp/"), ()),
    ("sentry", ("/sentry_sdk/",), ()),
    ("prometheus_client", ("/prometheus_client/",), ()),
    (
        "aiohttp client (calls to other services)",
        ("/aiohttp/client", "/aiohttp/connector.py"),
        (),
    ),
    ("new connections", (), ("create_connection", "sock_connect", "_connect_sock")),
    (
        "otel aiohttp-client instrumentation",
        ("/opentelemetry/instrumentation/aiohttp_client/",),
        (),
    ),
    ("redaction", ("/safiri_telemetry/_redaction.py",), ()),
]
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
TOP = 10


@dataclass(frozen=True)
class Frame:
    func: str
    file: str
    line: int | None


@dataclass(frozen=True)
class Stack:
    thread: str | None  # py-spy's thread name ("MainThread") or id, with --threads
    frames: tuple[Frame, ...]  # root first
    count: int


def parse(raw: str) -> Iterator[Stack]:
    """py-spy's raw (collapsed) output: one ``frame;frame;... count`` line per distinct stack."""
    for text in raw.splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        thread, frames = None, []
        for part in stack.split(";"):
            if part.startswith("thread ("):
                ident, _, name = part.partition("): ")
                thread = (name or ident + ")").removesuffix(" ()").strip()
                continue
            if part.startswith("process "):
                continue
            m = FRAME.match(part)
            if m:
                line = int(m["line"]) if m["line"] else None
                frames.append(Frame(m["func"], m["file"], line))
        if frames:
            yield Stack(thread, tuple(frames), int(count_text))


def category_of(frame: Frame) -> str | None:
    """The category of the package the frame's file belongs to; None for no known package.
    A fragment naming a standard-library module (``STDLIB``) does not match an installed
    package's file (tenacity's own ``asyncio`` module is tenacity's)."""
    path = frame.file
    installed = "site-packages/" in path
    for name, fragments in CATEGORIES:
        if any(f in path and not (installed and f in STDLIB) for f in fragments):
            return name
    if "site-packages/" in path:
        return OTHER_LIBRARIES
    return None


def short(path: str) -> str:
    """A frame's file without its installation prefix: ``asyncio/selector_events.py``."""
    for marker in ("site-packages/", "/src/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    m = re.search(r"/lib/python3\.\d+/(.*)$", path)
    return m[1] if m else path


def is_idle(stack: Stack) -> bool:
    leaf = stack.frames[-1]
    if leaf.func in IDLE_LEAVES:
        return True
    return any(
        leaf.func == func and leaf.file.endswith(file) and line in (None, leaf.line)
        for func, file, line in IDLE_AT
    )


def is_loop(stack: Stack) -> bool:
    """A sample of the event loop's thread: MainThread, or (without thread ids) a stack through
    asyncio's runner or its loop."""
    if stack.thread is not None:
        return stack.thread == "MainThread"
    return any(
        f.file.endswith(("asyncio/runners.py", "asyncio/base_events.py")) for f in stack.frames
    )


def thread_label(stack: Stack) -> str:
    if stack.thread is not None:
        return stack.thread
    inner = [f for f in stack.frames if not f.file.endswith("threading.py")]
    return f"thread in {(inner or list(stack.frames))[0].func}"


# Under uvloop the loop is C: a sample in the loop itself (its dispatch, the socket calls it
# makes, the C protocol callbacks with no Python frame of their own) has as its innermost Python
# frame the function that started the loop, aiohttp's ``run_app``. That is the event loop's
# work, not aiohttp's.
LOOP_RUNNERS = (
    ("run_app", "aiohttp/web.py"),
    ("Runner.run", "asyncio/runners.py"),
)


def categorize(stack: Stack) -> tuple[str, str, Frame | None]:
    """The sample's category (innermost known frame), its on-behalf-of category (innermost
    known frame outside ``GENERIC``), and the frame that decided the first. A sample whose
    innermost frame starts the loop is the (C) loop's own: asyncio."""
    leaf = stack.frames[-1]
    if any(leaf.func == func and leaf.file.endswith(file) for func, file in LOOP_RUNNERS):
        return "asyncio", "asyncio", leaf
    own: str | None = None
    decided: Frame | None = None
    behalf: str | None = None
    for frame in reversed(stack.frames):
        c = category_of(frame)
        if c is None:
            continue
        if own is None:
            own, decided = c, frame
        if frame.file.endswith(LOOP_DISPATCH):
            break  # what lies below the loop's dispatch did not ask for this work
        if c not in GENERIC:
            behalf = c
            break
    own = own or CPYTHON_OTHER
    return own, behalf or own, decided


def _probe_hits(stack: Stack) -> set[str]:
    hits = set()
    for name, files, funcs in PROBES:
        for f in stack.frames:
            if any(x in f.file for x in files) or any(x in f.func.lower() for x in funcs):
                hits.add(name)
                break
    return hits


def _ordered(counter: collections.Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


class _Tally:
    def __init__(self) -> None:
        self.busy = 0
        self.idle = 0
        self.categories: collections.Counter[str] = collections.Counter()
        self.behalf: collections.Counter[str] = collections.Counter()
        self.probes: collections.Counter[str] = collections.Counter()
        self.leaves: collections.Counter[tuple[str, str]] = collections.Counter()
        self.leaf_category: dict[tuple[str, str], collections.Counter[str]] = (
            collections.defaultdict(collections.Counter)
        )
        self.modules: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.threads: collections.Counter[str] = collections.Counter()

    def add(self, stack: Stack) -> None:
        if is_idle(stack):
            self.idle += stack.count
            return
        n = stack.count
        self.busy += n
        own, behalf, decided = categorize(stack)
        self.categories[own] += n
        self.behalf[behalf] += n
        for name in _probe_hits(stack):
            self.probes[name] += n
        leaf = stack.frames[-1]
        key = (leaf.func, short(leaf.file))
        self.leaves[key] += n
        self.leaf_category[key][own] += n
        self.modules[own][short(decided.file) if decided else short(leaf.file)] += n
        self.threads[thread_label(stack)] += n

    def report(self, threads: bool) -> dict[str, Any]:
        def shares(counter: collections.Counter[str]) -> dict[str, float]:
            return {k: round(v / self.busy, 4) for k, v in _ordered(counter).items()}

        top = [
            {
                "function": func,
                "file": file,
                "samples": n,
                "share": round(n / self.busy, 4),
                "category": self.leaf_category[(func, file)].most_common(1)[0][0],
            }
            for (func, file), n in sorted(self.leaves.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        ]
        out: dict[str, Any] = {
            "busy_samples": self.busy,
            "idle_samples": self.idle,
            "categories": _ordered(self.categories),
            "shares": shares(self.categories) if self.busy else {},
            "on_behalf_of": _ordered(self.behalf),
            "on_behalf_of_shares": shares(self.behalf) if self.busy else {},
            "probes": _ordered(self.probes),
            "probe_shares": shares(self.probes) if self.busy else {},
            "top_self": top if self.busy else [],
            "category_modules": {
                c: dict(self.modules[c].most_common(5)) for c in _ordered(self.categories)
            },
        }
        if threads:
            out["by_thread"] = _ordered(self.threads)
        return out


def breakdown(raw: str, purchases: float, sample_rate_hz: float) -> dict[str, Any]:
    """The busy samples of py-spy's ``raw`` output by category, the event loop's thread apart
    from the others, and what they come to in CPU ms per purchase at ``sample_rate_hz``."""
    loop, other = _Tally(), _Tally()
    for stack in parse(raw):
        (loop if is_loop(stack) else other).add(stack)
    ms_per_sample = 1000.0 / sample_rate_hz

    def per_purchase(samples: int) -> float | None:
        return round(samples * ms_per_sample / purchases, 3) if purchases else None

    return {
        "purchases": purchases,
        "sample_rate_hz": sample_rate_hz,
        "loop": loop.report(threads=False),
        "other_threads": other.report(threads=True),
        "cpu_ms_per_purchase": {
            "loop": per_purchase(loop.busy),
            "other_threads": per_purchase(other.busy),
            "total": per_purchase(loop.busy + other.busy),
        },
    }


# --- markdown (the run's own summary; the committed tables are bench/render.py's) ----------


def markdown(phases: Iterable[dict[str, Any]]) -> str:
    lines = []
    for phase in phases:
        for service, w in phase["windows"].items():
            b = w["breakdown"]
            loop = b["loop"]
            lines += [
                "",
                f"### {service} at {phase['label']} (round {phase['round']})",
                "",
                f"{loop['busy_samples']} busy loop samples, "
                f"{b['other_threads']['busy_samples']} busy samples of other threads; "
                f"{w['purchases_sampled']:.1f} purchases in the sampled seconds; "
                f"py-spy CPU ms/purchase {b['cpu_ms_per_purchase']}; "
                f"process CPU ms/purchase {w['process_cpu_ms_per_purchase'].get(service)}",
                "",
                "| category | share of busy loop samples | on behalf of |",
                "|---|---|---|",
            ]
            for c in CATEGORY_ORDER:
                if c in loop["shares"] or c in loop["on_behalf_of_shares"]:
                    lines.append(
                        f"| {c} | {100 * loop['shares'].get(c, 0):.1f} % |"
                        f" {100 * loop['on_behalf_of_shares'].get(c, 0):.1f} % |"
                    )
            lines += ["", "| top self time | share | category |", "|---|---|---|"]
            for t in loop["top_self"]:
                lines.append(
                    f"| `{t['function']}` (`{t['file']}`) | {100 * t['share']:.1f} % |"
                    f" {t['category']} |"
                )
    return "\n".join(lines) + "\n"


# --- the run ----------------------------------------------------------------------------

SERVICES = ("gateway", "ticketing", "payment")
SAMPLES_LINE = re.compile(r"Samples:\s*(\d+)\s+Errors:\s*(\d+)")


class Driver:
    """POST /orders for a whole phase: open loop at ``rate``, or (``rate`` None) closed loop
    on whole purchases. Records every POST's start (wall clock), latency and status."""

    def __init__(self, http: Any, base: str, key: str, trip_ids: list[str], dsn: str) -> None:
        self.http, self.base, self.trip_ids, self.dsn = http, base, trip_ids, dsn
        self.auth = {"Authorization": f"Bearer {key}"}
        self.sent = 0
        self.posts: list[tuple[float, float, int]] = []  # (started, seconds, status)
        self.accepted = 0

    async def post(self) -> None:
        import time
        import uuid

        import aiohttp

        i = self.sent
        self.sent += 1
        body = {
            "trip_id": self.trip_ids[i % len(self.trip_ids)],
            "seat_count": 1,
            "phone": f"2547{30_000_000 + i:08d}",
        }
        started, t0 = time.time(), time.perf_counter()
        status = -1
        try:
            async with self.http.post(
                f"{self.base}/orders",
                json=body,
                headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
            ) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            pass
        self.posts.append((started, time.perf_counter() - t0, status))
        if status == 202:
            self.accepted += 1

    async def open_loop(self, rate: float, stop: Any) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        start, i, tasks = loop.time(), 0, set()
        while not stop.is_set():
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.post())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)

    async def closed_loop(self, workers: int, max_unconfirmed: int, stop: Any) -> None:
        import asyncio
        from datetime import UTC, datetime

        import asyncpg

        since = datetime.now(UTC)
        base = self.accepted
        settled = 0
        conn = await asyncpg.connect(self.dsn)  # the windows query on connections of their own

        async def poll() -> None:
            nonlocal settled
            try:
                while not stop.is_set():
                    settled = await conn.fetchval(
                        "SELECT count(*) FROM orders WHERE created_at >= $1"
                        " AND status <> 'PENDING_PAYMENT'",
                        since,
                    )
                    await asyncio.sleep(0.1)
            finally:
                await conn.close()

        async def worker() -> None:
            while not stop.is_set():
                if self.accepted - base - settled >= max_unconfirmed:
                    await asyncio.sleep(0.01)
                    continue
                await self.post()

        await asyncio.gather(poll(), *(worker() for _ in range(workers)))


def _cpu_seconds(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds of each process, all its threads; not its children (py-spy
    is the load generator's child)."""
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[name] = (t.user, t.system)
        except psutil.Error:
            pass
    return out


def _all_processes() -> dict[int, tuple[str, float]]:
    import psutil

    out = {}
    for p in psutil.process_iter(["name", "cpu_times", "cmdline"]):
        t = p.info["cpu_times"]
        if t is not None:
            out[p.pid] = (_label(p.info["name"] or "?", p.info["cmdline"] or []), t.user + t.system)
    return out


def _label(name: str, cmdline: list[str]) -> str:
    """A process's name; for Python, the module or script it runs (no paths beyond that)."""
    if not name.startswith("python") or len(cmdline) < 2:
        return name
    if "-m" in cmdline[:-1]:
        return f"python -m {cmdline[cmdline.index('-m') + 1]}"
    return f"python {Path(cmdline[1]).name}"


def _machine_times() -> tuple[float, float]:
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle, sum(t)


async def _window(
    service: str,
    pid: int,
    pids: dict[str, int],
    driver: Driver,
    args: argparse.Namespace,
    raw_path: Path,
) -> dict[str, Any]:
    """py-spy on one service for ``--seconds`` and, over the same window, every suite process's
    CPU time, the machine's, its load average, and the purchases CONFIRMED."""
    import asyncpg

    # a connection of the window's own: one held for the whole run did not survive a
    # PostgreSQL restart by someone else's test run
    db = await asyncpg.connect(driver.dsn)
    try:
        return await _measure(service, pid, pids, driver, args, raw_path, db)
    finally:
        await db.close()


async def _measure(
    service: str,
    pid: int,
    pids: dict[str, int],
    driver: Driver,
    args: argparse.Namespace,
    raw_path: Path,
    db: Any,
) -> dict[str, Any]:
    import asyncio
    import os
    import time

    t_db0 = await db.fetchval("SELECT now()")
    cpu0, procs0, mach0 = _cpu_seconds(pids), _all_processes(), _machine_times()
    load0, wall0 = os.getloadavg(), time.time()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(args.seconds),
        "--rate",
        str(args.rate),
        "--format",
        "raw",
        "--full-filenames",
        "--threads",
        *(["--gil"] if args.gil else []),
        *(["--nonblocking"] if args.nonblocking else []),
        "--output",
        str(raw_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    wall1 = time.time()
    cpu1, procs1, mach1 = _cpu_seconds(pids), _all_processes(), _machine_times()
    load1 = os.getloadavg()
    t_db1 = await db.fetchval("SELECT now()")
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"py-spy failed on {service}: {text[-2000:]}")
    confirmed = await db.fetchval(
        "SELECT count(*) FROM orders WHERE status = 'CONFIRMED'"
        " AND updated_at >= $1 AND updated_at < $2",
        t_db0,
        t_db1,
    )
    created = await db.fetchval(
        "SELECT count(*) FROM orders WHERE created_at >= $1 AND created_at < $2", t_db0, t_db1
    )
    window = (t_db1 - t_db0).total_seconds()
    m = SAMPLES_LINE.search(text)
    samples = int(m[1]) if m else None
    purchases_sampled = confirmed * args.seconds / window if window else 0.0
    raw = await asyncio.to_thread(raw_path.read_text)
    result = breakdown(raw, purchases_sampled, float(args.rate))
    user_system = {k: (cpu1[k][0] - cpu0[k][0], cpu1[k][1] - cpu0[k][1]) for k in cpu1 if k in cpu0}
    cpu = {k: u + s for k, (u, s) in user_system.items()}
    busy = sorted(
        (
            (procs1[p][1] - procs0[p][1], procs1[p][0])
            for p in procs1
            if p in procs0 and procs1[p][0] == procs0[p][0]
        ),
        reverse=True,
    )[:8]
    posts = [p for p in driver.posts if wall0 <= p[0] < wall1]
    return {
        "window_seconds": round(window, 2),
        "sampled_seconds": args.seconds,
        "py_spy": {
            "traces_written": samples,  # py-spy's "Samples": traces of all threads, not ticks
            "errors": int(m[2]) if m else None,
            "said": text.strip().splitlines()[-1:] if text.strip() else [],
            "raw": str(raw_path),
        },
        "purchases_confirmed": confirmed,
        "orders_created": created,
        "confirmed_per_second": round(confirmed / window, 2) if window else None,
        "purchases_sampled": round(purchases_sampled, 1),
        "posts_started": len(posts),
        "posts_not_202": sum(1 for p in posts if p[2] != 202),
        "process_cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "process_cpu_user_system_seconds": {
            k: [round(u, 3), round(s, 3)] for k, (u, s) in user_system.items()
        },
        "process_cpu_ms_per_purchase": {
            k: round(1000 * v / confirmed, 3) if confirmed else None for k, v in cpu.items()
        },
        "profiled": service,
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in load1],
        "machine_busy": round((mach1[0] - mach0[0]) / (mach1[1] - mach0[1]), 3),
        "busiest_processes": [{"name": n, "cpu_seconds": round(c, 2)} for c, n in busy],
        "breakdown": result,
    }


async def _phase(
    label: str,
    round_: int,
    driver: Driver,
    pids: dict[str, int],
    args: argparse.Namespace,
    otlp_url: str,
    raw_dir: Path,
) -> dict[str, Any]:
    import asyncio
    import math
    import os

    stop = asyncio.Event()
    if label == "saturation":
        mode: dict[str, Any] = {
            "mode": "closed loop on whole purchases",
            "workers": args.workers,
            "max_unconfirmed": args.max_unconfirmed,
        }
        driving = asyncio.create_task(driver.closed_loop(args.workers, args.max_unconfirmed, stop))
    else:
        rate = float(label)
        mode = {"mode": "open loop", "rate": rate}
        driving = asyncio.create_task(driver.open_loop(rate, stop))
    first = len(driver.posts)
    spans0 = await _otlp_counts(driver.http, otlp_url)
    await asyncio.sleep(args.warmup_seconds)
    load_start = os.getloadavg()
    windows = {}
    for service in SERVICES:
        raw = raw_dir / f"{label}-r{round_}-{service}.pyspy.txt"
        windows[service] = await _window(service, pids[service], pids, driver, args, raw)
        print(
            f"{label} r{round_} {service}: {windows[service]['breakdown']['cpu_ms_per_purchase']}"
            f" py-spy; {windows[service]['process_cpu_ms_per_purchase']} process",
            file=sys.stderr,
        )
        await asyncio.sleep(args.pause_seconds)
    stop.set()
    await driving
    spans1 = await _otlp_counts(driver.http, otlp_url)
    posts = driver.posts[first:]
    lat = sorted(p[1] for p in posts)

    def pct(q: float) -> float | None:
        return round(1000 * lat[max(0, math.ceil(q * len(lat)) - 1)], 2) if lat else None

    accepted = sum(1 for p in posts if p[2] == 202)
    telemetry = (
        {
            kind: {
                svc: round((spans1[kind].get(svc, 0) - spans0[kind].get(svc, 0)) / accepted, 2)
                for svc in spans1.get(kind, {})
            }
            for kind in ("spans", "logs")
        }
        if accepted
        else {}
    )
    return {
        "label": label if label == "saturation" else f"{float(label):g}/s",
        "round": round_,
        **mode,
        "posts": len(posts),
        "posts_not_202": len(posts) - accepted,
        "post_p50_ms": pct(0.5),
        "post_p99_ms": pct(0.99),
        "per_accepted_order_exported": telemetry,
        "loadavg_at_start": [round(x, 2) for x in load_start],
        "windows": windows,
    }


async def _otlp_counts(http: Any, url: str) -> dict[str, dict[str, int]]:
    async with http.get(f"{url}/counts") as r:
        counts: dict[str, dict[str, int]] = await r.json()
    return counts


async def run(args: argparse.Namespace) -> None:
    import os
    import uuid
    from datetime import UTC, datetime

    import aiohttp

    sys.path.insert(0, str(HERE))
    from common import isolated_run, run_metadata, trips

    from safiri_suite.suite import Suite

    tag = uuid.uuid4().hex[:6]
    started = datetime.now(UTC)
    raw_dir = Path(args.log_dir) / f"profile-{tag}"
    raw_dir.mkdir(parents=True, exist_ok=True)
    env = {"SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0", "SAFIRI_SEED_DAYS": "30"}
    phases: list[dict[str, Any]] = []
    async with (
        isolated_run(f"profile-{tag}", log_dir=raw_dir, extra_env=env) as (config, otlp_url),
        Suite(config) as suite,
    ):
        pids = {name: p.pid for name, p in suite.processes.items()}
        pids["load generator"] = os.getpid()
        base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
        connector = aiohttp.TCPConnector(limit=512)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            key = config.api_keys[0]
            auth = {"Authorization": f"Bearer {key}"}
            trip_ids = await trips(http, base, auth, range(1, 29))
            driver = Driver(http, base, key, trip_ids, config.database_url("ticketing"))
            for round_ in range(1, args.rounds + 1):
                for label in args.phases.split(","):
                    phases.append(
                        await _phase(label, round_, driver, pids, args, otlp_url, raw_dir)
                    )
    version = await _py_spy_version()
    report = {
        "benchmark": "where each service's CPU per purchase goes: py-spy samples by category,"
        " at a fixed rate and at saturation",
        **run_metadata(
            variant={
                "telemetry": "on, as shipped (100 % sampling, OTLP to a discarding sink)",
                "environment": env,
                "py_spy": f"{version}, record --rate {args.rate} --threads"
                + (" --gil" if args.gil else "")
                + (" --nonblocking" if args.nonblocking else " (blocking)"),
            },
            when=started,
        ),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("analyze", "purchases")},
        "categories": [[name, list(frags)] for name, frags in CATEGORIES],
        "category_order": CATEGORY_ORDER,
        "probe_order": [name for name, _, _ in PROBES],
        "idle_leaves": sorted(IDLE_LEAVES),
        "idle_at": [list(x) for x in IDLE_AT],
        "phases": phases,
    }
    out = HERE / "results" / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    md = raw_dir / f"{args.name}.md"
    md.write_text(markdown(phases))
    print(markdown(phases))
    print(f"written to {out} (and {md}; raw stacks in {raw_dir})")


async def _py_spy_version() -> str:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"),
        "--version",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


def reanalyze(report_path: Path) -> None:
    """Each window's breakdown of ``report_path`` computed again from its raw py-spy file with
    this file's rules (the purchases and the sample rate as the run measured them)."""
    report = json.loads(report_path.read_text())
    for phase in report["phases"]:
        for w in phase["windows"].values():
            purchases = w["purchases_confirmed"] * w["sampled_seconds"] / w["window_seconds"]
            raw = Path(w["py_spy"]["raw"]).read_text()
            spy = w["py_spy"]
            spy.pop("effective_rate_hz", None)  # a first version's misreading of "Samples"
            if "samples" in spy:
                spy["traces_written"] = spy.pop("samples")
            w["breakdown"] = breakdown(raw, purchases, float(report["parameters"]["rate"]))
    report["categories"] = [[name, list(frags)] for name, frags in CATEGORIES]
    report["idle_leaves"] = sorted(IDLE_LEAVES)
    report["idle_at"] = [list(x) for x in IDLE_AT]
    report["category_order"] = CATEGORY_ORDER
    report["probe_order"] = [name for name, _, _ in PROBES]
    report["reanalyzed"] = (
        "breakdowns recomputed from the raw files by bench/profile_breakdown.py --reanalyze"
    )
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report["phases"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", default="20,saturation")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=25, help="py-spy per service")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil: GIL holders only")
    parser.add_argument("--nonblocking", action="store_true", help="py-spy --nonblocking")
    parser.add_argument("--warmup-seconds", type=float, default=6.0)
    parser.add_argument("--pause-seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=16, help="saturation: concurrent POSTs")
    parser.add_argument("--max-unconfirmed", type=int, default=48)
    parser.add_argument("--log-dir", default="/tmp/safiri-bench-logs")
    parser.add_argument("--name", default="profile_baseline")
    parser.add_argument("--analyze", help="a raw py-spy file: print its breakdown and exit")
    parser.add_argument("--purchases", type=float, default=0.0, help="with --analyze")
    parser.add_argument(
        "--reanalyze", help="a report: each window's breakdown again from its raw file"
    )
    args = parser.parse_args()
    if args.analyze:
        result = breakdown(Path(args.analyze).read_text(), args.purchases, float(args.rate))
        print(json.dumps(result, indent=2))
        return
    if args.reanalyze:
        reanalyze(Path(args.reanalyze))
        return
    import asyncio

    asyncio.run(run(args))


if __name__ == "__main__":
    main()
