"""deploy/k8s without a cluster: every overlay renders with kustomize, every object is valid
against its schema (Kubernetes' own kinds by kubernetes-validate, the operators' kinds by their
CRDs in tests/fixtures/crds), and the overlays hold together: every Service selects pods,
every probe path exists in the app, every setting a service requires is set, every image tag
is pinned, and the PrometheusRule holds exactly the rules the promtool tests cover."""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRDS = ROOT / "tests" / "fixtures" / "crds"
OVERLAYS = ("local", "production")
KUBERNETES = "1.32"  # the oldest Kubernetes the overlays are written for
SERVICES = {"gateway": 8080, "ticketing": 8081, "payment": 8082, "mpesa-simulator": 8090}


@functools.cache
def rendered(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize`` (kustomize v5, built into kubectl) of one overlay."""
    kubectl = shutil.which("kubectl")
    assert kubectl, (
        "kubectl (with its built-in kustomize v5) is needed to render deploy/k8s: no package"
        " registry these machines reach carries kustomize >= 3 (Debian's kubernetes-client"
        " 1.20 embeds kustomize 2.0.3, too old); the machine image's kubectl package does"
    )
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → the openAPIV3Schema of that served version, from each CRD."""
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate_custom(obj: dict[str, Any], schema: dict[str, Any]) -> None:
    """A custom object against its CRD's structural schema (OpenAPI v3, close to JSON Schema
    draft 7). The schema itself is not checked: some CRDs carry Go regular expressions
    (``^(?i)...``) that Python's ``re`` refuses, in fields Safiri does not set."""
    jsonschema.Draft7Validator(schema).validate(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_and_every_object_is_valid_against_its_schema(overlay: str) -> None:
    objects = rendered(overlay)
    assert objects
    custom = crd_schemas()
    for obj in objects:
        where = f"{overlay}: {obj['kind']} {obj['metadata']['name']}"
        key = (obj["apiVersion"], obj["kind"])
        if key in custom:
            validate_custom(obj, custom[key])
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_a_broken_object_fails_validation() -> None:
    """The validation above is not a formality: a typo in a field, or a wrong type, fails."""
    deployment = of_kind(rendered("local"), "Deployment")[0]
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES, strict=True)
    [scaled] = of_kind(rendered("production"), "ScaledObject")[:1]
    wrong = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "three"}}
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(wrong, crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_selects_the_pods_of_a_deployment(overlay: str) -> None:
    objects = rendered(overlay)
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in of_kind(objects, "Deployment")]
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned(overlay: str) -> None:
    for deployment in of_kind(rendered(overlay), "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            image = container["image"]
            assert re.search(r":[\w.-]+$", image.rsplit("/", 1)[-1]), image
            assert not image.endswith(":latest"), image
    for cluster in of_kind(rendered("production"), "RabbitmqCluster"):
        assert not cluster["spec"]["image"].endswith(":latest")


def test_the_production_overlay_runs_three_replicas_and_no_simulator() -> None:
    objects = rendered("production")
    replicas = {
        d["metadata"]["name"]: d["spec"]["replicas"] for d in of_kind(objects, "Deployment")
    }
    assert {k: v for k, v in replicas.items() if k in SERVICES} == {
        "gateway": 3,
        "ticketing": 3,
        "payment": 3,
    }
    [hpa] = of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    queues = {
        s["spec"]["scaleTargetRef"]["name"]: s["spec"]["triggers"][0]["metadata"]["queueName"]
        for s in of_kind(objects, "ScaledObject")
    }
    assert queues == {"payment": "payment.requests", "ticketing": "ticketing.payment-results"}
    [rabbit] = of_kind(objects, "RabbitmqCluster")
    assert rabbit["spec"]["replicas"] == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_paths_the_apps_serve_and_the_grace_period_covers_the_shutdown(
    overlay: str,
) -> None:
    served = {"/healthz", "/readyz", "/metrics"}  # safiri_web.add_operations_routes, every app
    runner = (ROOT / "libs/web/src/safiri_web/runner.py").read_text()
    shutdown = float(re.search(r"shutdown_timeout=(\d+)", runner).group(1))  # type: ignore[union-attr]
    for deployment in of_kind(rendered(overlay), "Deployment"):
        if deployment["metadata"]["name"] not in SERVICES:
            continue
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > shutdown
        [container] = pod["containers"]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["path"] in served
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _mounted_files_here(
    env: dict[str, str],
    deployment: dict[str, Any],
    configmaps: dict[str, dict[str, Any]],
    here: Path,
) -> dict[str, str]:
    """``env`` with each path into a mounted ConfigMap replaced by a local copy of that key."""
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = dict(env)
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        data = configmaps[source["name"]]["data"]
        for name, value in env.items():
            directory, _, key = value.rpartition("/")
            if directory == mount["mountPath"].rstrip("/"):
                assert key in data, f"{name}={value}: no key {key} in {source['name']}"
                here.mkdir(parents=True, exist_ok=True)
                (here / key).write_text(data[key])
                out[name] = str(here / key)
    return out


def _settings_class(role: str) -> Any:
    module = {
        "gateway": "safiri_gateway.settings",
        "ticketing": "safiri_ticketing.settings",
        "payment": "safiri_payment.settings",
        "mpesa-simulator": "safiri_mpesa_sim.settings",
    }[role]
    assert importlib.util.find_spec(module)
    return importlib.import_module(module).Settings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_a_service_requires_is_set(overlay: str, tmp_path: Path) -> None:
    """Each container's environment (its ConfigMap, its env, the Secret's keys it names, with
    stand-in values) passes the service's own start-up validation; a file it names in a
    mounted ConfigMap (the flag file) is that ConfigMap's content, written here."""
    objects = rendered(overlay)
    configmaps = {c["metadata"]["name"]: c for c in of_kind(objects, "ConfigMap")}
    config = configmaps["safiri-config"]
    stand_in = {
        "SAFIRI_API_KEYS": "k",
        "SAFIRI_GATEWAY_DATABASE_URL": "postgresql://u:p@postgres-rw:5432/safiri_gateway",
        "SAFIRI_TICKETING_DATABASE_URL": "postgresql://u:p@postgres-rw:5432/safiri_ticketing",
        "SAFIRI_PAYMENT_DATABASE_URL": "postgresql://u:p@postgres-rw:5432/safiri_payment",
        "SAFIRI_AMQP_URL": "amqp://u:p@rabbitmq:5672/",
    }
    for deployment in of_kind(objects, "Deployment"):
        role = deployment["metadata"]["name"]
        if role not in SERVICES:
            continue
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = dict(config["data"])
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "secretKeyRef" in item.get("valueFrom", {}):
                env[item["name"]] = stand_in.get(item["name"], "secret")
        env = _mounted_files_here(env, deployment, configmaps, tmp_path / role)
        _settings_class(role).from_env(env)  # raises, naming the variable, if one is missing
        assert (
            int(
                env[
                    f"SAFIRI_{role.upper().replace('-', '_')}_PORT".replace(
                        "MPESA_SIMULATOR", "MPESA_SIM"
                    )
                ]
            )
            == SERVICES[role]
        )


def test_the_public_entry_routes_only_the_api_and_the_provider_callbacks() -> None:
    for overlay in OVERLAYS:
        [ingress] = of_kind(rendered(overlay), "Ingress")
        paths = {
            p["path"]: p["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for p in rule["http"]["paths"]
        }
        assert paths == {"/api/v1": "gateway", "/callbacks/mpesa": "payment"}


def test_the_prometheus_rule_holds_exactly_the_rules_the_promtool_tests_cover() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from k8s_prometheusrule import prometheus_rule, render
    finally:
        sys.path.pop(0)
    committed = (K8S / "overlays" / "production" / "prometheusrule.yaml").read_text()
    assert committed == render(), "stale: run `make k8s-rules`"
    [rule] = of_kind(rendered("production"), "PrometheusRule")
    shipped = prometheus_rule()["spec"]["groups"]  # type: ignore[index]
    assert rule["spec"]["groups"] == shipped
    names = {r.get("alert") or r.get("record") for g in shipped for r in g["rules"]}
    tested = "".join(p.read_text() for p in (ROOT / "deploy/prometheus/tests").glob("*.yml"))
    untested = {n for n in names if n and n.startswith("Safiri") and n not in tested}
    assert not untested, f"alerts without a promtool test: {untested}"
