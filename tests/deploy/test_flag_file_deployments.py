"""The flag file where the services run without the repository around them: compose mounts
deploy/flags read-only, each image carries a copy (so it starts alone), and Kubernetes mounts the
ConfigMap safiri-flags, whose content is deploy/flags/flags.json, as a directory.

A directory mount, not a file (or subPath) mount, in both: an edit replaces the file by a new
one (an editor's rename on the host, the kubelet's symlink swap in the pod), which a mount of
the old file would never show; and no name-suffix hash on the ConfigMap, so that editing it
reaches the running pods instead of rolling them.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.deploy.test_compose import SERVICES as COMPOSE_SERVICES
from tests.deploy.test_compose import host_path
from tests.deploy.test_k8s import OVERLAYS, of_kind, rendered

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ROOT / "deploy" / "flags" / "flags.json"
IN_CONTAINER = PurePosixPath("/etc/safiri/flags/flags.json")
READERS = ("gateway", "payment")  # the services that evaluate flags


# ------------------------------------------------------------------------------ compose


@pytest.mark.parametrize("service", READERS)
def test_compose_mounts_the_flag_directory_read_only_and_points_the_service_at_it(
    service: str,
) -> None:
    env = COMPOSE_SERVICES[service]["environment"]
    assert env["SAFIRI_FLAGS_FILE"] == str(IN_CONTAINER)
    assert host_path(service, str(IN_CONTAINER)) == FLAGS
    [mount] = [
        v
        for v in COMPOSE_SERVICES[service].get("volumes", [])
        if ":" + str(IN_CONTAINER.parent) in v
    ]
    source, target, mode = mount.split(":")
    assert (ROOT / source).resolve() == FLAGS.parent, "the directory, not the file"
    assert (target, mode) == (str(IN_CONTAINER.parent), "ro")


# ------------------------------------------------------------------------------- images


def _final_stage(service: str) -> str:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    return re.split(r"^FROM\s", text, flags=re.MULTILINE)[-1]


@pytest.mark.parametrize("service", READERS)
def test_the_image_carries_the_flag_file_and_names_it(service: str) -> None:
    stage = _final_stage(service)
    copies = re.findall(r"^COPY\s+(.+)$", stage, flags=re.MULTILINE)
    assert f"deploy/flags/flags.json {IN_CONTAINER}" in copies, copies
    assert re.search(rf"^ENV\s[^\n]*(?:\\\n[^\n]*)*SAFIRI_FLAGS_FILE={IN_CONTAINER}\b", stage, re.M)
    # The build context lets the file in (the ignore file keeps everything else out).
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!deploy/flags/flags.json" in ignore


# ---------------------------------------------------------------------------- Kubernetes


def _flags_configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [configmap] = [c for c in of_kind(objects, "ConfigMap") if "flags.json" in c.get("data", {})]
    return configmap


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_flag_configmap_is_the_repository_flag_file_under_a_stable_name(
    overlay: str,
) -> None:
    configmap = _flags_configmap(rendered(overlay))
    assert configmap["metadata"]["name"] == "safiri-flags", "no name-suffix hash"
    assert configmap["data"]["flags.json"] == FLAGS.read_text(), (
        "deploy/k8s/base/flags.yaml differs from deploy/flags/flags.json: run"
        " `.venv/bin/python scripts/k8s_flags.py > deploy/k8s/base/flags.yaml`"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", READERS)
def test_the_service_mounts_the_configmap_as_a_directory(overlay: str, service: str) -> None:
    objects = rendered(overlay)
    [deployment] = [d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == service]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    name = _flags_configmap(objects)["metadata"]["name"]
    [volume] = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == name]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == str(IN_CONTAINER.parent)
    assert "subPath" not in mount, "a subPath mount never sees an edit of the ConfigMap"
    assert mount.get("readOnly") is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SAFIRI_FLAGS_FILE"] == str(IN_CONTAINER)
