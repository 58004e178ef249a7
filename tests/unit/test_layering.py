"""The layering, kept by import-linter (pyproject.toml's [tool.importlinter] contracts), and the
services' installed dependencies, which hold no operator tool's."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
SERVICES = ["safiri-gateway", "safiri-ticketing", "safiri-payment", "safiri-mpesa-sim"]
OPERATOR_ONLY = {"locust", "chaostoolkit", "chaostoolkit-lib"}


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_import_contract_is_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    kept = re.findall(r"^(.+) KEPT$", result.stdout, re.MULTILINE)
    assert len(kept) >= 6, result.stdout  # the contracts were read and checked


def test_a_broken_layer_is_reported(tmp_path: Path) -> None:
    """The same tool on a contract the code breaks (ticketing's entrypoints do import its
    service layer) fails: the check above is not passing on an empty configuration."""
    config = tmp_path / "importlinter.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    safiri_ticketing\n\n"
        "[importlinter:contract:upside-down]\nname = upside down\ntype = layers\n"
        "layers =\n    safiri_ticketing.domain\n    safiri_ticketing.service_layer\n"
        "    safiri_ticketing.entrypoints\n"
    )
    result = lint_imports("--config", str(config))
    assert result.returncode == 1
    assert "upside down BROKEN" in result.stdout


def dependency_closure(name: str) -> set[str]:
    """The names of every distribution ``name`` needs installed (extras left out)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop().lower().replace("_", "-")
        if current in seen:
            continue
        seen.add(current)
        for line in distribution(current).requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_installs_without_the_operator_tools(service: str) -> None:
    closure = dependency_closure(service)
    assert "aiohttp" in closure  # the walk reaches the service's real dependencies
    assert closure & OPERATOR_ONLY == set()


def test_the_walk_finds_the_operator_tools_where_they_are() -> None:
    assert dependency_closure("safiri") >= OPERATOR_ONLY


@pytest.mark.parametrize(
    "tool", ["safiri-suite", "safiri-tracestore", "safiri-chaos", "safiri-load"]
)
def test_an_operator_tool_installs_without_any_service(tool: str) -> None:
    closure = dependency_closure(tool)
    assert "aiohttp" in closure
    assert closure & set(SERVICES) == set()


# A module path (safiri_ticketing.domain...) or an import; the services' database names
# (postgresql://.../safiri_ticketing) are configuration, not code.
SERVICE_MODULE = re.compile(
    r"(?:\bimport |\b)(?:safiri_gateway|safiri_ticketing|safiri_payment|safiri_mpesa_sim)"
    r"(?:\.\w|\b(?=\s+import)|$)",
    re.MULTILINE,
)


def test_the_locustfile_and_the_experiments_name_no_service_module() -> None:
    """Outside the packages import-linter reads: Locust's file and the Chaos Toolkit
    experiments (which name modules to call) reach the services only over the wire."""
    files = [ROOT / "load" / "locustfile.py", *sorted((ROOT / "chaos").rglob("*.json"))]
    assert len(files) > 10
    found = [
        f"{f.relative_to(ROOT)}: {m[0]}"
        for f in files
        for m in SERVICE_MODULE.finditer(f.read_text())
    ]
    assert found == []
    assert SERVICE_MODULE.search("from safiri_ticketing.domain.trips import ROUTES")
    assert SERVICE_MODULE.search("import safiri_payment")
    assert SERVICE_MODULE.search('"module": "safiri_gateway.entrypoints.http"')
    assert not SERVICE_MODULE.search('"postgresql://postgres@127.0.0.1:5432/safiri_ticketing"')
    assert SERVICE_MODULE.search("import safiri_payment")
    assert SERVICE_MODULE.search('"module": "safiri_gateway.entrypoints.http"')
    assert not SERVICE_MODULE.search('"postgresql://postgres@127.0.0.1:5432/safiri_ticketing"')
