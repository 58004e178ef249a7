"""The outcome of `make mutation` as docs/mutation.json: the score of each area and every mutant
not killed, with its diff, read from mutmut's records (mutants/ of each area) and from the JSON
scripts/mutate_alert_rules.py wrote.

    python scripts/mutation_report.py --alerts mutants/alert_rules.json --out docs/mutation.json

docs/mutation.md gives each survivor's reason; the script names the survivors it does not
mention (tests/unit/test_mutation_alert_rules.py holds the committed pair together).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# (name, the directory mutmut runs in: its pyproject.toml's [tool.mutmut] says what and how)
AREAS = (
    ("invariant checker", Path("tools/chaos")),
    ("libs/telemetry: redaction and HTTP metric helpers", Path("libs/telemetry")),
)
KILLED = {"killed", "timeout"}  # mutmut's own score counts a mutant that hangs as killed


@contextmanager
def _inside(directory: Path) -> Iterator[None]:
    """mutmut reads its configuration from the working directory, once per process."""
    from mutmut.configuration import reset_config

    before = Path.cwd()
    os.chdir(directory)
    reset_config()
    try:
        yield
    finally:
        os.chdir(before)
        reset_config()


def area(name: str, directory: Path) -> dict[str, Any]:
    """The score of one mutmut area and each mutant it did not kill."""
    from mutmut.configuration import config
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    statuses: Counter[str] = Counter()
    left: list[dict[str, str]] = []
    modules: list[str] = []
    with _inside(ROOT / directory):
        for path in walk_mutatable_files():
            data = SourceFileMutationData(path=path)
            if not Path(data.meta_path).exists():
                raise SystemExit(f"{directory / path}: no mutmut results (run `make mutation`)")
            data.load()  # no mutant at all when every function is decorated (model.py)
            modules.append(str(directory / path))
            for mutant, code in sorted(data.exit_code_by_key.items()):
                status = status_by_exit_code[code]
                statuses[status] += 1
                if status not in KILLED:
                    diff = get_diff_for_mutant(mutant, path=path).splitlines()
                    changed = [ln for ln in diff if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
                    left.append({"id": mutant, "status": status, "diff": "\n".join(changed)})
        tests = config().pytest_add_cli_args_test_selection
    killed = sum(statuses[s] for s in KILLED)
    total = sum(statuses.values())
    return {
        "area": name,
        "directory": str(directory),
        "modules": modules,
        "tests": tests,
        "killed": killed,
        "total": total,
        "score": round(killed / total, 3) if total else None,
        "by_status": dict(sorted(statuses.items())),
        "left": left,
    }


def alert_rules(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    left = [
        {"id": m["id"], "status": "survived", "diff": f"{m['kind']}: {m['before']} -> {m['after']}"}
        for m in data["mutants"]
        if not m["killed"]
    ]
    return {
        "area": "alert rules: thresholds and `for`",
        "directory": "deploy/prometheus",
        "tool": data["promtool"],
        "command": data["command"],
        "factor": data["factor"],
        "killed": data["killed"],
        "total": data["total"],
        "score": round(data["killed"] / data["total"], 3),
        "by_alert": data["by_alert"],
        "left": left,
    }


def unexplained(report: dict[str, Any], explanation: str) -> list[str]:
    """The survivors ``explanation`` (docs/mutation.md) does not name."""
    return [m["id"] for a in report["areas"] for m in a["left"] if m["id"] not in explanation]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=Path, required=True, help="mutate_alert_rules.py --json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "mutation.json")
    parser.add_argument("--seconds", type=int, help="how long the whole run took")
    args = parser.parse_args(argv)
    import mutmut

    areas = [area(name, directory) for name, directory in AREAS]
    areas.append(alert_rules(args.alerts))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    report = {
        "command": "make mutation",
        "commit": commit or None,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": args.seconds,
        "mutmut": mutmut.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "areas": areas,
    }
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for a in areas:
        print(f"{a['area']}: {a['killed']} of {a['total']} mutants killed, {len(a['left'])} left")
    explanation = ROOT / "docs" / "mutation.md"
    missing = unexplained(report, explanation.read_text() if explanation.exists() else "")
    if missing:
        print(f"{len(missing)} survivor(s) docs/mutation.md does not explain:", file=sys.stderr)
        print("\n".join(f"  {m}" for m in missing), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
