"""Locust's end-of-run statistics (``--json-file``), summarised. Pure.

The locustfile names every request by its route template, and reports what is not an HTTP
request under the request type ``ORDER``: ``final state`` (success: the order reached the state
its phone number chooses, timed from the POST; failure: another state, or none in time) and
``no seat on sale``. A request the gateway refuses with 429 (its per-key rate limit) fails
with the text ``429 rate-limited: <the gateway's detail>``, so the refusals can be counted
apart from the suite's own failures and the limit named.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTION_NAMES",
    "BROWSE",
    "ORDER_TYPE",
    "POLL",
    "PURCHASE",
    "PURCHASE_RETRY",
    "RATE_LIMITED",
    "STOCK",
    "EntryStats",
    "LoadStats",
    "percentile",
    "rate_limited",
    "summarize",
    "top_failures",
]

BROWSE = ("GET", "/api/v1/trips")
STOCK = ("GET", "/api/v1/trips [stock]")  # looking for trips to buy on, not a browse action
PURCHASE = ("POST", "/api/v1/orders")
PURCHASE_RETRY = ("POST", "/api/v1/orders [retry]")  # the same Idempotency-Key again
POLL = ("GET", "/api/v1/orders/{order_id}")
ORDER_TYPE = "ORDER"
ACTION_NAMES = (BROWSE, PURCHASE)
RATE_LIMITED = "429 rate-limited"  # how the locustfile names a refusal by the rate limit


def percentile(response_times: Mapping[int, int], percent: float) -> int:
    """Locust's percentile of a ``{rounded ms: count}`` histogram (0 when it is empty)."""
    total = sum(response_times.values())
    wanted = int(total * percent)
    seen = 0
    for value in sorted(response_times, reverse=True):
        seen += response_times[value]
        if total - seen <= wanted:
            return int(value)
    return 0


@dataclass(frozen=True)
class EntryStats:
    method: str
    name: str
    requests: int
    failures: int
    p50_ms: int
    p95_ms: int
    p99_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "name": self.name,
            "requests": self.requests,
            "failures": self.failures,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True)
class LoadStats:
    entries: tuple[EntryStats, ...]
    elapsed_seconds: float
    actions: int  # purchases started plus browses
    http_requests: int
    http_failures: int
    order_checks: int  # orders followed to their final state
    order_failures: int  # orders in the wrong state, or not final in time
    p50_ms: int  # over every HTTP request
    p95_ms: int
    p99_ms: int

    @property
    def requests_rps(self) -> float:
        return self.http_requests / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def failures(self) -> int:
        return self.http_failures + self.order_failures

    @property
    def error_ratio(self) -> float:
        """Failed requests and failed orders, over requests and followed orders."""
        total = self.http_requests + self.order_checks
        return self.failures / total if total else 0.0

    def entry(self, method: str, name: str) -> EntryStats | None:
        return next((e for e in self.entries if (e.method, e.name) == (method, name)), None)


def _histogram(raw: Mapping[Any, Any]) -> Counter[int]:
    # JSON turns the integer keys into strings.
    return Counter({int(float(k)): int(v) for k, v in raw.items()})


def summarize(entries: Iterable[Mapping[str, Any]]) -> LoadStats:
    """Summarise the list ``locust --json-file`` writes (one dict per request name)."""
    rows: list[EntryStats] = []
    http_times: Counter[int] = Counter()
    starts: list[float] = []
    ends: list[float] = []
    actions = http_requests = http_failures = checks = check_failures = 0
    for raw in entries:
        method, name = str(raw["method"]), str(raw["name"])
        times = _histogram(raw.get("response_times") or {})
        requests, failures = int(raw["num_requests"]), int(raw["num_failures"])
        rows.append(
            EntryStats(
                method,
                name,
                requests,
                failures,
                percentile(times, 0.50),
                percentile(times, 0.95),
                percentile(times, 0.99),
            )
        )
        if raw.get("start_time"):
            starts.append(float(raw["start_time"]))
        if raw.get("last_request_timestamp"):
            ends.append(float(raw["last_request_timestamp"]))
        if method == ORDER_TYPE:
            checks += requests
            check_failures += failures
            continue
        http_requests += requests
        http_failures += failures
        http_times.update(times)
        if (method, name) in ACTION_NAMES:
            actions += requests
    elapsed = max(ends) - min(starts) if starts and ends else 0.0
    rows.sort(key=lambda e: (e.method == ORDER_TYPE, e.name, e.method))
    return LoadStats(
        entries=tuple(rows),
        elapsed_seconds=max(0.0, elapsed),
        actions=actions,
        http_requests=http_requests,
        http_failures=http_failures,
        order_checks=checks,
        order_failures=check_failures,
        p50_ms=percentile(http_times, 0.50),
        p95_ms=percentile(http_times, 0.95),
        p99_ms=percentile(http_times, 0.99),
    )


def top_failures(failures_csv: str, limit: int = 5) -> list[dict[str, Any]]:
    """The most frequent failures from Locust's ``<prefix>_failures.csv``."""
    rows = list(csv.DictReader(io.StringIO(failures_csv)))
    found = [
        {
            "method": r.get("Method", ""),
            "name": r.get("Name", ""),
            "error": r.get("Error", ""),
            "occurrences": int(r.get("Occurrences") or 0),
        }
        for r in rows
    ]
    found.sort(key=lambda f: -int(f["occurrences"]))
    return found[:limit]


def rate_limited(failures_csv: str) -> tuple[int, str | None]:
    """Requests refused by the gateway's rate limit, from Locust's ``<prefix>_failures.csv``,
    and the gateway's detail of the limit (``This API key may send 200 requests per second
    (bursts of 400); ...``) when it gave one."""
    count = 0
    detail: str | None = None
    for row in csv.DictReader(io.StringIO(failures_csv)):
        error = row.get("Error") or ""
        at = error.find(RATE_LIMITED)
        if at < 0:
            continue
        count += int(row.get("Occurrences") or 0)
        said = error[at + len(RATE_LIMITED) :]
        if said.endswith(("')", '")')):  # Locust writes CatchResponseError('<text>')
            said = said[:-2]
        detail = detail or said.removeprefix(":").strip() or None
    return count, detail
