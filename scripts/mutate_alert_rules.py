"""Mutation testing of the alerting rules: a threshold or a `for` moved must fail a promtool test.

Every alerting rule in deploy/prometheus/rules/ is mutated one way at a time: each number its
expression compares against is moved up and down (multiplied and divided by ``--factor``; a 0
becomes 1 and -1), and its ``for`` is multiplied and divided by the factor too (a rule without
one gets ``for: 1m``). Each mutant replaces its rule file in a scratch copy of deploy/prometheus/,
and ``promtool test rules`` runs the unit tests that evaluate that alert. A mutant the tests
still pass survives: no test pins that threshold or that delay.

    python scripts/mutate_alert_rules.py --json bench/results/mutation_alert_rules.json

(`make mutation` runs it.) Exits 0 whatever survives: the score is a measurement, not a gate.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
FACTOR = 2.0
ADDED_FOR = "1m"

# A comparison with a number on its right: `> 0.05`, `== 0`, `> (14.4 * 0.01)`. Label matchers
# (`!=`, `=~`, `!~`) are followed by a quoted string and never match; a range (`[10m]`) has no
# comparison before it.
_COMPARISON = re.compile(
    r"(?P<op>==|!=|>=|<=|>|<)\s*(?:bool\s+)?"
    r"(?P<value>\(\s*\d+(?:\.\d+)?\s*\*\s*\d+(?:\.\d+)?\s*\)|\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
)
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


@dataclass(frozen=True)
class Threshold:
    """One number a rule's expression compares against, where it stands in the expression."""

    start: int
    end: int
    op: str
    text: str
    value: float


@dataclass(frozen=True)
class Mutant:
    alert: str
    kind: str  # "threshold" ("threshold 1/2" when the rule compares twice) or "for"
    before: str
    after: str
    expr: str  # the rule's expression, mutated or not
    for_: str | None  # the rule's `for`, mutated or not (None: no `for`)

    @property
    def id(self) -> str:
        """How docs/mutation.md names it: ``SafiriTargetDown threshold == 0 -> == 1``."""
        return f"{self.alert} {self.kind} {self.before} -> {self.after}"


@dataclass(frozen=True)
class Outcome:
    id: str
    alert: str
    kind: str
    before: str
    after: str
    killed: bool
    test_files: list[str]
    failed: str  # promtool's first lines of failure ("" when the mutant survived)


def thresholds(expr: str) -> list[Threshold]:
    """Every number ``expr`` compares against, in order."""
    found = []
    for m in _COMPARISON.finditer(expr):
        text = m.group("value")
        found.append(Threshold(m.start("value"), m.end("value"), m.group("op"), text, _value(text)))
    return found


def _value(text: str) -> float:
    product = 1.0
    for factor in text.strip("() ").split("*"):
        product *= float(factor)
    return product


def _number(value: float) -> str:
    return f"{value:.6g}"


def seconds(duration: str) -> float:
    """A Prometheus duration (``1m``, ``1h30m``) in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _SECONDS[u] for n, u in parts)


def duration(total: float) -> str:
    """``total`` seconds as a Prometheus duration (``30s``, ``2m``, ``7m30s``)."""
    whole = round(total)
    if whole != total or whole <= 0:
        raise ValueError(f"not a whole number of seconds: {total}")
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs else "")


def mutants(rule: dict[str, Any], factor: float = FACTOR) -> list[Mutant]:
    """Each threshold of ``rule`` up and down, then its `for` up and down (or added)."""
    alert, expr, for_ = rule["alert"], rule["expr"], rule.get("for")
    out = []
    found = thresholds(expr)
    for n, t in enumerate(found, 1):
        # `threshold 2/2`: the second of two comparisons (a burn-rate rule's two windows)
        kind = f"threshold {n}/{len(found)}" if len(found) > 1 else "threshold"
        moved = (t.value * factor, t.value / factor) if t.value else (1.0, -1.0)
        for value in moved:
            after = _number(value)
            mutated = expr[: t.start] + after + expr[t.end :]
            out.append(Mutant(alert, kind, f"{t.op} {t.text}", f"{t.op} {after}", mutated, for_))
    if for_ is None:
        out.append(Mutant(alert, "for", "none", ADDED_FOR, expr, ADDED_FOR))
    else:
        for scaled in (seconds(for_) * factor, seconds(for_) / factor):
            after = duration(scaled)
            out.append(Mutant(alert, "for", for_, after, expr, after))
    return out


def alert_rules(rules_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every alerting rule (recording rules have no threshold to move), with its file."""
    out = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [(path, rule) for rule in group["rules"] if "alert" in rule]
    return out


def tests_of(alert: str, tests_dir: Path) -> dict[str, dict[str, Any]]:
    """The promtool test files, each cut down to the test groups that evaluate ``alert``: by
    name in an ``alert_rule_test``, or as ``ALERTS{alertname="..."}`` in a ``promql_expr_test``."""
    out = {}
    for path in sorted(tests_dir.glob("*.test.yml")):
        document = yaml.safe_load(path.read_text())
        groups = [
            group
            for group in document["tests"]
            if any(case["alertname"] == alert for case in group.get("alert_rule_test", []))
            or any(
                f'alertname="{alert}"' in case["expr"] for case in group.get("promql_expr_test", [])
            )
        ]
        if groups:
            out[path.name] = {**document, "tests": groups}
    return out


def evaluation_order(rules_dir: Path) -> list[str]:
    """Every rule group, those with recording rules first.

    Without ``group_eval_order`` promtool evaluates the groups at each step in an order that
    changes from run to run, so an alert on a recording rule sees this step's value in some runs
    and the previous step's in others: near a check, the same mutant passed some runs and
    failed others. Recording first is the order in which a check's time means what it says.
    """
    groups = [
        g for p in sorted(rules_dir.glob("*.yml")) for g in yaml.safe_load(p.read_text())["groups"]
    ]
    records = [g["name"] for g in groups if any("record" in r for r in g["rules"])]
    return records + [g["name"] for g in groups if g["name"] not in records]


def apply(mutant: Mutant, rules_file: Path) -> str:
    """``rules_file`` with ``mutant`` in place of its rule, as YAML."""
    document = yaml.safe_load(rules_file.read_text())
    found = 0
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == mutant.alert:
                rule["expr"] = mutant.expr
                if mutant.for_ is None:
                    rule.pop("for", None)
                else:
                    rule["for"] = mutant.for_
                found += 1
    if found != 1:
        raise ValueError(f"{mutant.alert}: {found} rules of that name in {rules_file}")
    return yaml.safe_dump(document, sort_keys=False, width=4096)


def run(
    mutant: Mutant | None,
    alert: str,
    rules_file: Path,
    prometheus: Path = PROMETHEUS,
    promtool: str = "promtool",
) -> tuple[bool, list[str], str]:
    """Run the promtool tests of ``alert`` with ``mutant`` in place (``None``: as shipped).

    Returns whether they failed, the test files run and promtool's first lines of failure.
    """
    tests = tests_of(alert, prometheus / "tests")
    if not tests:
        raise ValueError(f"{alert}: no promtool test evaluates it")
    with tempfile.TemporaryDirectory(prefix="mutate-alert-rules-") as scratch:
        root = Path(scratch)
        shutil.copytree(prometheus / "rules", root / "rules")
        (root / "tests").mkdir()
        if mutant is not None:
            (root / "rules" / rules_file.name).write_text(apply(mutant, rules_file))
        order = evaluation_order(prometheus / "rules")
        for name, document in tests.items():
            document = {"group_eval_order": order, **copy.deepcopy(document)}
            (root / "tests" / name).write_text(yaml.safe_dump(document))
        done = subprocess.run(
            [promtool, "test", "rules", *sorted(str(root / "tests" / n) for n in tests)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    failed = done.returncode != 0
    lines = [
        ln for ln in (done.stdout + done.stderr).splitlines() if "FAILED" in ln or "exp:" in ln
    ]
    return failed, sorted(tests), "\n".join(lines[:4]) if failed else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factor", type=float, default=FACTOR, help="move by this factor")
    parser.add_argument("--json", type=Path, help="write the outcome of every mutant here")
    parser.add_argument("--promtool", default="promtool")
    parser.add_argument(
        "--prometheus", type=Path, default=PROMETHEUS, help="holds rules/ and tests/ (a copy)"
    )
    args = parser.parse_args(argv)
    if shutil.which(args.promtool) is None:
        print(f"{args.promtool} not found (Debian: apt-get install prometheus)", file=sys.stderr)
        return 2
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for rules_file, rule in alert_rules(args.prometheus / "rules"):
        failed, _, why = run(None, rule["alert"], rules_file, args.prometheus, args.promtool)
        if failed:
            print(f"{rule['alert']}: its tests fail as shipped:\n{why}", file=sys.stderr)
            return 1
        for mutant in mutants(rule, args.factor):
            dead, files, why = run(
                mutant, rule["alert"], rules_file, args.prometheus, args.promtool
            )
            outcomes.append(
                Outcome(
                    mutant.id,
                    mutant.alert,
                    mutant.kind,
                    mutant.before,
                    mutant.after,
                    dead,
                    files,
                    why,
                )
            )
            print(f"{'killed  ' if dead else 'SURVIVED'} {mutant.id}")
    killed = sum(o.killed for o in outcomes)
    print(f"alert rules: {killed} of {len(outcomes)} mutants killed")
    if args.json:
        version = subprocess.run(
            [args.promtool, "--version"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
        by_alert: dict[str, dict[str, int]] = {}
        for o in outcomes:
            tally = by_alert.setdefault(o.alert, {"killed": 0, "total": 0})
            tally["killed"] += o.killed
            tally["total"] += 1
        result = {
            "command": " ".join(["scripts/mutate_alert_rules.py", *(argv or sys.argv[1:])]),
            "promtool": version,
            "factor": args.factor,
            "killed": killed,
            "total": len(outcomes),
            "seconds": round(time.monotonic() - started, 1),
            "by_alert": by_alert,
            "mutants": [asdict(o) for o in outcomes],
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
