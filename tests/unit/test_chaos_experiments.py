"""The experiment files in chaos/: valid Chaos Toolkit experiments with every part the
game day needs, and a short form that fits the test suite."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from chaoslib.configuration import load_configuration
from chaoslib.secret import load_secrets

from safiri_chaos.experiment import InvalidExperiment, load_experiment, safiri_extension

pytestmark = pytest.mark.unit

CHAOS = Path(__file__).resolve().parents[2] / "chaos"
# name: (the alert that must fire or None, the fault (provider function and what it injects),
# what the metric probe's query must name)
EXPECTED: dict[str, tuple[str | None, tuple[str, Any], str]] = {
    "provider-outage.json": (
        "SafiriPaymentProviderFailing",
        ("inject_fault", {"outage": "http_503"}),
        "unavailable",
    ),
    "provider-latency.json": (
        "SafiriPaymentProviderFailing",
        ("inject_fault", {"latency_seconds": "${latency_seconds}"}),
        "unknown",
    ),
    # M-Pesa down, the route switched to the backup by its flag: backup payments must succeed.
    "provider-switch.json": (
        "SafiriPaymentProviderFailing",
        ("inject_fault", {"outage": "http_503"}),
        'payments_total{provider="backup",result_code="0"}',
    ),
    "lost-callbacks.json": (
        "SafiriPurchaseSLOBurnFast",
        ("inject_fault", {"callbacks": "never"}),
        "EXPIRED",
    ),
    "duplicate-callbacks.json": (
        None,
        ("inject_fault", {"callbacks": "duplicate"}),
        'payment_callbacks_total{outcome="duplicate"}',
    ),
    "rabbitmq-restart.json": (
        "SafiriBrokerUnreachable",
        ("stop_broker", None),
        "safiri_outbox_backlog_messages",
    ),
    "postgres-restart.json": (
        "SafiriHighErrorRatio",
        ("stop_database", None),
        'http_response_status_code=~"5.."',
    ),
    **{
        f"kill-{service}.json": (
            "SafiriTargetDown",
            ("crash_loop", service),
            f'process_start_time_seconds{{job="safiri-{service}"}}',
        )
        for service in ("gateway", "ticketing", "payment")
    },
    "cluster/kill-one-replica.json": (
        "SafiriTargetDown",
        ("crash_loop", "gateway"),
        'process_start_time_seconds{job="safiri-payment"}',
    ),
    "cluster/rabbitmq-node-down.json": (
        "SafiriRabbitMQNodeDown",
        ("stop_rabbitmq_node", None),
        'up{job="rabbitmq"}',
    ),
    "cluster/rolling-restart.json": (
        None,
        ("rolling_restart", None),
        'process_start_time_seconds{job="safiri-gateway"}',
    ),
}
# The cluster experiments' own suites: replicas of each service, RabbitMQ nodes; the
# provider switch's runs the backup route's simulator.
CLUSTER: dict[str, dict[str, Any]] = {
    "provider-switch.json": {"backup_provider": True},
    "cluster/kill-one-replica.json": {"replicas": 2, "rabbitmq_nodes": 1},
    "cluster/rabbitmq-node-down.json": {"replicas": 2, "rabbitmq_nodes": 3},
    "cluster/rolling-restart.json": {"replicas": 2, "rabbitmq_nodes": 1},
}
# The action that takes the fault away again, and the rollback that always does.
HEALS = {
    "inject_fault": ("heal_faults", "heal_faults"),
    "stop_broker": ("start_broker", "start_broker"),
    "stop_database": ("start_database", "start_database"),
    "crash_loop": ("end_crash_loop", "end_crash_loop"),
    "stop_rabbitmq_node": ("start_rabbitmq_node", "start_rabbitmq_node"),
    # A rolling restart ends by itself (each replica back before the next goes).
    "rolling_restart": ("rolling_restart", "stop_load"),
}


def all_activities(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    return [*hypothesis.get("probes", []), *experiment["method"], *experiment.get("rollbacks", [])]


def by_func(experiment: dict[str, Any], func: str) -> list[dict[str, Any]]:
    return [a for a in all_activities(experiment) if a["provider"].get("func") == func]


def test_every_experiment_in_chaos_is_one_of_the_known_ones() -> None:
    found = [*CHAOS.glob("*.json"), *CHAOS.glob("cluster/*.json")]
    assert sorted(str(p.relative_to(CHAOS)) for p in found) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_experiment_has_hypothesis_fault_symptoms_rollback_and_invariants(name: str) -> None:
    experiment = load_experiment(CHAOS / name)
    alert, (fault, injected), moved = EXPECTED[name]
    probes = {p["name"]: p for p in experiment["steady-state-hypothesis"]["probes"]}
    assert probes["purchases-succeed"]["tolerance"] is True
    assert probes["invariants-hold"]["tolerance"] == 0
    expects = safiri_extension(experiment)["expects"]
    assert expects.get("alert") == alert
    assert experiment["runtime"] == {"rollbacks": {"strategy": "always"}}
    assert {"name": "safiri", "provider": {"type": "python", "module": "safiri_chaos.control"}} in (
        experiment["controls"]
    )
    assert safiri_extension(experiment)["id"] == Path(name).stem
    [load] = by_func(experiment, "buy_tickets")
    assert load["background"] is True
    assert safiri_extension(experiment).get("suite", {"replicas": 1}) == CLUSTER.get(
        name, {"replicas": 1}
    )
    [inject, *others] = [a for a in experiment["method"] if a["provider"]["func"] == fault]
    if fault == "crash_loop" and others:  # one replica of each service at once
        killed = [a["provider"]["arguments"] for a in [inject, *others]]
        assert [(k["service"], k["replica"]) for k in killed] == [
            ("gateway", 0),
            ("ticketing", 0),
            ("payment", 0),
        ]
    arguments = inject["provider"]["arguments"]
    if fault == "inject_fault":
        assert arguments["faults"] == injected
    elif fault == "crash_loop":
        assert arguments["service"] == injected
        assert inject["background"] is True  # it kills until the heal, beside the symptoms
    assert arguments["delay_seconds"] == "${warmup_seconds}"
    method = [a["provider"]["func"] for a in experiment["method"]]
    heal, rollback = HEALS[fault]
    if alert is None:
        assert not by_func(experiment, "alert_fires")
        assert not [p for p in probes if p.endswith("-not-firing")]
    else:
        assert probes[f"{alert}-not-firing"]["tolerance"] == "inactive"
        [fires] = by_func(experiment, "alert_fires")
        assert fires["provider"]["arguments"]["alert"] == alert
        assert method.index(fault) < method.index("alert_fires") < method.index(heal)
        assert method.index(heal) < method.index("alert_resolves") < method.index("stop_load")
    metrics = [
        m["provider"]["arguments"]["query"]
        for func in ("metric_rose", "time_after_fault")
        for m in by_func(experiment, func)
    ]
    assert any(moved in query for query in metrics) and moved in expects["metric"]
    assert method.index(fault) < method.index("hold_fault")
    assert method.index(fault) <= method.index(heal) and "hold_fault" in method
    assert method[-1] == "orders_final"
    assert experiment["rollbacks"][0]["provider"]["func"] == rollback


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_python_provider_exists_and_takes_its_arguments(name: str) -> None:
    """What ``chaos validate`` checks: the function is there and the arguments bind."""
    for activity in all_activities(load_experiment(CHAOS / name)):
        provider = activity["provider"]
        func = getattr(importlib.import_module(provider["module"]), provider["func"])
        arguments = dict(provider.get("arguments", {}))
        signature = inspect.signature(func)
        for injected in ("configuration", "secrets"):
            if injected in signature.parameters:
                arguments[injected] = None
        signature.bind(**arguments)


def resolved(experiment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The configuration as ``chaos run`` resolves it on a machine with no variables set."""
    for spec in experiment["configuration"].values():
        if isinstance(spec, dict) and spec.get("type") == "env":
            monkeypatch.delenv(spec["key"], raising=False)
    return dict(load_configuration(experiment["configuration"]))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_short_form_fits_the_test_suite_and_the_full_form_is_the_game_day(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = load_experiment(CHAOS / name)
    full = resolved(experiment, monkeypatch)
    short = {**full, **safiri_extension(experiment)["short_form"]}
    assert (full["rate"], full["fault_seconds"], full["rules"]) == (20, 60, "real")
    assert short["rules"] == "fast"
    assert short["warmup_seconds"] + short["fault_seconds"] <= 10
    assert short["alert_timeout_seconds"] <= 30
    if "latency_seconds" in full:
        assert float(full["latency_seconds"]) > float(full["provider_timeout_seconds"])
        assert float(short["latency_seconds"]) > float(short["provider_timeout_seconds"])
        assert float(short["latency_seconds"]) < float(short["hold_ttl_seconds"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_chaos_run_finds_every_value_with_no_variable_set(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chaoslib refuses an env secret whose variable is unset (it ignores ``default``): the
    secrets are plain values the control fills, and every configuration entry has a default
    that points at `make up` (its Prometheus on 9090, its trace store on 4318)."""
    experiment = load_experiment(CHAOS / name)
    configuration = resolved(experiment, monkeypatch)
    assert load_secrets(experiment["secrets"], configuration) == {
        "safiri": {"api_key": "", "simulator_admin_key": ""}
    }
    assert configuration["gateway_url"] == "http://127.0.0.1:8080"
    assert configuration["prometheus_url"] == "http://127.0.0.1:9090"
    assert configuration["otlp_endpoint"] == "http://127.0.0.1:4318"


def test_an_experiment_without_a_method_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"title": "t", "description": "d"}')
    with pytest.raises(InvalidExperiment, match="method"):
        load_experiment(path)


def test_the_provider_switch_switches_the_route_by_its_flag_and_back() -> None:
    """The incident's remedy is the flag: switched after the alert fires, purchases checked
    through the backup, switched back after the heal and checked through M-Pesa; the
    rollback always sets it back."""
    experiment = load_experiment(CHAOS / "provider-switch.json")
    method = [
        (a["provider"]["func"], a["provider"].get("arguments", {})) for a in experiment["method"]
    ]
    funcs = [func for func, _ in method]
    switches = [
        (i, args["variant"])
        for i, (func, args) in enumerate(method)
        if func == "set_flag" and args["flag"] == "payment-provider"
    ]
    assert [variant for _, variant in switches] == ["backup", "mpesa"]
    [to_backup, to_mpesa] = [i for i, _ in switches]
    # Back only once M-Pesa has been healthy for the breaker's reset time.
    assert method[to_mpesa][1]["delay_seconds"] == "${breaker_reset_seconds}"
    throughs = [args["provider"] for func, args in method if func == "purchases_go_through"]
    assert throughs == ["backup", "mpesa"]
    [fires] = by_func(experiment, "alert_fires")
    assert fires["provider"]["arguments"]["labels"] == {"provider": "mpesa"}
    assert funcs.index("alert_fires") < to_backup < funcs.index("purchases_go_through")
    assert (
        to_backup
        < funcs.index("heal_faults")
        < to_mpesa
        < len(funcs) - 1 - funcs[::-1].index("purchases_go_through")
    )
    rollbacks = [
        (a["provider"]["func"], a["provider"].get("arguments")) for a in experiment["rollbacks"]
    ]
    assert ("set_flag", {"flag": "payment-provider", "variant": "mpesa"}) in rollbacks
    flags = json.loads((CHAOS.parent / "deploy" / "flags" / "flags.json").read_text())
    assert set(flags["flags"]["payment-provider"]["variants"]) == {"mpesa", "backup"}
