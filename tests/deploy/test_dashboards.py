"""Grafana dashboards and datasources, checked without Grafana.

Every panel queries a provisioned datasource: Prometheus, or for the live bus map ticketing's
PostgreSQL (its SQL is run on a real database fed by real fixes in
tests/integration/test_fleet_positions.py). Every PromQL expression is parsed by a real
Prometheus (the Debian binary, empty TSDB: 2.42 has no parse-only API), and every metric a
dashboard names is one the services export or the rules record. Whether the panels show real
data is for the test that runs the suite under a real Prometheus.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from safiri.metrics_reference import render as metrics_reference
from safiri_chaos.prometheus import running_prometheus
from safiri_telemetry import Telemetry

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))

# Grafana's built-in variables, as the real-data test substitutes them too.
BUILTINS = {"__rate_interval": "1m", "__range": "1h", "__interval": "1m"}
# Dashboard variables (job, provider) are substituted by the regex every "All" could be.
VARIABLE_VALUE = ".*"
EXPECTED = {"Safiri / Control Tower", "Safiri / Engine Room", "Safiri / Payments"}

POSTGRES_TYPE = "grafana-postgresql-datasource"
# What each datasource's panels carry their query in.
QUERY_FIELD = {"prometheus": "expr", POSTGRES_TYPE: "rawSql"}

# Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


DASHBOARDS = {path.stem: _load(path) for path in DASHBOARD_FILES}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included; rows themselves left out."""
    out = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return out


def _variables(dashboard: dict[str, Any]) -> list[str]:
    return [v["name"] for v in dashboard.get("templating", {}).get("list", [])]


def evaluable(expr: str, variables: list[str]) -> str:
    """``expr`` as Grafana would send it, with every variable substituted."""
    for name, value in BUILTINS.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", VARIABLE_VALUE).replace(f"${name}", VARIABLE_VALUE)
    return expr


def _label_values_query(query: str) -> str:
    """``label_values(selector, label)`` (Grafana's, not PromQL) as an equivalent PromQL."""
    match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
    assert match, f"unsupported variable query {query!r}"
    return f"count by ({match[2]}) ({match[1]})"


def _is_sql(target: dict[str, Any]) -> bool:
    return target.get("datasource", {}).get("type") == POSTGRES_TYPE


def _queries() -> list[tuple[str, str, list[str]]]:
    """(id, expression, variables) for every PromQL target, annotation and variable query."""
    out = []
    for name, dashboard in DASHBOARDS.items():
        variables = _variables(dashboard)
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                if _is_sql(target):
                    continue
                ident = f"{name}/{panel['title']}/{target.get('refId', '?')}"
                out.append((ident, target.get("expr", ""), variables))
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if "expr" in annotation:
                out.append((f"{name}/annotation/{annotation['name']}", annotation["expr"], []))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                out.append((f"{name}/variable/{variable['name']}", _label_values_query(text), []))
    return out


QUERIES = _queries()


def _sql_queries() -> list[tuple[str, str]]:
    """(id, SQL) for every target on the PostgreSQL datasource."""
    return [
        (f"{name}/{panel['title']}/{target.get('refId', '?')}", target.get("rawSql", ""))
        for name, dashboard in DASHBOARDS.items()
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
        if _is_sql(target)
    ]


SQL_QUERIES = _sql_queries()


def _datasources() -> dict[str, dict[str, Any]]:
    provisioned = yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]
    return {ds["uid"]: ds for ds in provisioned}


# ---------------------------------------------------------------------------- structure


def test_the_three_dashboards_exist_with_unique_uids_and_titles() -> None:
    uids = [d["uid"] for d in DASHBOARDS.values()]
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles
    assert set(titles) >= EXPECTED
    for dashboard in DASHBOARDS.values():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"]), dashboard["uid"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_queries_a_provisioned_datasource(name: str) -> None:
    datasources = _datasources()
    panels = _panels(DASHBOARDS[name])
    assert panels
    for panel in panels:
        where = f"{name}: panel {panel.get('title')!r}"
        refs = [panel.get("datasource"), *(t.get("datasource") for t in panel["targets"])]
        for ref in refs:
            assert isinstance(ref, dict), f"{where}: datasource must be given by uid"
            assert ref["uid"] in datasources, f"{where}: datasource {ref['uid']!r} not provisioned"
            assert ref.get("type") == datasources[ref["uid"]]["type"] in QUERY_FIELD, where
        assert len({ref["uid"] for ref in refs}) == 1, f"{where}: one datasource per panel"
        assert panel["targets"], f"{where}: no query"
        for target in panel["targets"]:
            field = QUERY_FIELD[target["datasource"]["type"]]
            assert target.get(field, "").strip(), f"{where}: target {target.get('refId')} empty"


def test_the_control_tower_maps_the_buses_from_postgresql_and_counts_active_users() -> None:
    panels = {p["title"]: p for p in _panels(DASHBOARDS["control-tower"])}
    geomaps = [p for p in panels.values() if p["type"] == "geomap"]
    assert len(geomaps) == 1
    (target,) = geomaps[0]["targets"]
    assert target["datasource"]["type"] == POSTGRES_TYPE and target["format"] == "table"
    (layer,) = geomaps[0]["options"]["layers"]
    assert layer["location"] == {"mode": "coords", "latitude": "latitude", "longitude": "longitude"}
    # Only the view the map's reader may select from (deploy/postgres/create-map-reader.sh).
    assert re.search(r"\bFROM buses_reporting\b", target["rawSql"]), target["rawSql"]
    assert not re.search(r"\$\w|\$\{", target["rawSql"]), "no Grafana macro: the test runs it"
    exprs = [t["expr"] for p in panels.values() for t in p["targets"] if not _is_sql(t)]
    assert "max(active_users)" in exprs


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_have_unique_ids_and_fit_the_grid_without_overlapping(name: str) -> None:
    top = DASHBOARDS[name]["panels"]
    ids = [p["id"] for p in top] + [p["id"] for p in _panels(DASHBOARDS[name]) if p not in top]
    assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
    cells: dict[tuple[int, int], str] = {}
    for panel in top:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_exemplars_are_on_for_the_latency_panels_that_link_to_traces() -> None:
    for name, needle in (
        ("engine-room", "http_server_request_duration_seconds_bucket"),
        ("payments", "payment_provider_request_duration_seconds_bucket"),
        ("payments", "http_server_request_duration_seconds_bucket"),
    ):
        targets = [
            t for p in _panels(DASHBOARDS[name]) for t in p["targets"] if needle in t["expr"]
        ]
        assert targets, f"{name}: no panel on {needle}"
        assert any(t.get("exemplar") for t in targets), f"{name}: exemplars off for {needle}"


# ---------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(("ident", "expr", "variables"), QUERIES, ids=[q[0] for q in QUERIES])
def test_every_expression_substitutes_every_variable(
    ident: str, expr: str, variables: list[str]
) -> None:
    # ``$1`` is label_replace's first group (Grafana leaves a number that names no variable).
    left = re.sub(r"\$\d", "", evaluable(expr, variables))
    assert "$" not in left, f"{ident}: unknown variable in {expr!r}"


@pytest_asyncio.fixture(scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    # Nothing to scrape: the shipped rules loaded, and an empty TSDB to query.
    workdir = tmp_path_factory.mktemp("prometheus")
    async with running_prometheus({}, RULE_FILES, workdir, "15s") as url:
        yield url


@pytest.mark.parametrize(("ident", "expr", "variables"), QUERIES, ids=[q[0] for q in QUERIES])
async def test_every_expression_is_accepted_by_a_real_prometheus(
    prometheus: str, ident: str, expr: str, variables: list[str]
) -> None:
    now = time.time()
    params = {
        "query": evaluable(expr, variables),
        "start": f"{now - 600:.3f}",
        "end": f"{now:.3f}",
        "step": "60",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{prometheus}/api/v1/query_range", params=params) as response,
    ):
        body = await response.json()
    assert response.status == 200, f"{ident}: {body.get('error')}\n{params['query']}"
    assert body["status"] == "success", body


# Identifiers in a PromQL expression that are not metric names.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (a lexer's view: enough for our own expressions)."""
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    names = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()
        if before.isdigit() or before == "." or after.startswith("("):
            continue  # an exponent (1e3) or a function / aggregation
        if match[0].lower() not in _KEYWORDS:
            names.add(match[0])
    return names


def test_metric_names_are_read_from_expressions() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job=~"x|y"}[5m])))'
        ' / on (job) group_left b_total or vector(0) * 1e3 + c:rule:rate5m{x="sum(d)"}'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:rule:rate5m"}


def _exported() -> set[str]:
    """Every series name the services expose: the metrics reference plus what Telemetry adds."""
    names: set[str] = set()
    for name, kind in re.findall(r"^\| `([^`]+)` \| (\w+) \|", metrics_reference(), re.M):
        names |= _series(name, kind)
    telemetry = Telemetry.setup(
        "dashboards-test",
        env={"OTEL_SDK_DISABLED": "true"},
        log_stream=io.StringIO(),
        install_global=False,
    )
    registry: CollectorRegistry = telemetry.registry
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        names |= _series(name, family.type)
    return names


def _series(name: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    if kind == "summary":
        return {name, f"{name}_count", f"{name}_sum"}
    return {name}


def _recorded() -> set[str]:
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def _kept_from_cadvisor(name: str) -> bool:
    """A container series the compose Prometheus keeps from cAdvisor (its job's keep rule)."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "cadvisor"]
    keep = [r["regex"] for r in job["metric_relabel_configs"] if r.get("action") == "keep"]
    return any(re.fullmatch(regex, name) for regex in keep)


def test_every_metric_a_dashboard_queries_is_exported_or_recorded() -> None:
    known = _exported() | _recorded() | PROMETHEUS_SERIES
    unknown = {
        f"{ident}: {name}"
        for ident, expr, variables in QUERIES
        for name in metric_names(evaluable(expr, variables))
        if name not in known and not _kept_from_cadvisor(name)
    }
    assert not unknown, "\n".join(sorted(unknown))


# ---------------------------------------------------------------------------- datasources


def test_datasources_link_metrics_to_traces_to_logs_and_back() -> None:
    ds = _datasources()
    assert {uid: d["type"] for uid, d in ds.items()} == {
        "prometheus": "prometheus",
        "tempo": "tempo",
        "loki": "loki",
        "ticketing-postgres": POSTGRES_TYPE,
    }
    exemplars = ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "tempo"} in exemplars

    tempo = ds["tempo"]["jsonData"]
    to_logs = tempo["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki"
    assert to_logs["filterByTraceID"] is True
    if to_logs.get("customQuery"):
        assert "${__span.traceId}" in _unescaped(to_logs["query"])
    assert tempo["serviceMap"]["datasourceUid"] == "prometheus"

    fields = ds["loki"]["jsonData"]["derivedFields"]
    assert fields
    for field in fields:
        assert field["datasourceUid"] == "tempo"
        assert _unescaped(field["url"]) == "${__value.raw}"


def test_the_map_reads_ticketings_database_as_its_read_only_role_from_the_environment() -> None:
    postgres = _datasources()["ticketing-postgres"]
    assert postgres["jsonData"]["database"] == "safiri_ticketing"
    assert postgres["user"] == "safiri_map_reader"
    assert postgres["secureJsonData"]["password"] == "$SAFIRI_MAP_READER_PASSWORD"
    assert "password" not in postgres.get("jsonData", {})


def _unescaped(value: str) -> str:
    """A provisioning value as Grafana reads it: ``$$`` is a literal ``$``."""
    assert re.search(r"(?<!\$)\$(?!\$)\{", value) is None, f"{value!r}: escape $ as $$"
    return value.replace("$$", "$")


def test_the_loki_link_finds_the_trace_id_in_a_real_log_line() -> None:
    logs = io.StringIO()
    Telemetry.setup(
        "payment", env={"OTEL_SDK_DISABLED": "true"}, log_stream=logs, install_global=False
    )
    from loguru import logger

    tracer = TracerProvider().get_tracer("dashboards-test")
    with tracer.start_as_current_span("handle_callback") as span:
        logger.bind(order_id="o-1").warning("payment failed")
        trace_id = format(span.get_span_context().trace_id, "032x")
    line = next(ln for ln in logs.getvalue().splitlines() if "payment failed" in ln)
    assert json.loads(line)["trace_id"] == trace_id

    regexes = [
        f["matcherRegex"]
        for f in _datasources()["loki"]["jsonData"]["derivedFields"]
        if f.get("matcherType", "regex") == "regex"
    ]
    assert regexes, "no derived field reads the trace id from the log line"
    for regex in regexes:
        found = re.search(regex, line)
        assert found, f"{regex!r} does not match {line}"
        assert found[1] == trace_id
