"""``safiri canary check``: promote or roll back the provider-policy canary, from Prometheus.

Per arm (the ``variant`` label: ``baseline``, ``canary``) over the window:

- payments: ``sum by (variant) (increase(payments_total[W]))``, every payment that reached an
  outcome; failed: those whose ``result_code`` is not ``0`` (the customer's refusals included:
  the arms are random samples of the same customers, so what the change adds is the
  difference);
- p95 provider latency: ``histogram_quantile(0.95, ...)`` of
  ``payment_provider_request_duration_seconds{operation="stk_push"}``, the STK push as payment
  waits for it, retries and backoff included (what the policy changes).

The rule, in this order:

1. **wait** (exit 2) while either arm has fewer than ``--min-requests`` payments, or an arm
   has no latency figure: too little to judge;
2. **roll back** (exit 1) if the canary's error ratio is higher than the baseline's by a
   one-sided two-proportion z-test (pooled) at ``--alpha`` AND by more than ``--margin``
   (absolute), or if its p95 is more than ``--latency-factor`` times the baseline's AND more
   than ``--latency-margin`` seconds above it (a p95 read from histogram buckets over a few
   payments moves by a bucket's width without anything having changed);
3. otherwise **promote** (exit 0).

Exit 3: Prometheus could not be asked. Rolling back is an edit of the flag file: the
``provider-policy`` flag's canary weight to 0 and its client list emptied (docs/canary.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

__all__ = [
    "EXIT",
    "Arm",
    "CanaryError",
    "Rule",
    "Verdict",
    "add_canary_command",
    "decide",
    "measure",
    "queries",
]

VARIANTS = ("baseline", "canary")
EXIT = {"promote": 0, "rollback": 1, "wait": 2}
EXIT_UNREACHABLE = 3
_WINDOW = re.compile(r"^\d+(ms|s|m|h|d)$")


class CanaryError(RuntimeError):
    """Prometheus could not be asked, or answered with an error."""


@dataclass(frozen=True)
class Rule:
    min_requests: int = 100  # payments per arm before anything is decided
    alpha: float = 0.05  # one-sided significance of "the canary fails more"
    margin: float = 0.02  # and by more than this much, absolute (2 percentage points)
    latency_factor: float = 1.5  # canary p95 above this times the baseline's rolls back
    latency_margin: float = 0.25  # and more than this many seconds above it

    def describe(self) -> str:
        return (
            f"wait until each arm has at least {self.min_requests} payments; roll back if the"
            " canary's error ratio exceeds the baseline's by a one-sided two-proportion z-test"
            f" at alpha {self.alpha:g} AND by more than {self.margin * 100:g} percentage"
            f" points, or if its p95 STK push latency is more than {self.latency_factor:g} x"
            f" the baseline's AND more than {self.latency_margin:g} s above it; otherwise"
            " promote"
        )


@dataclass(frozen=True)
class Arm:
    variant: str
    payments: float
    failed: float
    p95_seconds: float | None

    @property
    def error_ratio(self) -> float | None:
        return self.failed / self.payments if self.payments > 0 else None


@dataclass(frozen=True)
class Verdict:
    decision: str  # promote, rollback or wait
    reasons: list[str]
    baseline: Arm
    canary: Arm
    rule: Rule
    z: float | None = None
    p_value: float | None = None
    latency_ratio: float | None = None
    window: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT[self.decision]

    def as_json(self) -> dict[str, Any]:
        arms = {
            arm.variant: {**asdict(arm), "error_ratio": arm.error_ratio}
            for arm in (self.baseline, self.canary)
        }
        return {
            "decision": self.decision,
            "exit_code": self.exit_code,
            "window": self.window,
            "arms": arms,
            "z": self.z,
            "p_value": self.p_value,
            "latency_ratio": self.latency_ratio,
            "rule": {**asdict(self.rule), "text": self.rule.describe()},
            "reasons": self.reasons,
            "latency": "p95 of payment_provider_request_duration_seconds{operation='stk_push'}",
            **self.extra,
        }


def two_proportion_z(canary: Arm, baseline: Arm) -> tuple[float, float]:
    """z of (canary ratio - baseline ratio) with the pooled standard error, and its one-sided
    p-value P(Z >= z); (0, 1) when neither arm failed or nothing varies."""
    n1, n0 = canary.payments, baseline.payments
    pooled = (canary.failed + baseline.failed) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return 0.0, 1.0
    z = ((canary.failed / n1) - (baseline.failed / n0)) / se
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def decide(baseline: Arm, canary: Arm, rule: Rule, window: str = "") -> Verdict:
    short = [a for a in (baseline, canary) if a.payments < rule.min_requests]
    if short:
        reasons = [
            f"{a.variant} has {a.payments:.0f} payments, fewer than {rule.min_requests}"
            for a in short
        ]
        return Verdict("wait", reasons, baseline, canary, rule, window=window)
    z, p = two_proportion_z(canary, baseline)
    difference = (canary.error_ratio or 0.0) - (baseline.error_ratio or 0.0)
    reasons = []
    worse_errors = p < rule.alpha and difference > rule.margin
    reasons.append(
        f"error ratio {difference * 100:+.2f} pp, z = {z:.2f}, p = {p:.4f}: "
        + (
            f"worse (p < {rule.alpha:g} and more than {rule.margin * 100:g} pp)"
            if worse_errors
            else (f"not worse (needs p < {rule.alpha:g} and more than {rule.margin * 100:g} pp)")
        )
    )
    if baseline.p95_seconds is None or canary.p95_seconds is None:
        reasons.append("no p95 latency for an arm (no STK push observed in the window)")
        return Verdict("wait", reasons, baseline, canary, rule, z, p, window=window)
    ratio = canary.p95_seconds / baseline.p95_seconds if baseline.p95_seconds > 0 else math.inf
    above = canary.p95_seconds - baseline.p95_seconds
    slower = ratio > rule.latency_factor and above > rule.latency_margin
    reasons.append(
        f"p95 {canary.p95_seconds:.3f} s vs {baseline.p95_seconds:.3f} s ({ratio:.2f} x,"
        f" {above:+.3f} s): "
        + (
            f"slower (more than {rule.latency_factor:g} x and {rule.latency_margin:g} s)"
            if slower
            else f"not slower (needs more than {rule.latency_factor:g} x"
            f" and {rule.latency_margin:g} s)"
        )
    )
    decision = "rollback" if worse_errors or slower else "promote"
    return Verdict(decision, reasons, baseline, canary, rule, z, p, ratio, window=window)


def queries(window: str) -> dict[str, str]:
    latency = (
        "histogram_quantile(0.95, sum by (variant, le) (rate("
        f'payment_provider_request_duration_seconds_bucket{{operation="stk_push"}}[{window}])))'
    )
    return {
        "payments": f"sum by (variant) (increase(payments_total[{window}]))",
        "failed": f'sum by (variant) (increase(payments_total{{result_code!="0"}}[{window}]))',
        "p95": latency,
    }


async def _query(
    http: aiohttp.ClientSession, url: str, expr: str, at: float | None
) -> dict[str, float]:
    params = {"query": expr, **({"time": str(at)} if at is not None else {})}
    try:
        async with http.get(f"{url.rstrip('/')}/api/v1/query", params=params) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CanaryError(f"cannot query Prometheus at {url}: {exc!r}") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        raise CanaryError(f"Prometheus refused {expr!r}: {body}")
    out = {}
    for series in body["data"]["result"]:
        value = float(series["value"][1])
        if not math.isnan(value):
            out[series["metric"].get("variant", "")] = value
    return out


async def measure(prometheus: str, window: str, at: float | None = None) -> tuple[Arm, Arm]:
    """The two arms' figures over ``window`` ending now (or at ``at``, a Unix time)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        figures = {
            name: await _query(http, prometheus, expr, at) for name, expr in queries(window).items()
        }
    baseline, canary = (
        Arm(
            variant,
            figures["payments"].get(variant, 0.0),
            figures["failed"].get(variant, 0.0),
            figures["p95"].get(variant),
        )
        for variant in VARIANTS
    )
    return baseline, canary


def render(verdict: Verdict, prometheus: str) -> str:
    def ratio(arm: Arm) -> str:
        return "-" if arm.error_ratio is None else f"{arm.error_ratio * 100:.2f} %"

    def p95(arm: Arm) -> str:
        return "-" if arm.p95_seconds is None else f"{arm.p95_seconds:.3f} s"

    lines = [
        f"Canary provider-policy over the last {verdict.window} ({prometheus})",
        f"  {'arm':<9} {'payments':>9} {'failed':>7} {'error ratio':>12} {'p95 STK push':>13}",
    ]
    for arm in (verdict.baseline, verdict.canary):
        lines.append(
            f"  {arm.variant:<9} {arm.payments:>9.0f} {arm.failed:>7.0f} {ratio(arm):>12}"
            f" {p95(arm):>13}"
        )
    lines.append(f"Rule: {verdict.rule.describe()}.")
    lines += [f"  - {reason}" for reason in verdict.reasons]
    advice = {
        "promote": "raise the canary's weight (or make it the default) in deploy/flags/flags.json",
        "rollback": "set the provider-policy canary weight to 0 and empty its client list in"
        " the flag file (docs/canary.md); it takes effect within seconds",
        "wait": "let more payments through, or widen --window",
    }[verdict.decision]
    name = {"promote": "PROMOTE", "rollback": "ROLL BACK", "wait": "WAIT"}[verdict.decision]
    lines.append(f"Decision: {name} (exit {verdict.exit_code}): {advice}.")
    return "\n".join(lines)


def _timestamp(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def _window(text: str) -> str:
    if not _WINDOW.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Prometheus duration such as 10m")
    return text


def run_check(args: argparse.Namespace) -> int:
    rule = Rule(
        args.min_requests, args.alpha, args.margin, args.latency_factor, args.latency_margin
    )
    try:
        baseline, canary = asyncio.run(measure(args.prometheus, args.window, args.at))
    except CanaryError as exc:
        print(f"safiri canary: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    verdict = decide(baseline, canary, rule, args.window)
    if args.json:
        print(json.dumps(verdict.as_json(), indent=2))
    else:
        print(render(verdict, args.prometheus))
    return verdict.exit_code


def add_canary_command(sub: Any) -> None:
    canary = sub.add_parser(
        "canary", help="judge the provider-policy canary from Prometheus: promote or roll back"
    )
    actions = canary.add_subparsers(dest="canary_command", required=True)
    check = actions.add_parser(
        "check",
        help="compare the canary's error ratio and p95 with the baseline's",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = Rule()
    check.add_argument("--prometheus", default="http://127.0.0.1:9090")
    check.add_argument("--window", type=_window, default="10m", help="e.g. 10m, 1h")
    check.add_argument(
        "--at", type=_timestamp, default=None, help="judge at this time (Unix or ISO 8601)"
    )
    check.add_argument("--min-requests", type=int, default=defaults.min_requests)
    check.add_argument("--alpha", type=float, default=defaults.alpha)
    check.add_argument(
        "--margin", type=float, default=defaults.margin, help="absolute, 0.02 = 2 pp"
    )
    check.add_argument("--latency-factor", type=float, default=defaults.latency_factor)
    check.add_argument(
        "--latency-margin", type=float, default=defaults.latency_margin, help="seconds"
    )
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.set_defaults(func=run_check)
