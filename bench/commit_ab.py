"""Telemetry's cost in two commits of Safiri, alternating in one run.

    .venv/bin/python bench/commit_ab.py --before 3151e6f --after HEAD --pairs 4 \
        --name telemetry_stock_parts_ab

Checks each commit out in a git worktree of its own (var/ab/<commit>), makes its virtual
environment from its own lock on ``--python`` (the same CPython for both), and runs that
commit's bench/purchase_throughput.py (telemetry on, and off) once per pair, before and after
alternating in order, so both see the machine's drift alike. Written to
bench/results/<name>.json: every run, and the medians of each side.

With ``--together`` the two commits run at the same time instead, each its own suite under its
own load (as ``purchase_throughput.py --together`` runs variants): both with telemetry on, then
both with it off, pair after pair. Runs a few minutes apart on this kind of machine differ by up
to a third in CPU per purchase; two suites sharing the same minutes see the same machine, so a
lever of a few per cent shows in every pair instead of drowning. The pairs then measure CPU per
purchase, not a rate (the suites race for the same cores).
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
RESULT = "commit_ab_tmp"  # each commit's purchase_throughput.py writes here; read, then removed
# --together's two ways (together_mode), as the report names them.
EACH_VARIANT_AT_ONCE = "each variant started at once"
EACH_RUN_AT_ONCE = "both runs started at once, each telemetry off then on"
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


def _throughput(tree: Path, orders: int, *options: str) -> subprocess.Popen[bytes]:
    """That commit's bench/purchase_throughput.py, one round, started (not waited for)."""
    command = [str(tree / ".venv" / "bin" / "python"), "bench/purchase_throughput.py"]
    command += ["--rounds", "1", "--orders", str(orders), "--name", RESULT, *options]
    return subprocess.Popen(command, cwd=tree, stdout=subprocess.DEVNULL)


def _report(tree: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    if process.wait() != 0:
        raise SystemExit(f"bench/purchase_throughput.py in {tree} failed ({process.returncode})")
    result = tree / "bench" / "results" / f"{RESULT}.json"
    report: dict[str, Any] = json.loads(result.read_text())
    result.unlink()
    return report


def _run(tree: Path, orders: int) -> dict[str, Any]:
    """One commit alone: telemetry on and off, as its purchase_throughput.py orders them."""
    report = _report(tree, _throughput(tree, orders))
    return _side(report["runs"]["on"][0], report["runs"]["off"][0])


def _runs_one_variant(tree: Path) -> bool:
    """Whether that commit's purchase_throughput.py can run one variant alone (--baseline)."""
    return '"--baseline"' in (tree / "bench" / "purchase_throughput.py").read_text()


def together_mode(trees: dict[str, Path]) -> str:
    if all(_runs_one_variant(tree) for tree in trees.values()):
        return EACH_VARIANT_AT_ONCE
    return EACH_RUN_AT_ONCE


def _run_together(trees: dict[str, Path], orders: int) -> dict[str, dict[str, Any]]:
    """Both commits at once, telemetry on; then both at once, telemetry off. A commit whose
    purchase_throughput.py cannot run one variant alone (before --baseline) runs off then on
    in one go; both commits' runs then start at once and their phases line up within the
    few seconds a suite's start takes."""
    if together_mode(trees) == EACH_RUN_AT_ONCE:
        started = {side: _throughput(tree, orders) for side, tree in trees.items()}
        reports = {side: _report(trees[side], process) for side, process in started.items()}
        return {side: _side(r["runs"]["on"][0], r["runs"]["off"][0]) for side, r in reports.items()}
    by_variant: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in ("on", "off"):
        options = ("--baseline", variant, "--variants", variant)
        started = {side: _throughput(tree, orders, *options) for side, tree in trees.items()}
        by_variant[variant] = {
            side: _report(trees[side], process)["runs"][variant][0]
            for side, process in started.items()
        }
    return {side: _side(by_variant["on"][side], by_variant["off"][side]) for side in trees}


def _side(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    return {
        "on_cpu_ms_per_purchase": on["services_cpu_ms_per_purchase"],
        "off_cpu_ms_per_purchase": off["services_cpu_ms_per_purchase"],
        "cpu_off_over_on": round(
            off["services_cpu_ms_per_purchase"] / on["services_cpu_ms_per_purchase"], 3
        ),
        "purchases_per_second_on_over_off": round(
            on["purchases_per_second"] / off["purchases_per_second"], 3
        ),
        "on_purchases_per_second": on["purchases_per_second"],
        "off_purchases_per_second": off["purchases_per_second"],
        "on_cpu_ms_per_purchase_by_service": on["cpu_ms_per_purchase_by_service"],
    }


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the pairs; a figure by service, each service's."""
    return {
        key: _medians([r[key] for r in rows])
        if isinstance(value, dict)
        else round(statistics.median(r[key] for r in rows), 3)
        for key, value in rows[0].items()
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
    parser.add_argument(
        "--together",
        action="store_true",
        help="run both commits' suites at the same time, pair by pair (telemetry on together,"
        " then off; with a commit older than purchase_throughput.py's --baseline, each side's"
        " off-then-on run together)",
    )
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
        if args.together:
            for side, result in _run_together(trees, args.orders).items():
                runs[side].append(result)
                print(f"pair {pair} {side}: {result}", file=sys.stderr)
            continue
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
        "benchmark": "telemetry on vs OTEL_SDK_DISABLED=true in two commits, "
        + ("at the same time" if args.together else "alternating"),
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
        **({"together_mode": together_mode(trees)} if args.together else {}),
        "runs": runs,
        "median": {side: _medians(rows) for side, rows in runs.items()},
    }
    out = ROOT / "bench" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["median"], indent=1))


if __name__ == "__main__":
    main()
