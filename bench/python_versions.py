"""The suite's throughput and CPU per purchase on two CPython versions, alternating in one run.

    .venv/bin/python bench/python_versions.py --old 3.11 --rounds 3 --orders 600

Makes a virtual environment from the lock for each interpreter (``--old``, and the one
scripts/python.sh picks for the project: the newest this machine carries that every dependency
supports), under var/bench-venvs, without downloading an interpreter. Each round runs
bench/purchase_throughput.py (telemetry on, and off) once under each, the order alternating
between rounds; the services run on the interpreter that runs that script. The ratios are
taken within each round (new over old) and their median reported, since these machines drift.

Figures and the machine go to bench/results/python_versions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from provenance import run_metadata  # noqa: E402


def _interpreter(version: str | None) -> str:
    """scripts/python.sh's choice: the project's interpreter, or CPython ``version``."""
    command = ["bash", str(ROOT / "scripts" / "python.sh"), *([version] if version else [])]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def _venv(interpreter: str) -> Path:
    version = subprocess.run(
        [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    where = ROOT / "var" / "bench-venvs" / f"py{version}"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(where), "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run(
        ["uv", "sync", "--frozen", "--quiet", "--python", interpreter],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return where / "bin" / "python"


def _round(python: Path, args: argparse.Namespace, name: str) -> dict[str, Any]:
    command = [str(python), str(ROOT / "bench" / "purchase_throughput.py"), "--rounds", "1"]
    command += ["--orders", str(args.orders), "--concurrency", str(args.concurrency)]
    command += ["--variants", "on", "--quiet-logs", "--name", name]
    subprocess.run(command, cwd=ROOT, check=True)
    result = ROOT / "bench" / "results" / f"{name}.json"
    report: dict[str, Any] = json.loads(result.read_text())
    result.unlink()
    return {
        variant: {
            "purchases_per_second": runs[0]["purchases_per_second"],
            "services_cpu_ms_per_purchase": runs[0]["services_cpu_ms_per_purchase"],
            "post_orders_p99_ms": runs[0]["post_orders_p99_ms"],
        }
        for variant, runs in report["runs"].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="3.11")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    pythons = {
        "old": _venv(_interpreter(args.old)),
        "new": _venv(_interpreter(None)),
    }
    versions = {
        k: subprocess.run([str(p), "-V"], capture_output=True, text=True).stdout.strip()
        for k, p in pythons.items()
    }
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for round_no in range(args.rounds):
        order = ["old", "new"] if round_no % 2 == 0 else ["new", "old"]
        for which in order:
            runs[which].append(_round(pythons[which], args, f"python_versions_tmp_{which}"))
            print(f"round {round_no} {versions[which]}: {runs[which][-1]}", file=sys.stderr)

    def ratio(variant: str, key: str) -> float:
        pairs = zip(runs["new"], runs["old"], strict=True)
        return round(statistics.median(n[variant][key] / o[variant][key] for n, o in pairs), 3)

    report = {
        "benchmark": "purchases/s and services' CPU per purchase, two CPythons, alternating",
        **run_metadata(variant={"interpreters": versions, "telemetry": ["on", "off"]}),
        "parameters": vars(args),
        "versions": versions,
        "runs": runs,
        "new_over_old_purchases_per_second": {
            v: ratio(v, "purchases_per_second") for v in ("on", "off")
        },
        "new_over_old_cpu_ms_per_purchase": {
            v: ratio(v, "services_cpu_ms_per_purchase") for v in ("on", "off")
        },
    }
    out = ROOT / "bench" / "results" / "python_versions.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "versions",
                    "new_over_old_purchases_per_second",
                    "new_over_old_cpu_ms_per_purchase",
                )
            }
        )
    )


if __name__ == "__main__":
    main()
