"""docker-compose.yml and the configuration it mounts, checked without a Docker engine.

The compose file is validated by Debian's docker-compose (it needs no engine for `config`);
everything else is read with PyYAML and cross-referenced: pinned images, healthchecks,
start order, mounted files, the paths each program is told to read, Prometheus's scrape jobs,
the collector's pipelines. `promtool` checks prometheus.yml with the rules it loads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
COLLECTOR_CONFIG = DEPLOY / "otel-collector" / "config.yaml"

# The secrets compose must refuse to start without (no defaults anywhere).
SECRETS = {
    "SAFIRI_API_KEYS": "test-key-1,test-key-2",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test-password",
    "SAFIRI_POSTGRES_PASSWORD": "postgres-test-password",
    "SAFIRI_RABBITMQ_PASSWORD": "rabbitmq-test-password",
    "SAFIRI_PAGER_WEBHOOK_URL": "http://127.0.0.1:9/pager",
    "SAFIRI_CHAT_WEBHOOK_URL": "http://127.0.0.1:9/chat",
}
# Compose service -> (source tree, package, Prometheus job, port variable, port).
SAFIRI = {
    "gateway": ("services/gateway", "safiri-gateway", "safiri-gateway", "SAFIRI_GATEWAY", 8080),
    "ticketing": (
        "services/ticketing",
        "safiri-ticketing",
        "safiri-ticketing",
        "SAFIRI_TICKETING",
        8081,
    ),
    "payment": ("services/payment", "safiri-payment", "safiri-payment", "SAFIRI_PAYMENT", 8082),
    "mpesa-simulator": (
        "simulators/mpesa",
        "safiri-mpesa-sim",
        "safiri-mpesa-simulator",
        "SAFIRI_MPESA_SIM",
        8090,
    ),
}
BACKENDS = {
    "rabbitmq",
    "postgres",
    "otel-collector",
    "prometheus",
    "alertmanager",
    "tempo",
    "loki",
    "grafana",
}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


COMPOSE: dict[str, Any] = _yaml(COMPOSE_FILE)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def _dockerfile(service: str) -> Path | None:
    build = SERVICES[service].get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context, dockerfile = str(build["context"]), str(build.get("dockerfile", "Dockerfile"))
    return ROOT / context / dockerfile


def _bind_mounts(service: str) -> list[tuple[Path, PurePosixPath]]:
    mounts = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((ROOT / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: str, container_path: str) -> Path | None:
    """Where ``container_path`` inside ``service`` comes from on this checkout, if mounted."""
    wanted = PurePosixPath(container_path)
    best: tuple[Path, PurePosixPath] | None = None
    for source, target in _bind_mounts(service):
        if (wanted == target or target in wanted.parents) and (
            best is None or len(target.parts) > len(best[1].parts)
        ):
            best = (source, target)
    if best is None:
        return None
    return best[0].joinpath(*wanted.relative_to(best[1]).parts)


def _words(service: str) -> list[str]:
    words: list[str] = []
    for key in ("entrypoint", "command"):
        value = SERVICES[service].get(key) or []
        for item in [value] if isinstance(value, str) else value:
            words += str(item).split()
    return words


def _flag(service: str, name: str) -> str:
    values = [w.split("=", 1)[1] for w in _words(service) if w.startswith(f"{name}=")]
    assert len(values) == 1, f"{service}: expected one {name}= in its command"
    return values[0]


# ---------------------------------------------------------------------------- docker-compose


def _docker_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        pytest.fail(
            "docker-compose is not installed: apt-get install -y docker-compose"
            " (it validates the file without a Docker engine)"
        )
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_accepts_the_file() -> None:
    checked = _docker_compose("config", "-q", env=SECRETS)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(secret: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != secret}
    checked = _docker_compose("config", "-q", env=env)
    assert checked.returncode != 0
    assert secret in checked.stderr


def test_no_variable_has_a_default_in_the_compose_file() -> None:
    references = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", COMPOSE_FILE.read_text())
    assert references
    for name, rest in references:
        assert rest.startswith(":?"), f"${{{name}{rest}}} must be required (:?), not defaulted"
        assert name in SECRETS, f"{name} is required but not listed in SECRETS"


# ---------------------------------------------------------------------------- YAML


YAML_FILES = sorted(
    [COMPOSE_FILE, *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml.tmpl")]
)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_is_well_formed(path: Path) -> None:
    text = path.read_text()
    if path.is_relative_to(DEPLOY / "k8s"):  # manifests hold several documents
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        assert documents and all(isinstance(d, dict) for d in documents), path
        return
    assert isinstance(_yaml(path), dict), f"{path}: not a YAML mapping"


# ---------------------------------------------------------------------------- images


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


def _base_images(dockerfile: Path) -> list[str]:
    stages: set[str] = set()
    images = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            if match[1] not in stages:
                images.append(match[1])
            if match[2]:
                stages.add(match[2])
    return images


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_image_is_pinned_to_a_version(service: str) -> None:
    spec = SERVICES[service]
    image = spec.get("image", "")
    assert _pinned(image), f"{service}: image {image!r} is not pinned to a version tag"
    dockerfile = _dockerfile(service)
    if dockerfile is not None:
        assert dockerfile.is_file(), f"{service}: {dockerfile} missing"
        bases = _base_images(dockerfile)
        assert bases
        for base in bases:
            assert _pinned(base), f"{dockerfile.relative_to(ROOT)}: FROM {base} is not pinned"


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == set(SAFIRI) | BACKENDS


# ---------------------------------------------------------------------------- health, order


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_a_healthcheck(service: str) -> None:
    check = SERVICES[service].get("healthcheck")
    assert check, f"{service}: no healthcheck"
    assert not check.get("disable")
    test = check["test"]
    assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1
    dockerfile = _dockerfile(service)
    program = test[1]
    if dockerfile is not None and program.startswith("/"):
        # A program the upstream image lacks must be put there by our Dockerfile.
        assert program in dockerfile.read_text(), f"{service}: {program} not in {dockerfile}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_dependency_waits_until_the_other_is_healthy(service: str) -> None:
    depends = SERVICES[service].get("depends_on", {})
    assert isinstance(depends, dict), f"{service}: depends_on needs conditions"
    for other, spec in depends.items():
        assert other in SERVICES, f"{service} depends on unknown {other}"
        assert spec.get("condition") == "service_healthy", f"{service} -> {other}"
        assert SERVICES[other].get("healthcheck"), f"{other} has no healthcheck to wait for"


def test_start_order_has_no_cycle() -> None:
    started: list[str] = []
    pending = dict.fromkeys(SERVICES)
    while pending:
        ready = [s for s in pending if set(SERVICES[s].get("depends_on", {})) <= set(started)]
        assert ready, f"cycle among {sorted(pending)}"
        for service in ready:
            started.append(service)
            del pending[service]
    assert started.index("grafana") > started.index("prometheus")
    assert started.index("gateway") > started.index("ticketing")


# ---------------------------------------------------------------------------- files, paths


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_file_exists_and_every_volume_is_named(service: str) -> None:
    named = set(COMPOSE.get("volumes", {}))
    for volume in SERVICES[service].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith((".", "/")):
            assert (ROOT / source).exists(), f"{service}: {source} does not exist"
        else:
            assert source in named, f"{service}: volume {source} is not declared"


@pytest.mark.parametrize(
    ("service", "flag"),
    [
        ("prometheus", "--config.file"),
        ("otel-collector", "--config"),
        ("tempo", "-config.file"),
        ("loki", "-config.file"),
    ],
)
def test_each_program_reads_a_mounted_config(service: str, flag: str) -> None:
    path = host_path(service, _flag(service, flag))
    assert path is not None and path.is_file(), f"{service}: {flag} is not a mounted file"


def test_alertmanager_renders_its_mounted_template_at_start() -> None:
    words = _words("alertmanager")
    assert words[:3] == ["/bin/sh", "-c", "sh"], words
    script, template, rendered = words[3:6]
    assert host_path("alertmanager", script) == DEPLOY / "alertmanager" / "render.sh"
    assert host_path("alertmanager", template) == DEPLOY / "alertmanager" / "alertmanager.yml.tmpl"
    assert words[6:9] == ["&&", "exec", "/bin/alertmanager"], words
    assert f"--config.file={rendered}" in words
    env = _env("alertmanager")
    assert {"SAFIRI_PAGER_WEBHOOK_URL", "SAFIRI_CHAT_WEBHOOK_URL"} <= set(env)


def test_prometheus_finds_the_repository_rules_inside_its_container() -> None:
    config_in_container = PurePosixPath(_flag("prometheus", "--config.file"))
    assert host_path("prometheus", str(config_in_container)) == PROMETHEUS_CONFIG
    found: set[Path] = set()
    for pattern in _yaml(PROMETHEUS_CONFIG)["rule_files"]:
        in_container = config_in_container.parent / pattern
        host = host_path("prometheus", str(in_container.parent))
        assert host is not None, f"{in_container} is not mounted"
        matched = set(host.glob(in_container.name))
        assert matched, f"{pattern} matches nothing"
        found |= matched
    assert found == set((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    assert "--enable-feature=exemplar-storage" in _words("prometheus")


def test_promtool_accepts_the_prometheus_config_and_its_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    rules = len(list((DEPLOY / "prometheus" / "rules").glob("*.yml")))
    assert f"SUCCESS: {rules} rule files found" in output, output


def test_grafana_provisions_the_dashboards_and_datasources_it_mounts() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    providers = [
        p for path in (provisioning / "dashboards").glob("*.yml") for p in _yaml(path)["providers"]
    ]
    assert providers
    dashboards = {p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    for provider in providers:
        folder = host_path("grafana", provider["options"]["path"])
        assert folder is not None and folder.is_dir(), provider
        assert {p.name for p in folder.glob("*.json")} == dashboards
    home = host_path("grafana", _env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None and home.is_file()
    for datasource in _yaml(provisioning / "datasources" / "datasources.yml")["datasources"]:
        address = re.fullmatch(r"http://([\w-]+):\d+", datasource["url"])
        assert address and address[1] in SERVICES, datasource["url"]


# ---------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("service", sorted(SAFIRI))
def test_each_safiri_service_is_built_listens_in_its_container_and_exports_telemetry(
    service: str,
) -> None:
    tree, package, _, prefix, port = SAFIRI[service]
    env = _env(service)
    assert env[f"{prefix}_HOST"] == "0.0.0.0"
    assert env[f"{prefix}_PORT"] == str(port)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_SERVICE_NAME"]
    assert f"{port}/healthz" in " ".join(SERVICES[service]["healthcheck"]["test"])
    # Every SAFIRI_ variable set here is one the code reads (a typo would be silently ignored).
    code = "\n".join(p.read_text() for d in (tree, "libs") for p in (ROOT / d).rglob("*.py"))
    for name in env:
        if name.startswith("SAFIRI_"):
            assert f'"{name}"' in code, f"{service}: nothing reads {name}"
    for name, value in env.items():
        for host in re.findall(r"://(?:[^@/]*@)?([\w-]+):\d+", value):
            assert host in SERVICES, f"{service}: {name} points at unknown host {host}"
    dockerfile = _dockerfile(service)
    assert dockerfile == ROOT / tree / "Dockerfile"
    assert f'name = "{package}"' in (ROOT / tree / "pyproject.toml").read_text()


@pytest.mark.parametrize("service", sorted(SAFIRI))
def test_each_service_image_runs_as_a_user_from_the_locked_environment(service: str) -> None:
    tree, package, _, prefix, _ = SAFIRI[service]
    text = (ROOT / tree / "Dockerfile").read_text()
    assert "uv==0.13.8" in text
    assert re.search(rf"uv sync --frozen --no-dev\b.*--package {package}\b", text), package
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}, "the service must not run as root"
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib.*/healthz", text, re.M), "HEALTHCHECK /healthz"
    assert f"{prefix}_PORT" in text
    module = re.search(r'^CMD \["python", "-m", "(\w+)"\]', text, re.M)
    assert module, "CMD runs the service's module"
    assert (ROOT / tree / "src" / module[1] / "__main__.py").is_file()


def test_only_loopback_ports_are_published() -> None:
    for name, spec in SERVICES.items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is reachable from outside"


def test_prometheus_scrapes_each_service_under_the_job_name_the_alerts_expect() -> None:
    config = _yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service, (_, _, job, _, port) in SAFIRI.items():
        targets = [t for sc in jobs[job]["static_configs"] for t in sc["targets"]]
        assert targets == [f"{service}:{port}"], job
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.rsplit(":", 1)[0]
                assert host in SERVICES or host == "localhost", f"{job['job_name']}: {target}"
    assert "rabbitmq:15692" in str(jobs["rabbitmq"])
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


def test_the_collector_pipelines_are_wired_to_tempo_loki_and_prometheus() -> None:
    config = _yaml(COLLECTOR_CONFIG)
    pipelines = config["service"]["pipelines"]
    connectors = set(config.get("connectors", {}))
    assert {"spanmetrics", "servicegraph"} <= connectors
    for name, pipeline in pipelines.items():
        for receiver in pipeline["receivers"]:
            assert receiver in config["receivers"] or receiver in connectors, (name, receiver)
        for processor in pipeline.get("processors", []):
            assert processor in config["processors"], (name, processor)
        for exporter in pipeline["exporters"]:
            assert exporter in config["exporters"] or exporter in connectors, (name, exporter)
        if "otlp" in pipeline["receivers"]:
            assert pipeline["processors"][0] == "memory_limiter", name
            assert pipeline["processors"][-1] == "batch", name
    assert {"otlp/tempo", "spanmetrics", "servicegraph"} <= set(pipelines["traces"]["exporters"])
    assert pipelines["logs"]["exporters"] == ["otlphttp/loki"]
    exporters = config["exporters"]
    assert exporters["otlp/tempo"]["endpoint"] == "tempo:4317"
    assert exporters["otlphttp/loki"]["endpoint"] == "http://loki:3100/otlp"
    # Prometheus scrapes what the prometheus exporter and the collector's own telemetry serve.
    scraped = str(_yaml(PROMETHEUS_CONFIG)["scrape_configs"])
    assert exporters["prometheus"]["endpoint"].endswith(":8889")
    assert "otel-collector:8889" in scraped
    assert "otel-collector:8888" in scraped
    health = config["extensions"]["health_check"]["endpoint"]
    assert health.split(":")[-1] in " ".join(SERVICES["otel-collector"]["healthcheck"]["test"])
    assert _yaml(DEPLOY / "tempo" / "tempo.yaml")["distributor"]["receivers"]["otlp"]["protocols"][
        "grpc"
    ]["endpoint"].endswith(":4317")
