"""The runbooks run: every query and command in docs/runbooks/ works, and its sample is real.

A runbook marks what a parser can run: a ```promql block is one PromQL expression, followed by
its Prometheus graph link (``http://127.0.0.1:9090/graph?g0.expr=…&g0.range_input=30m``, the
expression URL-encoded); a ```console block holds commands after a ``$ `` prompt, each
followed by its sample output. A block whose info string says ``cluster`` (```promql cluster)
needs cluster mode's RabbitMQ nodes: it must parse, and may find no data on one node.

Against a suite of its own exporting to a real trace store, with a real Prometheus scraping it
and evaluating the shipped rules (``make up``'s Prometheus, at a 1 s scrape), one failed
payment and one purchase are made; then every PromQL expression must parse and return data,
every command must exit 0 and print what its sample shows in shape: the same lines with the
same words, ids, times, ports and figures aside (``shape``). Commands run as written, with
``make up``'s addresses (gateway 8080 … Prometheus 9090, trace store 4318) pointed at this
run's and the sample's order id replaced by this run's failed order.

``SAFIRI_REGENERATE_RUNBOOKS=1`` writes each command's real output back into the runbook as its
new sample (this run's ports mapped back to ``make up``'s), for a person to review in git diff.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import aiohttp
import pytest
import pytest_asyncio

from safiri_chaos.prometheus import running_prometheus, write_rules
from safiri_tracestore import running_store
from tests.conftest import eventually, own_vhost

from .conftest import Running, suite_running

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK_DIR = ROOT / "docs" / "runbooks"
RUNBOOKS = sorted(p for p in RUNBOOK_DIR.glob("*.md") if p.name != "README.md")
PROMETHEUS = "127.0.0.1:9090"
GRAPH = f"http://{PROMETHEUS}/graph"
RANGE = "30m"
FAILING_PHONE = "254700001037"  # the simulator's "user cannot be reached"
HEALTHY_PHONE = "254712345678"
# make up's addresses, as the runbooks write them: role -> default port.
DEFAULT_PORTS = {
    "gateway": 8080,
    "ticketing": 8081,
    "payment": 8082,
    "mpesa-simulator": 8090,
    "trace-store": 4318,
    "prometheus": 9090,
}

_FENCE = re.compile(r"^```([a-z]*)([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_GRAPH_LINK = re.compile(r"\((http://127\.0\.0\.1:9090/graph\?[^)\s]+)\)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TRACE_ID = re.compile(r"\b[0-9a-f]{32}\b")
_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


# ------------------------------------------------------------------- what the runbooks say


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    info: str
    text: str
    after: str  # the prose after the block, up to the next block or heading

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Command:
    block: Block
    command: str
    sample: str


def blocks(path: Path, text: str | None = None) -> list[Block]:
    text = path.read_text() if text is None else text
    found = []
    matches = list(_FENCE.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        after = re.split(r"^#", text[m.end() : end], maxsplit=1, flags=re.MULTILINE)[0]
        line = text.count("\n", 0, m.start()) + 1
        found.append(Block(path, line, m[1], m[2].strip(), m[3], after))
    return found


def queries(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang == "promql"]


def commands(path: Path, text: str | None = None) -> list[Command]:
    out = []
    for block in blocks(path, text):
        if block.lang != "console":
            continue
        parts = re.split(r"^\$ ", block.text, flags=re.MULTILINE)
        assert parts[0].strip() == "", f"{block.where}: text before the first `$ ` prompt"
        for part in parts[1:]:
            command, _, sample = part.partition("\n")
            out.append(Command(block, command.strip(), sample))
    return out


def graph_url(query: str) -> str:
    """The Prometheus graph page for ``query`` over the last 30 minutes."""
    params = {"g0.expr": query, "g0.tab": "0", "g0.range_input": RANGE}
    return f"{GRAPH}?{urlencode(params, quote_via=quote)}"


def shape(text: str, unordered: bool = False) -> list[str]:
    """The lines of a command's output with what changes from run to run taken out: ids,
    times, and every number (durations, counts, ports, values); spacing collapsed."""
    lines = []
    for raw in text.strip("\n").splitlines():
        line = _UUID.sub("<id>", raw)
        line = _TRACE_ID.sub("<trace>", line)
        line = _TIME.sub("<time>", line)
        line = _NUMBER.sub("<n>", line)
        line = " ".join(line.split())
        lines.append(line)
    return sorted(lines) if unordered else lines


def unordered(command: str) -> bool:
    # Prometheus promises no order of an instant vector's series.
    return command.startswith("promtool ")


def mismatch(expected: str, got: str, command: str) -> str | None:
    """None when ``got`` has ``expected``'s shape, else the first differing line of each."""
    want, have = shape(expected, unordered(command)), shape(got, unordered(command))
    if want == have:
        return None
    for i, (w, h) in enumerate(zip(want, have, strict=False)):
        if w != h:
            return f"line {i + 1}: the sample shows\n    {w}\n  the run printed\n    {h}"
    return f"the sample has {len(want)} lines, the run printed {len(have)}"


# ------------------------------------------------------------- the static checks (no suite)


def test_every_runbook_answers_its_windowed_questions_with_prometheus_queries() -> None:
    assert RUNBOOKS, f"no runbooks in {RUNBOOK_DIR}"
    without = [p.name for p in RUNBOOKS if not queries(p)]
    assert not without, f"runbooks without a ```promql query: {without}"


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_every_query_has_its_graph_link_and_every_link_its_query(path: Path) -> None:
    problems = []
    tested = set()
    for block in queries(path):
        query = block.text.strip()
        tested.add(query)
        links = _GRAPH_LINK.findall(block.after)
        if graph_url(query) not in links:
            problems.append(f"{block.where}: no graph link for it: {graph_url(query)}")
    for url in _GRAPH_LINK.findall(path.read_text()):
        params = parse_qs(urlsplit(url).query)
        expr = params.get("g0.expr", [""])[0]
        if expr not in tested or params.get("g0.range_input") != [RANGE]:
            problems.append(f"{path.name}: a graph link for no ```promql block: {expr!r}")
    assert not problems, "\n".join(problems)


def test_the_shape_of_a_sample_tells_a_stale_one_from_a_fresh_one() -> None:
    sample = (
        "logs (2):\n  2026-11-25 19:27:24.202  ticketing  INFO  seats held\n"
        "  2026-11-25 19:27:24.730  ticketing  INFO  order final\n"
    )
    fresh = (
        "logs (2):\n  2027-01-02 03:04:05.678  ticketing        INFO    seats held\n"
        "  2027-01-02 03:04:05.999  ticketing        INFO    order final\n"
    )
    assert mismatch(sample, fresh, "safiri trace") is None
    stale = fresh.replace("  2027-01-02 03:04:05.678  ticketing        INFO    seats held\n", "")
    assert mismatch(sample, stale, "safiri trace") is not None
    renamed = fresh.replace("seats held", "seats reserved")
    assert mismatch(sample, renamed, "safiri trace") is not None
    swapped = "\n".join(reversed(fresh.splitlines()))
    assert mismatch(sample, swapped, "safiri trace") is not None
    assert mismatch(sample, swapped, "promtool query instant x y") is None


# ------------------------------------------------------------------- the live run


@dataclass
class Live:
    running: Running
    store_url: str
    prometheus_url: str
    failed_order: str
    confirmed_order: str

    def addresses(self) -> dict[int, int]:
        """make up's port -> this run's."""
        ports = dict(self.running.ports)
        ports["trace-store"] = int(urlsplit(self.store_url).port or 0)
        ports["prometheus"] = int(urlsplit(self.prometheus_url).port or 0)
        return {DEFAULT_PORTS[role]: port for role, port in ports.items()}

    def as_run(self, command: str) -> str:
        for default, port in self.addresses().items():
            command = command.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")
        return _UUID.sub(self.failed_order, command)

    def as_documented(self, output: str) -> str:
        for default, port in self.addresses().items():
            output = output.replace(f"127.0.0.1:{port}", f"127.0.0.1:{default}")
        return output


@pytest_asyncio.fixture(scope="module")
async def live(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    work = tmp_path_factory.mktemp("runbooks")
    with own_vhost(f"safiri-test-{run_id}-runbooks") as amqp_url:
        async with (
            running_store(port=0, path=work / "traces.sqlite3") as store_url,
            suite_running(
                f"safiri_test_{run_id}_runbooks", amqp_url, work / "logs", store_url
            ) as running,
            running_prometheus(
                running.suite.scrape_targets(),
                write_rules(work / "rules", fast=False),  # the shipped rules, unchanged
                work / "prometheus",
                "1s",
            ) as prometheus_url,
        ):
            # The failed payment first: it is the purchase that fetches the provider's token,
            # as the first one after `make up` does.
            trip = await running.next_trip("Nairobi", "Mombasa")
            status, failed, _ = await running.place_order(
                trip["trip_id"], phone=FAILING_PHONE, seat_count=2
            )
            assert status == 202, failed
            assert (await running.final_order(failed["order_id"]))["status"] == "PAYMENT_FAILED"
            status, paid, _ = await running.place_order(trip["trip_id"], phone=HEALTHY_PHONE)
            assert status == 202, paid
            assert (await running.final_order(paid["order_id"]))["status"] == "CONFIRMED"
            yield Live(running, store_url, prometheus_url, failed["order_id"], paid["order_id"])


async def instant(http: aiohttp.ClientSession, url: str, query: str) -> tuple[str, int]:
    """Prometheus' answer to ``query`` now: ``("", n series)`` or ``(error, 0)``."""
    async with http.get(f"{url}/api/v1/query", params={"query": query}) as response:
        body = await response.json(content_type=None)
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}", 0
    return "", len(body["data"]["result"])


async def query_problems(http: aiohttp.ClientSession, url: str, found: list[Block]) -> list[str]:
    problems = []
    for block in found:
        error, series = await instant(http, url, block.text.strip())
        if error:
            problems.append(f"{block.where}: {error}\n    {block.text.strip()}")
        elif series == 0 and "cluster" not in block.info.split():
            problems.append(f"{block.where}: no data\n    {block.text.strip()}")
    return problems


async def test_every_runbook_query_parses_and_finds_data(live: Live) -> None:
    found = [b for path in RUNBOOKS for b in queries(path)]
    url, http = live.prometheus_url, live.running.http

    async def answered() -> bool:
        problems = await query_problems(http, url, found)
        return None if problems else problems

    try:
        # A counter needs two scrapes, a recording rule one evaluation after them.
        await eventually(answered, timeout=20, interval=0.5, what="every runbook query's data")
    except pytest.fail.Exception:
        pytest.fail("\n".join(await query_problems(http, url, found)))
    # The check can fail: an expression that does not parse, and a misspelt metric.
    broken = Block(RUNBOOKS[0], 0, "promql", "", "sum(rate(payments_total[10m])", "")
    misspelt = Block(RUNBOOKS[0], 0, "promql", "", "sum(rate(payments_totl[10m]))", "")
    assert len(await query_problems(http, url, [broken, misspelt])) == 2


async def run(command: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-o",
        "pipefail",
        "-c",
        command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode()


def regenerate(path: Path, outputs: dict[str, str]) -> None:
    """Each console block of ``path`` rewritten with its commands' real outputs."""
    text = path.read_text()

    def block(m: re.Match[str]) -> str:
        if m[1] != "console":
            return m[0]
        body = ""
        for part in re.split(r"^\$ ", m[3], flags=re.MULTILINE)[1:]:
            command = part.partition("\n")[0].strip()
            got = outputs.get(command)
            if got is None:
                return m[0]
            ran_for = _UUID.search(got)
            if _UUID.search(command) and ran_for:
                command = _UUID.sub(ran_for[0], command)
            body += f"$ {command}\n{got.rstrip()}\n"
        return f"```{m[1]}{m[2]}\n{body}```"

    path.write_text(_FENCE.sub(block, text))


@pytest.mark.parametrize("path", [p for p in RUNBOOKS if commands(p)], ids=lambda p: p.stem)
async def test_every_runbook_command_runs_and_prints_what_its_sample_shows(
    live: Live, path: Path
) -> None:
    env = {
        **os.environ,
        "SAFIRI_TRACE_STORE_URL": live.store_url,
        "NO_COLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    regenerating = os.environ.get("SAFIRI_REGENERATE_RUNBOOKS") == "1"
    outputs: dict[str, str] = {}
    for command in commands(path):
        problem: list[str] = []

        async def probe(command: Command = command, problem: list[str] = problem) -> bool:
            code, out = await run(live.as_run(command.command), env)
            outputs[command.command] = live.as_documented(out)
            found = (
                f"exit status {code}" if code else mismatch(command.sample, out, command.command)
            )
            problem[:] = [found] if found else []
            return found is None

        try:
            # Spans and log lines reach the trace store in batches: a command may need a
            # moment to show the whole purchase.
            await eventually(probe, timeout=15, interval=0.5, what=command.command)
        except pytest.fail.Exception:
            if not regenerating:
                pytest.fail(
                    f"{command.block.where}: `{command.command}` no longer prints what the"
                    f" runbook shows: {problem[0]}\n--- it printed:\n{outputs[command.command]}"
                )
    if regenerating:
        regenerate(path, outputs)
