"""One load run: Locust against the suite, then the metrics-versus-database check.

The suite is either one already running (``make up``) or, with ``self_contained``, one of the
run's own: the four processes on free ports with a RabbitMQ vhost and databases named for the
run, removed afterwards (the same building blocks ``safiri chaos run --self-contained`` uses).
A suite of the run's own has an API key of its own and a gateway rate limit sized for the
scenario (:meth:`Scenario.rate_limit`); a suite already running has the limit it was started
with, and the report counts the requests it refused and names it.

The verdict (:class:`Verdict`) holds the run to the scenario's error ratio and its latency
gates (POST /orders p99, order to final state p99) as well as to the metric's agreement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg

from safiri_suite.suite import Suite, drop_databases, isolated_config, own_vhost

from .check import (
    LatencyGate,
    OrdersState,
    Verdict,
    duration_text,
    orders_state,
    scrape_counter,
    unrecorded_orders,
    wait_until_final,
)
from .scenarios import DEFAULT_USER_RPS, SCENARIOS, RateLimit, Scenario
from .stats import (
    ORDER_TYPE,
    POLL,
    PURCHASE,
    LoadStats,
    rate_limited,
    summarize,
    top_failures,
)

__all__ = ["LOCUSTFILE", "LoadError", "LoadOptions", "LoadOutcome", "Target", "run_load_scenario"]

LOCUSTFILE = Path(__file__).resolve().parents[4] / "load" / "locustfile.py"
SELF_CONTAINED_HOLD_TTL = 60.0


class LoadError(RuntimeError):
    """The run could not be set up or Locust did not finish: no verdict."""


@dataclass(frozen=True)
class Target:
    gateway_url: str
    ticketing_url: str
    ticketing_database_url: str
    api_key: str
    trip_days: int = 13  # trips from tomorrow on, this many days, are on sale
    hold_ttl_seconds: float = 300.0
    self_contained: bool = False
    vhost: str | None = None  # a suite of the run's own: its vhost and databases, removed after
    databases: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None  # the gateway limit the run set (None: the suite's own)


@dataclass
class LoadOptions:
    scenario: Scenario
    results_root: Path = Path("load/results")
    target: Target | None = None  # None: a suite of the run's own
    max_error_ratio: float = 0.01
    settle_timeout: float | None = None  # default: the hold TTL plus 30 s
    user_rps: float = DEFAULT_USER_RPS
    final_timeout: float = 20.0  # a buyer polls its order this long
    locustfile: Path = LOCUSTFILE
    log: Callable[[str], None] = field(default=lambda line: None)


@dataclass(frozen=True)
class LoadOutcome:
    result: dict[str, Any]
    result_path: Path
    passed: bool


# What ticketing's seeded timetable holds per day (22 departures of 40 seats), as the public
# API shows it. A figure of the load tool's own, not an import of ticketing's internals:
# ``_check_capacity`` counts the seats on sale through GET /trips after start, so a smaller
# timetable fails the run loudly instead of selling out half way.
SEATS_PER_DAY_AT_LEAST = 880


def _seed_days(scenario: Scenario) -> int:
    """Days of timetable that hold the seats the run may buy, with a quarter to spare."""
    return min(365, math.ceil(scenario.seats_needed() * 1.25 / SEATS_PER_DAY_AT_LEAST) + 1)


async def _check_capacity(target: Target, needed: int) -> None:
    """Fail before the load starts when the seats on sale, counted through the public API,
    are fewer than the scenario may buy."""
    on_sale = 0
    headers = {"Authorization": f"Bearer {target.api_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for offset in range(1, target.trip_days + 1):
            day = (date.today() + timedelta(days=offset)).isoformat()
            async with http.get(f"{target.gateway_url}/api/v1/trips", params={"date": day}) as r:
                r.raise_for_status()
                on_sale += sum(t["seats_available"] for t in (await r.json())["trips"])
    if on_sale < needed:
        raise RuntimeError(
            f"the suite has {on_sale} seats on sale over {target.trip_days} days and the scenario"
            f" may buy {needed}: the seeded timetable is smaller than SEATS_PER_DAY_AT_LEAST"
            f" ({SEATS_PER_DAY_AT_LEAST}) says; lower that figure"
        )


@contextlib.asynccontextmanager
async def own_suite(
    run_dir: Path, scenario: Scenario, user_rps: float = DEFAULT_USER_RPS
) -> AsyncIterator[Target]:
    """The suite of the run's own; its vhost and databases are removed when the block exits.

    Its gateway accepts one API key, the run's, limited to what the scenario's buyers can send
    with a quarter to spare: the gateway's default (200/s per key) refuses a third of the
    spike's requests, and a run that measures the limiter says nothing about the suite."""
    run_id = uuid.uuid4().hex[:10]
    api_key = secrets.token_urlsafe(16)
    days = _seed_days(scenario)
    limit = scenario.rate_limit(user_rps)
    env = {
        **limit.env(),
        "SAFIRI_HOLD_TTL_SECONDS": str(SELF_CONTAINED_HOLD_TTL),
        "SAFIRI_SWEEP_INTERVAL_SECONDS": "1",
        # Trips departing tomorrow onwards are on sale: seed one day more than are bought.
        "SAFIRI_SEED_DAYS": str(days + 1),
    }
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        env["OTEL_SDK_DISABLED"] = "true"  # no trace store runs: don't export to nowhere
    async with own_vhost(f"safiri-load-{run_id}") as amqp_url:
        config = isolated_config(
            api_key=api_key,
            database_prefix=f"safiri_load_{run_id}",
            amqp_url=amqp_url,
            log_dir=run_dir / "logs",
            extra_env=env,
        )
        try:
            async with Suite(config):
                yield Target(
                    gateway_url=f"http://127.0.0.1:{config.gateway_port}",
                    ticketing_url=f"http://127.0.0.1:{config.ticketing_port}",
                    ticketing_database_url=config.database_url("ticketing"),
                    api_key=api_key,
                    trip_days=days,
                    hold_ttl_seconds=SELF_CONTAINED_HOLD_TTL,
                    self_contained=True,
                    vhost=amqp_url.rsplit("/", 1)[-1],
                    databases=tuple(config.databases),
                    rate_limit=limit,
                )
        finally:
            await drop_databases(config)


def _run_dir(root: Path, scenario: Scenario) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Absolute: Locust runs in this directory and is given paths inside it.
    run_dir = (root / f"{stamp}-{scenario.name}-{uuid.uuid4().hex[:4]}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


async def run_load_scenario(options: LoadOptions) -> LoadOutcome:
    run_dir = _run_dir(options.results_root, options.scenario)
    started_at = datetime.now(UTC)
    async with contextlib.AsyncExitStack() as stack:
        target = options.target
        if target is None:
            options.log(f"starting a suite of the run's own (logs: {run_dir / 'logs'})")
            target = await stack.enter_async_context(
                own_suite(run_dir, options.scenario, options.user_rps)
            )
            await _check_capacity(target, options.scenario.seats_needed())
        result = await _measure(options, target, run_dir)
    result["started_at"] = started_at.isoformat(timespec="seconds")
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = run_dir / "result.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return LoadOutcome(result=result, result_path=path, passed=bool(result["passed"]))


async def _measure(options: LoadOptions, target: Target, run_dir: Path) -> dict[str, Any]:
    scenario = options.scenario
    metrics_url = f"{target.ticketing_url.rstrip('/')}/metrics"
    orders_file = run_dir / "orders.jsonl"
    db = target.ticketing_database_url
    async with aiohttp.ClientSession() as http:
        await _check_reachable(http, target)
        since = await _query(db, lambda conn: conn.fetchval("SELECT now()"))
        before = await scrape_counter(http, metrics_url)
        options.log(
            f"{scenario.name}: {scenario.mean_rate:g}/s on average (peak"
            f" {scenario.peak_rate:g}/s) for {scenario.duration:g} s against"
            f" {target.gateway_url}"
        )
        options.log(_rate_limit_line(options, target))
        stats = await _run_locust(options, target, run_dir, orders_file)
        order_ids = _recorded_orders(orders_file)
        settle = options.settle_timeout
        if settle is None:
            settle = target.hold_ttl_seconds + 30.0
        options.log(f"waiting up to {settle:g} s for the run's {len(order_ids)} orders")

        async def read() -> OrdersState:
            # A database that is briefly away (a restart) is waited for like a pending order.
            try:
                return await _query(db, lambda conn: orders_state(conn, order_ids))
            except _DB_ERRORS:
                return OrdersState(recorded=len(order_ids), found=0)

        await wait_until_final(read, settle)
        state = await _query(db, lambda conn: orders_state(conn, order_ids))
        after = await _settled_metric(http, metrics_url, before + state.tickets)
        others = await _query(db, lambda conn: unrecorded_orders(conn, since, order_ids))
    failures_csv = run_dir / "locust_failures.csv"
    refused, met = rate_limited(failures_csv.read_text()) if failures_csv.exists() else (0, None)
    verdict = Verdict(
        metric_before=before,
        metric_after=after,
        db_tickets=state.tickets,
        pending_orders=state.pending,
        error_ratio=stats.error_ratio,
        max_error_ratio=options.max_error_ratio,
        latency=latency_gates(scenario, stats),
        rate_limited=refused,
        rate_limit_met=met,
        rate_limit_needed=_settings(scenario.rate_limit(options.user_rps)),
    )
    return _result(options, target, run_dir, stats, state, verdict, others)


def latency_gates(scenario: Scenario, stats: LoadStats) -> tuple[LatencyGate, ...]:
    """The scenario's latency gates against the run's figures (None where there is none)."""

    def p99(method: str, name: str) -> int | None:
        entry = stats.entry(method, name)
        return entry.p99_ms if entry is not None and entry.requests > 0 else None

    return (
        LatencyGate("POST /orders p99", scenario.gates.post_p99, p99(*PURCHASE)),
        LatencyGate(
            "order to final state p99", scenario.gates.final_p99, p99(ORDER_TYPE, "final state")
        ),
    )


def _settings(limit: RateLimit) -> str:
    return " ".join(f"{k}={v}" for k, v in limit.env().items())


def _rate_limit_line(options: LoadOptions, target: Target) -> str:
    scenario = options.scenario
    most = scenario.requests_per_second_at_most(options.user_rps)
    if target.rate_limit is not None:
        return (
            f"the run's gateway allows {target.rate_limit.per_second}/s per API key (bursts"
            f" of {target.rate_limit.burst}); the buyers send at most {most:g}/s"
        )
    return (
        f"the buyers send up to {most:g} requests/s with one API key; the gateway refuses"
        f" past its limit (default 200/s): this scenario needs"
        f" {_settings(scenario.rate_limit(options.user_rps))} on the suite (load/README.md)"
    )


_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
T = TypeVar("T")


async def _query(url: str, work: Callable[[asyncpg.Connection[Any]], Awaitable[T]]) -> T:
    """``work`` on a connection of its own: nothing is held open while Locust runs."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await work(conn)
    finally:
        await conn.close()


async def _check_reachable(http: aiohttp.ClientSession, target: Target) -> None:
    for name, url in (("gateway", target.gateway_url), ("ticketing", target.ticketing_url)):
        try:
            async with http.get(
                f"{url.rstrip('/')}/readyz", timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                if response.status != 200:
                    raise LoadError(f"{name} at {url} is not ready ({response.status})")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LoadError(
                f"{name} is not reachable at {url}: {exc} (is `make up` running?)"
            ) from None


async def _settled_metric(
    http: aiohttp.ClientSession, metrics_url: str, expected: float, timeout: float = 5.0
) -> float:
    """The counter after the run. Ticketing counts a confirmation just after committing it,
    so a scrape may briefly trail the database: re-scrape for up to ``timeout`` s while it is
    below ``expected`` (never past it: a counter above the database is reported as it is)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await scrape_counter(http, metrics_url)
        if value >= expected or loop.time() >= deadline:
            return value
        await asyncio.sleep(0.2)


def _recorded_orders(path: Path) -> list[str]:
    if not path.exists():
        return []
    ids = []
    for line in path.read_text().splitlines():
        if line.strip():
            ids.append(str(json.loads(line)["order_id"]))
    return ids


async def _run_locust(
    options: LoadOptions, target: Target, run_dir: Path, orders_file: Path
) -> LoadStats:
    scenario = options.scenario
    # Users stopped at the end finish their purchase first: a POST and its retries (each up
    # to the gateway's upstream timeout), then the polling.
    stop_timeout = options.final_timeout + 35.0
    env = {
        **os.environ,
        "SAFIRI_LOAD_SCENARIO": scenario.to_json(),
        "SAFIRI_LOAD_API_KEY": target.api_key,
        "SAFIRI_LOAD_ORDERS_FILE": str(orders_file),
        "SAFIRI_LOAD_TRIP_DAYS": str(target.trip_days),
        "SAFIRI_LOAD_USER_RPS": str(options.user_rps),
        "SAFIRI_LOAD_FINAL_TIMEOUT": str(options.final_timeout),
    }
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(options.locustfile),
        "--headless",
        "--host",
        target.gateway_url,
        "--only-summary",
        "--stop-timeout",
        f"{stop_timeout:g}",
        "--json-file",
        str(run_dir / "locust_stats"),
        "--csv",
        str(run_dir / "locust"),
        "--html",
        str(run_dir / "locust.html"),
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    log_path = run_dir / "locust.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=run_dir,  # no locust.conf or pyproject.toml of the caller's is read
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            code = await asyncio.wait_for(process.wait(), scenario.duration + stop_timeout + 60)
        except TimeoutError:
            raise LoadError(f"locust did not finish in time (log: {log_path})") from None
        finally:
            await _stop(process)
    stats_path = run_dir / "locust_stats.json"
    if code != 0 or not stats_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise LoadError(f"locust exited with {code}:\n{tail}")
    return summarize(json.loads(stats_path.read_text()))


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Locust stops its users on SIGTERM; it is killed if it has not gone within 30 s."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _full_form(scenario: Scenario) -> bool:
    full = SCENARIOS.get(scenario.name)
    return full is not None and scenario.stages == full.stages


def _ms(stats: LoadStats, method: str, name: str) -> dict[str, int] | None:
    entry = stats.entry(method, name)
    if entry is None:
        return None
    return {"p50": entry.p50_ms, "p95": entry.p95_ms, "p99": entry.p99_ms}


def _result(
    options: LoadOptions,
    target: Target,
    run_dir: Path,
    stats: LoadStats,
    state: OrdersState,
    verdict: Verdict,
    others: dict[str, int],
) -> dict[str, Any]:
    scenario = options.scenario
    failures_csv = run_dir / "locust_failures.csv"
    full = SCENARIOS.get(scenario.name)
    return {
        "scenario": scenario.name,
        "summary": scenario.summary,
        "full_form": _full_form(scenario),
        "stages": [{"seconds": s.seconds, "rate": s.rate} for s in scenario.stages],
        "target_rps": round(scenario.mean_rate, 2),
        "peak_rps": scenario.peak_rate,
        # Actions start only while the stages last; the tail after them is buyers finishing.
        "achieved_rps": round(stats.actions / scenario.duration, 2),
        "requests_rps": round(stats.requests_rps, 2),
        "elapsed_seconds": round(stats.elapsed_seconds, 1),
        "actions": stats.actions,
        "requests": stats.http_requests,
        "failures": {
            "requests": stats.http_failures,
            "orders": stats.order_failures,
            "total": stats.failures,
            "rate_limited": verdict.rate_limited,  # of the requests: 429s, counted apart
        },
        "error_ratio": round(stats.error_ratio, 5),
        "max_error_ratio": options.max_error_ratio,
        "latency_gates": [gate.to_dict() for gate in verdict.latency],
        # False when --post-p99/--final-p99 replaced the scenario's own thresholds.
        "latency_gates_are_the_scenarios": full is None or scenario.gates == full.gates,
        "rate_limit": {
            "set_by_the_run": None if target.rate_limit is None else target.rate_limit.to_dict(),
            "needed": scenario.rate_limit(options.user_rps).to_dict(),
            "buyers_send_at_most_rps": scenario.requests_per_second_at_most(options.user_rps),
            "refused": verdict.rate_limited,
            "met": verdict.rate_limit_met,
        },
        "latency_ms": {"p50": stats.p50_ms, "p95": stats.p95_ms, "p99": stats.p99_ms},
        "purchase_latency_ms": _ms(stats, *PURCHASE),
        "poll_latency_ms": _ms(stats, *POLL),
        "time_to_final_ms": _ms(stats, "ORDER", "final state"),
        "orders": state.to_dict(),
        "tickets_sold_total": {
            "before": verdict.metric_before,
            "after": verdict.metric_after,
            "delta": verdict.metric_delta,
        },
        "db_tickets": verdict.db_tickets,
        "agree": verdict.agree,
        "passed": verdict.passed,
        "reasons": verdict.reasons,
        "orders_not_recorded_by_the_run": others,
        "entries": [e.to_dict() for e in stats.entries],
        "top_failures": top_failures(failures_csv.read_text()) if failures_csv.exists() else [],
        "target": {
            "gateway_url": target.gateway_url,
            "ticketing_url": target.ticketing_url,
            "self_contained": target.self_contained,
            "vhost": target.vhost,
            "databases": list(target.databases),
        },
        "results_dir": str(run_dir),
    }


def render(result: dict[str, Any]) -> str:
    """The short human report of a result."""
    metric = result["tickets_sold_total"]
    orders = result["orders"]
    latency = result["latency_ms"]
    purchase = result.get("purchase_latency_ms") or {}
    final = result.get("time_to_final_ms") or {}
    statuses = ", ".join(f"{k} {v}" for k, v in orders["by_status"].items()) or "none"
    name = result["scenario"]
    if result["full_form"]:
        title = f"load {name}: {result['summary']}"
    else:
        title = (
            f"load {name}, shortened to {sum(s['seconds'] for s in result['stages']):g} s"
            f" (full form: {result['summary']})"
        )
    lines = [
        title,
        f"  rate       target {result['target_rps']:g}/s (peak {result['peak_rps']:g}/s),"
        f" achieved {result['achieved_rps']:g}/s;"
        f" {result['requests']} HTTP requests in {result['elapsed_seconds']:g} s"
        f" ({result['requests_rps']:g}/s)",
        f"  latency    all requests p50 {latency['p50']} ms, p95 {latency['p95']} ms,"
        f" p99 {latency['p99']} ms",
    ]
    if purchase:
        lines.append(
            f"             POST /orders p50 {purchase['p50']} ms, p95 {purchase['p95']} ms,"
            f" p99 {purchase['p99']} ms"
        )
    if final:
        lines.append(
            f"             order to final state p50 {final['p50']} ms, p95 {final['p95']} ms,"
            f" p99 {final['p99']} ms"
        )
    lines += _gate_lines(result["latency_gates"], result["latency_gates_are_the_scenarios"])
    refused = result["failures"]["rate_limited"]
    lines += [
        _rate_limit_report(result["rate_limit"], result["target"]["self_contained"]),
        f"  failures   {result['failures']['requests']} requests"
        + (f" ({refused} refused by the rate limit)" if refused else "")
        + ","
        f" {result['failures']['orders']} orders; error ratio {result['error_ratio']:.2%}"
        f" (allowed {result['max_error_ratio']:.2%})",
        f"  orders     {orders['recorded']} placed: {statuses}",
        f"  check      tickets_sold_total +{metric['delta']:g}"
        f" ({metric['before']:g} → {metric['after']:g}), database {result['db_tickets']}"
        f" tickets → {'AGREE' if result['agree'] else 'DISAGREE'}",
    ]
    for failure in result["top_failures"]:
        lines.append(
            f"  error      {failure['occurrences']} x {failure['method']} {failure['name']}:"
            f" {failure['error']}"
        )
    others = result["orders_not_recorded_by_the_run"]
    if not result["agree"] and others["orders"]:
        why = (
            "answers lost to timeouts (the suite is the run's own: no other client)"
            if result["target"]["self_contained"]
            else "another client's, or answers lost to timeouts"
        )
        lines.append(
            f"  note       {others['orders']} orders the run was never told of were created"
            f" meanwhile, {others['confirmed_seats']} seats of them confirmed: {why}"
        )
    for reason in result["reasons"]:
        lines.append(f"  FAILED     {reason}")
    lines.append(
        f"  {'PASSED' if result['passed'] else 'FAILED'}  results: {result['results_dir']}"
    )
    return "\n".join(lines)


def _gate_lines(gates: list[dict[str, Any]], the_scenarios: bool) -> list[str]:
    lines = []
    for n, gate in enumerate(gates):
        allowed = f"{gate['max_ms'] / 1000:g} s"
        if gate["measured_ms"] is None:
            figure = f"{gate['name']} not measured (allowed {allowed})"
        else:
            sign = "<=" if gate["passed"] else ">"
            figure = f"{gate['name']} {duration_text(gate['measured_ms'])} {sign} {allowed}"
        head = "  gates      " if n == 0 else "             "
        lines.append(f"{head}{figure}  {'pass' if gate['passed'] else 'FAIL'}")
    if gates and not the_scenarios:
        lines[-1] += "  (thresholds from the command line, not the scenario's)"
    return lines


def _rate_limit_report(limit: dict[str, Any], self_contained: bool) -> str:
    refused = limit["refused"]
    said = f": {limit['met']}" if refused and limit["met"] else ""
    outcome = f"{refused} requests refused (429){said}"
    set_by_run = limit["set_by_the_run"]
    if self_contained and set_by_run:
        return (
            f"  rate limit set by the run: {set_by_run['per_second']}/s per API key, bursts of"
            f" {set_by_run['burst']} (the buyers send at most"
            f" {limit['buyers_send_at_most_rps']:g}/s); {outcome}"
        )
    needed = limit["needed"]
    return (
        f"  rate limit the suite's (this scenario needs SAFIRI_RATE_LIMIT_PER_SECOND="
        f"{needed['per_second']} SAFIRI_RATE_LIMIT_BURST={needed['burst']}); {outcome}"
    )
