"""Benchmark write-ups are rendered from their result files (bench/render.py).

The check passes on the repository as it is, and each way a figure can lose its file fails on
a broken copy: a result file changed after its block was rendered, a figure edited by hand
inside a block, a result file without the metadata of its run, a result no table shows.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    return load_script(ROOT / "bench" / f"{name}.py")


render = _load("render")
provenance = _load("provenance")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The repository's result files and write-ups, as they are, under ``tmp_path``."""
    for path in [*render.documents(ROOT), *(ROOT / render.RESULTS).glob("*.json")]:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return tmp_path


def _result(root: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / render.RESULTS / name).read_text())
    return data


def _write_result(root: Path, name: str, data: dict[str, Any]) -> None:
    (root / render.RESULTS / name).write_text(json.dumps(data, indent=2) + "\n")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} should be in {path} once"
    path.write_text(text.replace(old, new))


def test_every_write_up_in_the_repository_is_rendered_from_its_result_files() -> None:
    assert render.check(ROOT) == [], "run `make bench-report` (bench/render.py)"


def test_the_copy_the_other_tests_break_passes_as_it_is(copy: Path) -> None:
    assert render.check(copy) == []
    assert render.main(["--check", "--root", str(copy)]) == 0


def test_a_result_changed_after_its_block_was_rendered_leaves_the_block_stale(
    copy: Path,
) -> None:
    data = _result(copy, "telemetry_overhead_together.json")
    data["cpu_ratio_off_over"]["on"] = 0.9
    _write_result(copy, "telemetry_overhead_together.json", data)

    findings = render.check(copy)

    stale = [f for f in findings if "generated block is stale" in f]
    assert any(f.startswith("libs/telemetry/README.md: ") for f in stale), findings
    assert any(f.startswith("bench/results/telemetry_overhead.md: ") for f in stale), findings
    assert render.main(["--check", "--root", str(copy)]) == 1

    assert render.main(["--root", str(copy)]) == 0  # make bench-report
    assert render.check(copy) == []
    assert (
        "| 0.900 (`telemetry_overhead_together.json`) | +11 % |"
        in (copy / "libs" / "telemetry" / "README.md").read_text()
    )


def test_a_figure_edited_by_hand_inside_a_block_fails_and_is_put_back(copy: Path) -> None:
    readme = copy / "libs" / "telemetry" / "README.md"
    rendered = readme.read_text()
    _edit(readme, "| 0.720 (`telemetry_overhead_together.json`) | +39 % |", "| 0.720 (x) | +28 % |")

    findings = render.check(copy)

    assert len(findings) == 1, findings
    assert findings[0].startswith("libs/telemetry/README.md: generated block is stale")
    assert "+28 %" in findings[0]
    render.main(["--root", str(copy)])
    assert readme.read_text() == rendered


@pytest.mark.parametrize("field", ["when", "variant", "git", "machine", "command"])
def test_a_result_file_without_the_metadata_of_its_run_fails(copy: Path, field: str) -> None:
    # quorum_queue_rate.json recorded its command; its other fields were filled from history.
    data = _result(copy, "quorum_queue_rate.json")
    del data[field]
    _write_result(copy, "quorum_queue_rate.json", data)

    findings = render.check(copy)

    lacks = [f for f in findings if f.startswith("bench/results/quorum_queue_rate.json: lacks ")]
    assert lacks, findings
    assert field in lacks[0]


def test_a_result_file_without_its_machine_details_fails(copy: Path) -> None:
    data = _result(copy, "span_cost.json")
    del data["machine"]["cpus"]
    _write_result(copy, "span_cost.json", data)

    assert "bench/results/span_cost.json: lacks machine.cpus" in render.check(copy)


def test_a_file_of_unknown_commit_without_its_provenance_fails(copy: Path) -> None:
    data = _result(copy, "span_cost.json")
    assert data["git"]["commit"] == "unknown"
    del data["provenance"]
    _write_result(copy, "span_cost.json", data)

    (finding,) = [f for f in render.check(copy) if "lacks" in f]
    assert "command (or provenance.equivalent_command)" in finding
    assert "provenance.committed_in" in finding


def test_a_result_file_no_table_renders_fails(copy: Path) -> None:
    data = {"benchmark": "something new", **provenance.run_metadata({"a": "b"}, argv=["x.py"])}
    _write_result(copy, "something_new.json", data)

    findings = render.check(copy)

    assert any(
        f.startswith("bench/results/something_new.json: no table renders it") for f in findings
    )
    # The index of every result file now lacks it too.
    assert any(f.startswith("bench/README.md: generated block is stale") for f in findings)


def test_a_table_shown_in_no_document_fails(copy: Path) -> None:
    scaling = copy / "docs" / "scaling.md"
    text = scaling.read_text()
    begin = text.index("<!-- generated by bench/render.py: table quorum-queue-rate ")
    end = text.index(render.END, begin) + len(render.END)
    scaling.write_text(text[:begin] + text[end:])

    assert render.check(copy) == [
        "table quorum-queue-rate is placed in no document, so its files' figures are shown nowhere"
    ]


def test_a_block_naming_no_known_table_fails(copy: Path) -> None:
    readme = copy / "bench" / "README.md"
    readme.write_text(
        readme.read_text()
        + "\n<!-- generated by bench/render.py: table made-up from x.json; do not edit -->\n"
        + "| 1 |\n<!-- end generated -->\n"
    )

    (finding,) = render.check(copy)
    assert finding.startswith("bench/README.md: no table named 'made-up'")


def test_what_a_run_records_satisfies_the_check_and_names_no_host() -> None:
    meta = provenance.run_metadata(
        {"on": {"OTEL_SDK_DISABLED": "false"}}, argv=[str(ROOT / "bench" / "span_cost.py"), "-x"]
    )

    assert render.metadata_problems("new.json", {"benchmark": "b", **meta}) == []
    assert meta["command"] == "bench/span_cost.py -x"
    assert meta["git"]["commit"] != "unknown"
    assert platform.node() not in json.dumps(meta)
