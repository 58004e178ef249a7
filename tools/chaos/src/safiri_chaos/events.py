"""The run's own timeline: what the experiment did and saw, and when (a JSONL file).

Activities run in threads of their own, possibly in another process (``chaos run``); they
share what happened through this file: the fault's injection and healing, the alert's
transitions, the signal that stops the background load.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "ALERT_FIRING",
    "ALERT_PENDING",
    "ALERT_RESOLVED",
    "FAULT_HEALED",
    "FAULT_INJECTED",
    "LOAD_STOP",
    "Event",
    "EventLog",
]

FAULT_INJECTED = "fault_injected"
FAULT_HEALED = "fault_healed"
ALERT_PENDING = "alert_pending"
ALERT_FIRING = "alert_firing"
ALERT_RESOLVED = "alert_resolved"
LOAD_STOP = "load_stop"

_lock = threading.Lock()


@dataclass(frozen=True)
class Event:
    name: str
    at: datetime
    data: dict[str, Any]


class EventLog:
    def __init__(self, results_dir: Path) -> None:
        self.path = results_dir / "events.jsonl"

    def record(self, name: str, **data: Any) -> Event:
        event = Event(name, datetime.now(UTC), data)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": name, "at": event.at.isoformat(), **data}, default=str)
        with _lock, self.path.open("a") as out:
            out.write(line + "\n")
        return event

    def read(self) -> list[Event]:
        if not self.path.exists():
            return []
        events = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                raw = json.loads(line)
                name, at = raw.pop("event"), datetime.fromisoformat(raw.pop("at"))
                events.append(Event(name, at, raw))
        return events

    def first(self, name: str, after: datetime | None = None) -> Event | None:
        return next(
            (e for e in self.read() if e.name == name and (after is None or e.at >= after)), None
        )

    def last(self, name: str) -> Event | None:
        return next((e for e in reversed(self.read()) if e.name == name), None)

    def injected_at(self) -> datetime | None:
        """When the fault went in (the latest injection, should the folder be reused)."""
        event = self.last(FAULT_INJECTED)
        return event.at if event else None

    def healed_at(self) -> datetime | None:
        """The first heal after the fault went in (a rollback heals again; that is not it)."""
        injected = self.injected_at()
        if injected is None:
            return None
        event = self.first(FAULT_HEALED, after=injected)
        return event.at if event else None
