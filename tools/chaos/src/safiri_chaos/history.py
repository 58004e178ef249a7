"""Operations recorded Jepsen-style: each purchase an ``invoke``, then ``ok``/``fail``/``unknown``.

A purchase whose answer never came (a timeout, a broken connection, a 5xx) is ``unknown``: it
may or may not have taken effect, so it is never counted as a failure. The invariant checker
later resolves each unknown through the gateway's idempotency record.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

__all__ = ["HistoryRecorder", "Op", "OpType", "read_history"]

OpType = Literal["invoke", "ok", "fail", "unknown"]


@dataclass(frozen=True)
class Op:
    type: OpType
    process: str
    key: str  # the purchase's Idempotency-Key: it ties the completion to its invoke
    time: str
    f: str = "purchase"
    trip_id: str | None = None
    order_id: str | None = None
    status: int | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


class HistoryRecorder:
    """Appends operations to a JSONL file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def record(
        self,
        type_: OpType,
        process: str,
        key: str,
        *,
        trip_id: str | None = None,
        order_id: str | None = None,
        status: int | None = None,
        error: str | None = None,
    ) -> Op:
        now = datetime.now(UTC).isoformat()
        op = Op(type_, process, key, now, "purchase", trip_id, order_id, status, error)
        with self._lock, self.path.open("a") as out:
            out.write(op.to_json() + "\n")
        return op


def read_history(path: Path) -> Iterator[Op]:
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                yield Op(**raw)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a history record: {exc}") from None
