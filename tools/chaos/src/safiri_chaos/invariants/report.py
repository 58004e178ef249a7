"""The checker's verdict: one entry per invariant, each with its violations and its numbers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Check", "InvariantReport", "Violation"]


@dataclass(frozen=True)
class Violation:
    invariant: str  # a stable name, e.g. "seat sold twice", "charge without confirmed order"
    subject: str  # what it is about: "trip 1f… seat 3", "order 04446523-…"
    detail: str


@dataclass
class Check:
    name: str
    violations: list[Violation] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violate(self, invariant: str, subject: str, detail: str) -> None:
        self.violations.append(Violation(invariant, subject, detail))


@dataclass
class InvariantReport:
    taken_at: datetime
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def violations(self) -> list[Violation]:
        return [v for c in self.checks for v in c.violations]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "taken_at": self.taken_at.isoformat(),
            "violations": len(self.violations),
            "checks": [
                {
                    "name": c.name,
                    "ok": c.ok,
                    "facts": c.facts,
                    "violations": [asdict(v) for v in c.violations],
                }
                for c in self.checks
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def render(self, max_listed: int = 10) -> str:
        """The report as a person reads it: a verdict, then each invariant and its numbers."""
        verdict = "HOLD" if self.ok else f"VIOLATED ({len(self.violations)} violations)"
        lines = [f"invariants {verdict} — snapshot at {self.taken_at:%Y-%m-%d %H:%M:%S %Z}"]
        for c in self.checks:
            mark = "✓" if c.ok else "✗"
            facts = ", ".join(f"{k} {_fact(v)}" for k, v in c.facts.items())
            lines.append(f"  {mark} {c.name}" + (f"  ({facts})" if facts else ""))
            for v in c.violations[:max_listed]:
                lines.append(f"      {v.invariant}: {v.subject} — {v.detail}")
            if len(c.violations) > max_listed:
                lines.append(
                    f"      … and {len(c.violations) - max_listed} more (--json lists all)"
                )
        return "\n".join(lines)


def _fact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
