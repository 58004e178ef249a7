"""docker-compose.yml and the configuration it mounts, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON schema (the copy
check-jsonschema carries), as written and after compose's variable interpolation, which is
re-implemented here to prove that compose refuses to start without each secret. Everything
else is read with PyYAML and cross-referenced: pinned images, the Prometheus and Alertmanager
versions against the Debian ones that prove the rules and routes, healthchecks, start order,
mounted files, the paths each program is told to read, Prometheus's scrape jobs, the
collector's pipelines. `promtool` checks prometheus.yml with the rules it loads.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
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
    "SAFIRI_MAP_READER_PASSWORD": "map-reader-test-password",
}
# The only variables compose may start without, each ``${NAME:-}``: empty means off.
OPTIONAL = {"SENTRY_DSN", "SENTRY_ENVIRONMENT", "SENTRY_RELEASE"}
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
    "backup-simulator": (
        "simulators/mpesa",
        "safiri-mpesa-sim",
        "safiri-backup-simulator",
        "SAFIRI_MPESA_SIM",
        8092,
    ),
    "fleet-simulator": (
        "simulators/fleet",
        "safiri-fleet-sim",
        "safiri-fleet-simulator",
        "SAFIRI_FLEET_SIM",
        8091,
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
    "cadvisor",
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


# ---------------------------------------------------------------------------- schema


def _broken(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    compose = copy.deepcopy(COMPOSE)
    change(compose)
    return compose


# Copies of the compose file with one mistake each, and the word the rejection must name.
BROKEN: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-top-level-key": (_broken(lambda c: c.update(networkz={})), "networkz"),
    "misspelt-service-key": (
        _broken(lambda c: c["services"]["prometheus"].update(healthchek={"test": ["NONE"]})),
        "healthchek",
    ),
    "unknown-depends-on-condition": (
        _broken(
            lambda c: c["services"]["grafana"]["depends_on"]["prometheus"].update(
                condition="service_ready"
            )
        ),
        "service_ready",
    ),
    "ports-not-a-list": (
        _broken(lambda c: c["services"]["grafana"].update(ports="127.0.0.1:3000:3000")),
        "not of type 'array'",
    ),
}


class MissingVariableError(Exception):
    """Compose refuses the file: a ``${NAME:?message}`` variable is unset or empty."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


def _substitute(name: str, rest: str, value: str | None) -> str:
    """One ``${name<rest>}`` as compose interpolates it (``None``: the variable is unset)."""
    if rest == "":
        return value or ""
    operator = rest[:2] if rest.startswith(":") else rest[:1]
    argument = rest[len(operator) :]
    unset_or_empty = value is None or (operator.startswith(":") and value == "")
    if operator in {"?", ":?"}:
        if unset_or_empty:
            raise MissingVariableError(name, argument)
        return str(value)
    if operator in {"-", ":-"}:
        return argument if unset_or_empty else str(value)
    if operator in {"+", ":+"}:
        return "" if unset_or_empty else argument
    raise AssertionError(f"${{{name}{rest}}}: not a compose interpolation")


REFERENCE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """The compose file's values after compose's variable interpolation (compose spec,
    "Interpolation"): ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?message}``, ``${VAR?message}``, ``${VAR:+alt}``, ``${VAR+alt}``. Keys and comments
    are left alone, as compose leaves them."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        escaped, name, rest, bare = match.groups()
        if escaped:
            return "$"
        if bare:
            return env.get(bare, "")
        return _substitute(name, rest, env.get(name))

    assert "$" not in REFERENCE.sub("", value), f"{value!r}: a `$` compose cannot interpolate"
    return REFERENCE.sub(one, value)


def _references(text: str) -> list[tuple[str, str]]:
    """Every ``${NAME...}`` and ``$NAME`` in the compose file: (name, what follows the name)."""
    return [
        (name or bare, rest) for escaped, name, rest, bare in REFERENCE.findall(text) if not escaped
    ]


def _not_required(text: str) -> list[str]:
    """The references that let compose start without the variable (a default, an alternative,
    or a plain ``${NAME}``/``$NAME`` that becomes empty)."""
    return [f"${{{name}{rest}}}" for name, rest in _references(text) if not rest.startswith(":?")]


def _check_jsonschema(paths: list[Path]) -> dict[Path, list[str]]:
    """Validate ``paths`` against the Compose Specification's JSON schema, in one run of
    check-jsonschema (its vendored ``compose-spec.json``); the errors found in each file."""
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            "--output-format",
            "json",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode in {0, 1}, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert not report.get("parse_errors"), report["parse_errors"]
    errors: dict[Path, list[str]] = {path: [] for path in paths}
    for error in report.get("errors", []):
        found = [error["message"], error.get("best_deep_match", {}).get("message", "")]
        errors[Path(error["filename"])].append(
            f"{error['path']}: {' / '.join(filter(None, found))}"
        )
    assert (checked.returncode == 0) == (not any(errors.values())), checked.stdout
    return errors


@pytest.fixture(scope="module")
def schema_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The schema's verdict on the compose file, on it after interpolation, on a YAML round
    trip of it (the broken copies are written the same way) and on each broken copy."""
    folder = tmp_path_factory.mktemp("compose")
    documents = {
        "interpolated": _interpolate(COMPOSE, SECRETS),
        "round-trip": COMPOSE,
        **{case: compose for case, (compose, _) in BROKEN.items()},
    }
    paths = {"docker-compose.yml": COMPOSE_FILE}
    for case, document in documents.items():
        paths[case] = folder / f"{case}.yml"
        paths[case].write_text(yaml.safe_dump(document, sort_keys=False))
    errors = _check_jsonschema(list(paths.values()))
    return {case: errors[path] for case, path in paths.items()}


@pytest.mark.parametrize("case", ["docker-compose.yml", "interpolated", "round-trip"])
def test_the_compose_file_follows_the_compose_specification(
    case: str, schema_errors: dict[str, list[str]]
) -> None:
    assert schema_errors[case] == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_schema_check_rejects_a_broken_compose_file(
    case: str, schema_errors: dict[str, list[str]]
) -> None:
    _, named = BROKEN[case]
    assert schema_errors[case], f"{case}: the broken copy passed the schema"
    assert named in "\n".join(schema_errors[case]), schema_errors[case]


# Compose accepts any string as a restart policy (the schema types it as a string); Docker
# refuses the container only when it is created.
RESTART_POLICY = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")


def _bad_restart_policies(compose: dict[str, Any]) -> list[str]:
    return [
        f"{name}: restart {spec['restart']!r}"
        for name, spec in compose["services"].items()
        if "restart" in spec and not RESTART_POLICY.fullmatch(str(spec["restart"]))
    ]


def test_every_restart_policy_is_one_docker_knows() -> None:
    assert _bad_restart_policies(COMPOSE) == []
    broken = _broken(lambda c: c["services"]["prometheus"].update(restart="sometimes"))
    assert _bad_restart_policies(broken) == ["prometheus: restart 'sometimes'"]


# ---------------------------------------------------------------------------- secrets


def test_compose_interpolates_every_secret_it_is_given() -> None:
    interpolated = _interpolate(COMPOSE, SECRETS)
    assert "${" not in json.dumps(interpolated)
    gateway = interpolated["services"]["gateway"]["environment"]
    assert gateway["SAFIRI_API_KEYS"] == SECRETS["SAFIRI_API_KEYS"]
    password = SECRETS["SAFIRI_POSTGRES_PASSWORD"]
    assert f"safiri:{password}@postgres" in str(interpolated["services"]["payment"])


@pytest.mark.parametrize("secret", sorted(SECRETS))
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_each_secret(secret: str, value: str | None) -> None:
    env = {k: v for k, v in SECRETS.items() if k != secret}
    if value is not None:
        env[secret] = value
    with pytest.raises(MissingVariableError) as refused:
        _interpolate(COMPOSE, env)
    assert refused.value.name == secret


def test_no_variable_has_a_default_in_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    assert _references(text)
    optional = [f"${{{name}:-}}" for name in OPTIONAL]
    assert set(_not_required(text)) <= set(optional), (
        "every variable must be required (${NAME:?message}), but for the optional ones"
    )
    for name, _ in _references(text):
        assert name in SECRETS or name in OPTIONAL, f"{name} is not listed in SECRETS"


@pytest.mark.parametrize("service", ["gateway", "ticketing", "payment"])
def test_the_services_get_the_sentry_variables_given_to_compose(service: str) -> None:
    unset = _interpolate(COMPOSE, SECRETS)["services"][service]["environment"]
    assert {name: unset[name] for name in OPTIONAL} == dict.fromkeys(OPTIONAL, "")
    given = {name: f"value-of-{name}" for name in OPTIONAL}
    started = _interpolate(COMPOSE, SECRETS | given)["services"][service]["environment"]
    assert {name: started[name] for name in OPTIONAL} == given


def test_the_secret_checks_fail_when_a_secret_gets_a_default() -> None:
    text = COMPOSE_FILE.read_text()
    defaulted, count = re.subn(
        r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]*\}", "${GRAFANA_ADMIN_PASSWORD:-admin}", text
    )
    assert count == 1
    optional = {f"${{{name}:-}}" for name in OPTIONAL}
    assert set(_not_required(defaulted)) - optional == {"${GRAFANA_ADMIN_PASSWORD:-admin}"}
    env = {k: v for k, v in SECRETS.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    started = _interpolate(yaml.safe_load(defaulted), env)  # no MissingVariableError
    assert started["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "admin"


# ---------------------------------------------------------------------------- versions


def _version(text: str, what: str) -> tuple[int, int, int]:
    match = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", text)
    assert match, f"no version in {what}: {text!r}"
    return int(match[1]), int(match[2]), int(match[3])


def _installed(*command: str) -> str:
    if shutil.which(command[0]) is None:
        pytest.fail(
            f"{command[0]} is not installed (Debian: apt-get install -y prometheus"
            " prometheus-alertmanager; scripts/deps.sh --install --test does it)"
        )
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _image_version(service: str, image: str) -> tuple[int, int, int]:
    name, _, tag = SERVICES[service]["image"].rpartition(":")
    assert name == image, f"{service}: runs {name}, not {image}"
    return _version(tag, f"{service}'s image tag")


def test_compose_runs_the_prometheus_major_version_the_rule_tests_prove() -> None:
    """The rules, the dashboards' queries and prometheus.yml are proven by Debian's Prometheus
    (promtool test rules, check config, a real server): compose must run the same major version.

    Only the major version must match, not the minor: Prometheus keeps PromQL, rule and
    configuration files and flags stable within a major version (prometheus.io/docs/prometheus/
    latest/stability), so what 2.42 proves holds on the last 2.x (2.55.1, with 2.43-2.55's
    fixes); 3.0 broke them (regex `.` matching newlines, `le`/`quantile` label values
    normalised, left-open range selectors, feature flags removed). The image may be newer
    within the major version, never older than the Prometheus that proved the rules.
    """
    tested = _version(_installed("promtool", "--version"), "promtool --version")
    shipped = _image_version("prometheus", "prom/prometheus")
    assert shipped[0] == tested[0], f"compose runs Prometheus {shipped}, the tests prove {tested}"
    assert shipped[:2] >= tested[:2], f"compose's Prometheus {shipped} is older than {tested}"


def test_compose_runs_the_alertmanager_version_the_routing_tests_prove() -> None:
    """Alertmanager is 0.x: a minor release may change the configuration, so compose runs the
    major.minor of the Debian Alertmanager and amtool that test the routing (the image may
    carry a later patch release of it)."""
    tested = _version(_installed("amtool", "--version"), "amtool --version")
    shipped = _image_version("alertmanager", "prom/alertmanager")
    assert shipped[:2] == tested[:2], f"compose runs Alertmanager {shipped}, tests prove {tested}"
    assert shipped >= tested


def _help_flags(help_text: str) -> set[str]:
    """The flags a kingpin ``--help`` lists (two to six spaces in; descriptions are deeper)."""
    return set(re.findall(r"^ {2,6}(?:-\w, )?(--[\w.-]*\w)", help_text, re.M))


def test_compose_gives_prometheus_only_flags_and_features_the_tested_version_has() -> None:
    """Every flag and --enable-feature is one the Prometheus the tests run knows: a flag of
    another version stops the server (3.x's --web.enable-otlp-receiver on 2.x) and an unknown
    feature is only logged, the feature left off (2.x's otlp-write-receiver on 3.x)."""
    help_text = _installed("prometheus", "--help")
    flags = [w for w in _words("prometheus") if w.startswith("--")]
    assert flags
    unknown = {f.split("=", 1)[0] for f in flags} - _help_flags(help_text)
    assert not unknown, f"the tested (Debian's) Prometheus has no {unknown}"
    valid = re.search(r"Valid options:(.*?)\.\s+See", " ".join(help_text.split()))
    assert valid, "prometheus --help no longer lists its features"
    known = {f.strip().removesuffix(" (DEPRECATED)") for f in valid[1].split(",")}
    wanted = {
        feature
        for flag in flags
        if flag.startswith("--enable-feature=")
        for feature in flag.split("=", 1)[1].split(",")
    }
    assert wanted <= known, f"features the tested Prometheus does not have: {wanted - known}"


def test_compose_gives_alertmanager_only_flags_the_tested_version_has() -> None:
    """The flags after /bin/alertmanager in compose's start command, against Debian's."""
    words = _words("alertmanager")
    flags = {w.split("=", 1)[0] for w in words[words.index("/bin/alertmanager") + 1 :]}
    assert flags and all(f.startswith("--") for f in flags), flags
    unknown = flags - _help_flags(_installed("prometheus-alertmanager", "--help"))
    assert not unknown, f"the tested (Debian's) Alertmanager has no {unknown}"


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
        if source.startswith("/"):  # the Docker host's own (cAdvisor's): only ever read
            assert volume.endswith(":ro"), f"{service}: {volume} of the host is not read-only"
        elif source.startswith("."):
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
    datasources_file = provisioning / "datasources" / "datasources.yml"
    for datasource in _yaml(datasources_file)["datasources"]:
        # HTTP backends by URL; PostgreSQL (the live bus map) by host:port.
        address = re.fullmatch(r"(?:http://)?([\w-]+):\d+", datasource["url"])
        assert address and address[1] in SERVICES, datasource["url"]
    # Every variable the provisioning reads ($VAR; $$ is a literal $) is set for Grafana.
    lines = datasources_file.read_text().splitlines()
    text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("#")).replace("$$", "")
    for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text):
        assert name in _env("grafana"), f"datasources.yml reads ${name}, unset in grafana"


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
    assert [t for sc in jobs["cadvisor"]["static_configs"] for t in sc["targets"]] == [
        "cadvisor:8080"
    ]
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
