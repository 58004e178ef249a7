"""deploy/k8s without a cluster: every overlay renders with kustomize, every object is valid
against its schema (Kubernetes' own kinds by kubernetes-validate, the operators' kinds by their
CRDs in tests/fixtures/crds), and the overlays hold together: every Service selects pods,
every probe path exists in the app, every setting a service requires is set, every image tag
is pinned, the network policies admit exactly the flows Safiri needs, and the PrometheusRule
holds exactly the rules the promtool tests cover."""

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
# Every workload of the base, with its port (docker-compose.yml's and the suite's).
SERVICES = {
    "gateway": 8080,
    "ticketing": 8081,
    "payment": 8082,
    "mpesa-simulator": 8090,
    "fleet-simulator": 8091,
    "backup-simulator": 8092,
}
# Stand-ins for the world outside Safiri (the payment providers, the buses' GPS units): the
# local overlay runs them, production none (deploy/k8s/README.md).
SIMULATORS = ("mpesa-simulator", "backup-simulator", "fleet-simulator")
SETTINGS = {
    "gateway": "safiri_gateway.settings",
    "ticketing": "safiri_ticketing.settings",
    "payment": "safiri_payment.settings",
    "mpesa-simulator": "safiri_mpesa_sim.settings",
    "backup-simulator": "safiri_mpesa_sim.settings",
    "fleet-simulator": "safiri_fleet_sim.settings",
}


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


def test_the_local_overlay_runs_every_workload_once_on_its_port() -> None:
    objects = rendered("local")
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    assert set(deployments) == set(SERVICES)
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    for name, port in SERVICES.items():
        assert deployments[name]["spec"]["replicas"] == 1, name
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert [p["containerPort"] for p in container["ports"]] == [port], name
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [port], name


def test_the_production_overlay_runs_three_replicas_and_no_simulator() -> None:
    objects = rendered("production")
    simulated = [
        f"{o['kind']} {o['metadata']['name']}"
        for o in objects
        if o["metadata"]["name"].startswith(SIMULATORS)
    ]
    assert not simulated, "production deploys no simulator"
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
    module = SETTINGS[role]
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
        "SAFIRI_BACKUP_SHORTCODE": "600100",
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
                key = item["valueFrom"]["secretKeyRef"]["key"]
                env[item["name"]] = stand_in.get(key, "secret")
        env = _mounted_files_here(env, deployment, configmaps, tmp_path / role)
        # from_env raises, naming the variable, if one is missing or wrong
        settings = _settings_class(role).from_env(env)
        assert settings.port == SERVICES[role], role
        if role == "payment":  # the second payment route is configured, not silently absent
            assert settings.backup is not None, "payment has no backup route"


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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_runs_locked_down_with_requests_limits_and_a_disruption_budget(
    overlay: str,
) -> None:
    objects = rendered(overlay)
    budgets = [
        b["spec"]["selector"]["matchLabels"] for b in of_kind(objects, "PodDisruptionBudget")
    ]
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        if name not in SERVICES:
            continue
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "safiri", name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        [container] = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, name
        assert container["env"][0]["name"] == "POD_NAME", name
        assert {"name": "OTEL_SERVICE_NAME", "value": name} in container["env"], name
        assert sum(b.items() <= labels.items() for b in budgets) == 1, name


# Pods an operator creates in production (no Deployment here), by the labels it gives them,
# and the ports they listen on. RabbitMQ is yours in `local`: if it runs in the namespace with
# the label app.kubernetes.io/name=rabbitmq, the same policies admit the services to it.
OPERATOR_PODS = {
    "rabbitmq": (
        {"app.kubernetes.io/name": "rabbitmq", "app.kubernetes.io/component": "rabbitmq"},
        {5672, 15672, 15692, 4369, 25672},
    ),
    # CloudNativePG's instances: PostgreSQL, the status port its operator polls, the exporter.
    "postgres": (
        {"cnpg.io/cluster": "postgres", "cnpg.io/podRole": "instance"},
        {5432, 8000, 9187},
    ),
    # The OpenTelemetry Operator's collector (OpenTelemetryCollector otel-collector).
    "otel-collector": (
        {
            "app.kubernetes.io/name": "otel-collector-collector",
            "app.kubernetes.io/component": "opentelemetry-collector",
        },
        {4317, 4318, 8888},
    ),
}


def _pods(objects: list[dict[str, Any]]) -> dict[str, tuple[dict[str, str], set[int]]]:
    """Every pod of the overlay (a Deployment's, or an operator's): its labels and ports."""
    pods = dict(OPERATOR_PODS)
    for d in of_kind(objects, "Deployment"):
        ports = {
            p["containerPort"]
            for c in d["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        pods[d["metadata"]["name"]] = (d["spec"]["template"]["metadata"]["labels"], ports)
    return pods


def admitted_flows(objects: list[dict[str, Any]]) -> set[tuple[str, str, int | str]]:
    """(from, to, port) every NetworkPolicy of the overlay admits: from a pod of the overlay
    or a namespace (``namespace:<name>``), to a pod, on a port it listens on ("*": every
    port). Every policy is an ingress policy; default-deny-ingress admits nothing."""
    pods = _pods(objects)

    def selected(selector: dict[str, Any]) -> list[str]:
        wanted = selector.get("matchLabels", {}).items()
        return [name for name, (labels, _) in pods.items() if wanted <= labels.items()]

    flows: set[tuple[str, str, int | str]] = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"], policy["metadata"]["name"]
        for target in selected(spec["podSelector"]):
            for rule in spec["ingress"]:
                sources: list[str] = []
                for peer in rule["from"]:
                    assert set(peer) in ({"podSelector"}, {"namespaceSelector"}), peer
                    if "podSelector" in peer:
                        sources += selected(peer["podSelector"])
                    else:
                        labels = peer["namespaceSelector"]["matchLabels"]
                        sources.append(f"namespace:{labels['kubernetes.io/metadata.name']}")
                listens = pods[target][1]
                ports: list[int | str] = (
                    [p["port"] for p in rule["ports"] if p["port"] in listens]
                    if "ports" in rule
                    else ["*"]
                )
                flows |= {(s, target, port) for s in sources for port in ports}
    return flows


def needed_flows(overlay: str) -> set[tuple[str, str, int | str]]:
    """What Safiri needs to talk, and nothing more."""
    needed: set[tuple[str, str, int | str]] = {
        ("namespace:ingress-nginx", "gateway", 8080),
        ("namespace:ingress-nginx", "payment", 8082),  # the real providers' callbacks
        ("gateway", "ticketing", 8081),
        ("ticketing", "rabbitmq", 5672),
        ("payment", "rabbitmq", 5672),
        # The simulated providers: payment calls them, they call payment back.
        ("payment", "mpesa-simulator", 8090),
        ("mpesa-simulator", "payment", 8082),
        ("payment", "backup-simulator", 8092),
        ("backup-simulator", "payment", 8082),
        # The simulated buses ask ticketing which trips are under way and publish positions.
        ("fleet-simulator", "ticketing", 8081),
        ("fleet-simulator", "rabbitmq", 5672),
    }
    needed |= {("namespace:monitoring", name, port) for name, port in SERVICES.items()}
    if overlay == "production":
        needed = {f for f in needed if not set(f[:2]) & set(SIMULATORS)}
        needed |= {
            ("gateway", "redis", 6379),
            # The cluster's own traffic, its operator's, KEDA's queue-length reads, and
            # Prometheus's scrape of every node (the PodMonitor rabbitmq).
            ("rabbitmq", "rabbitmq", "*"),
            ("namespace:rabbitmq-system", "rabbitmq", 15672),
            ("namespace:keda", "rabbitmq", 5672),
            ("namespace:monitoring", "rabbitmq", 15692),
            # Each service its own database; the instances replicate from each other, the
            # operator polls their status, Prometheus scrapes them (enablePodMonitor).
            ("gateway", "postgres", 5432),
            ("ticketing", "postgres", 5432),
            ("payment", "postgres", 5432),
            ("postgres", "postgres", 5432),
            ("namespace:cnpg-system", "postgres", 8000),
            ("namespace:monitoring", "postgres", 9187),
            # The services' traces and logs (OTLP over HTTP).
            ("gateway", "otel-collector", 4318),
            ("ticketing", "otel-collector", 4318),
            ("payment", "otel-collector", 4318),
        }
    return needed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policies_admit_exactly_the_flows_safiri_needs(overlay: str) -> None:
    admitted = admitted_flows(rendered(overlay))
    needed = needed_flows(overlay)
    assert not needed - admitted, f"denied but needed: {sorted(needed - admitted, key=str)}"
    assert not admitted - needed, f"admitted, not needed: {sorted(admitted - needed, key=str)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_url_inside_the_cluster_names_a_service_and_its_port(overlay: str) -> None:
    objects = rendered(overlay)
    [config] = [
        c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "safiri-config"
    ]
    services = {
        s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]}
        for s in of_kind(objects, "Service")
    }
    urls = {
        k: v for k, v in config["data"].items() if k.startswith("SAFIRI_") and k.endswith("_URL")
    }
    assert {"SAFIRI_MPESA_URL", "SAFIRI_BACKUP_PROVIDER_URL"} <= set(urls)
    for name, url in urls.items():
        found = re.fullmatch(r"(https?)://([^/:]+)(?::(\d+))?(/.*)?", url)
        assert found, f"{name}={url}"
        scheme, host, port = found.group(1), found.group(2), found.group(3)
        if "." in host:  # outside the cluster: production's real providers and public host
            assert overlay == "production" and scheme == "https", f"{name}={url}"
            continue
        assert host in services and int(port) in services[host], f"{name}={url}: no such Service"
    if overlay == "production":  # two providers, neither simulated
        assert urls["SAFIRI_BACKUP_PROVIDER_URL"] != urls["SAFIRI_MPESA_URL"]


def _secret_keys(container: dict[str, Any]) -> dict[str, str]:
    """A container's variables read from the Secret: variable → the Secret's key."""
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]["key"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def test_each_simulated_provider_holds_the_account_payment_calls_it_with() -> None:
    """The backup simulator is the M-Pesa simulator's image with an account of its own: its
    SAFIRI_MPESA_* come from the Secret's keys payment reads as SAFIRI_BACKUP_*, never from
    M-Pesa's account, and it keeps its own ledger."""
    objects = rendered("local")
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    containers = {n: d["spec"]["template"]["spec"]["containers"][0] for n, d in deployments.items()}
    [config] = [
        c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "safiri-config"
    ]
    payment = _secret_keys(containers["payment"])
    account = ("CONSUMER_KEY", "CONSUMER_SECRET", "PASSKEY")
    for simulator, prefix in (("mpesa-simulator", "MPESA"), ("backup-simulator", "BACKUP")):
        held = _secret_keys(containers[simulator])
        for part in account:
            assert held[f"SAFIRI_MPESA_{part}"] == payment[f"SAFIRI_{prefix}_{part}"], simulator
        assert containers[simulator]["image"] == containers["mpesa-simulator"]["image"]
    backup = _secret_keys(containers["backup-simulator"])
    assert backup["SAFIRI_MPESA_SHORTCODE"] == payment["SAFIRI_BACKUP_SHORTCODE"]
    assert not {backup[f"SAFIRI_MPESA_{p}"] for p in account} & {
        payment[f"SAFIRI_MPESA_{p}"] for p in account
    }
    ledgers = {  # each one's own variable, or else the ConfigMap's
        n: {i["name"]: i.get("value") for i in containers[n]["env"]}.get(
            "SAFIRI_MPESA_SIM_LEDGER_PATH", config["data"].get("SAFIRI_MPESA_SIM_LEDGER_PATH")
        )
        for n in ("mpesa-simulator", "backup-simulator")
    }
    assert ledgers["backup-simulator"], "the backup simulator names its own ledger"
    assert ledgers["backup-simulator"] != ledgers["mpesa-simulator"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_key_read_from_the_secret_is_documented(overlay: str) -> None:
    readme = (K8S / "README.md").read_text()
    keys = {
        key
        for d in of_kind(rendered(overlay), "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        for key in _secret_keys(c).values()
    }
    assert keys
    undocumented = {k for k in keys if f"`{k}`" not in readme}
    assert not undocumented, f"deploy/k8s/README.md lists no {undocumented}"
