"""Telemetry's cost in two commits of Safiri, alternating in one run.

    .venv/bin/python bench/commit_ab.py --before 3151e6f --after HEAD --pairs 4 \
        --name telemetry_stock_parts_ab

Checks each commit out in a git worktree of its own (var/ab/<commit>), makes its virtual
environment from its own lock on ``--python`` (the same CPython for both), and runs that
commit's bench/purchase_throughput.py (telemetry on, and off) once per pair, before and after
alternating in order, so both see the machine's drift alike. Written to
bench/results/<name>.json: every run, and the medians of each side.
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


def _checkout(commit: str, python: str) -> Path:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", commit],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = ROOT / "var" / "ab" / sha
    if not tree.exists():
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(tree), sha], cwd=ROOT, check=True
        )
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    subprocess.run(
        ["uv", "sync", "--frozen", "--quiet", "--python", python], cwd=tree, env=env, check=True
    )
    return tree


def _run(tree: Path, orders: int) -> dict[str, Any]:
    name = "commit_ab_tmp"
    command = [str(tree / ".venv" / "bin" / "python"), "bench/purchase_throughput.py"]
    command += ["--rounds", "1", "--orders", str(orders), "--name", name]
    subprocess.run(command, cwd=tree, check=True, stdout=subprocess.DEVNULL)
    result = tree / "bench" / "results" / f"{name}.json"
    report: dict[str, Any] = json.loads(result.read_text())
    result.unlink()
    on, off = report["runs"]["on"][0], report["runs"]["off"][0]
    return {
        "on_cpu_ms_per_purchase": on["services_cpu_ms_per_purchase"],
        "off_cpu_ms_per_purchase": off["services_cpu_ms_per_purchase"],
        "cpu_off_over_on": report["cpu_ratio_off_over_on"],
        "purchases_per_second_on_over_off": report["ratio_on_over_off"],
        "on_purchases_per_second": on["purchases_per_second"],
        "off_purchases_per_second": off["purchases_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument(
        "--python", default="3.11", help="a CPython version scripts/python.sh finds"
    )
    parser.add_argument("--name", default="commit_ab")
    args = parser.parse_args()
    python = subprocess.run(
        ["bash", str(ROOT / "scripts" / "python.sh"), args.python],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    trees = {"before": _checkout(args.before, python), "after": _checkout(args.after, python)}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for pair in range(args.pairs):
        for side in ("before", "after") if pair % 2 == 0 else ("after", "before"):
            runs[side].append(_run(trees[side], args.orders))
            print(f"pair {pair} {side}: {runs[side][-1]}", file=sys.stderr)
    implementation, version = subprocess.run(
        [
            python,
            "-c",
            "import platform; print(platform.python_implementation(), platform.python_version())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    meta = run_metadata(
        variant={
            "before": trees["before"].name,
            "after": trees["after"].name,
            "telemetry": ["on", "off"],
            "python": python,
        }
    )
    report = {
        "benchmark": "telemetry on vs OTEL_SDK_DISABLED=true in two commits, alternating",
        "before": f"{args.before} ({trees['before'].name})",
        "after": f"{args.after} ({trees['after'].name})",
        **meta,
        # The suites ran on --python (its path in the variant), not on this script's interpreter.
        "machine": {
            **meta["machine"],
            "python": version,
            "python_implementation": implementation,
        },
        "parameters": vars(args),
        "runs": runs,
        "median": {
            side: {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
            for side, rows in runs.items()
        },
    }
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["median"], indent=1))


if __name__ == "__main__":
    main()
