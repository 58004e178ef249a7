"""The suite an experiment runs against, read from the experiment's configuration and secrets.

Chaos Toolkit hands each activity its ``configuration`` (and the ``secrets`` it asks for) as
plain mappings whose values may be strings from the environment; this is their typed view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from .events import EventLog
from .gateway import Buyer
from .history import HistoryRecorder
from .invariants import Limits
from .invariants.read import Sources

__all__ = ["Target"]


@dataclass(frozen=True)
class Target:
    gateway_url: str
    simulator_url: str
    prometheus_url: str
    ticketing_database_url: str
    payment_database_url: str
    gateway_database_url: str
    amqp_url: str
    results_dir: Path
    api_key: str
    simulator_admin_key: str
    hold_ttl_seconds: float
    final_grace_seconds: float
    settle_bound_seconds: float
    request_timeout_seconds: float
    trip_days: int  # buy trips departing within this many days
    # The backup payment route's simulator ("": none) and the flag file that picks the route.
    backup_simulator_url: str = ""
    flags_file: str = ""

    @classmethod
    def from_config(
        cls, configuration: Mapping[str, Any], secrets: Mapping[str, Any] | None = None
    ) -> Target:
        c, s = configuration, secrets or {}
        return cls(
            gateway_url=str(c["gateway_url"]).rstrip("/"),
            simulator_url=str(c["simulator_url"]).rstrip("/"),
            prometheus_url=str(c.get("prometheus_url") or "").rstrip("/"),
            ticketing_database_url=str(c["ticketing_database_url"]),
            payment_database_url=str(c["payment_database_url"]),
            gateway_database_url=str(c["gateway_database_url"]),
            amqp_url=str(c["amqp_url"]),
            results_dir=Path(str(c["results_dir"])),
            api_key=str(s.get("api_key") or c.get("api_key") or ""),
            simulator_admin_key=str(
                s.get("simulator_admin_key") or c.get("simulator_admin_key") or "safiri-sim-admin"
            ),
            hold_ttl_seconds=float(c.get("hold_ttl_seconds", 300)),
            final_grace_seconds=float(c.get("final_grace_seconds", 30)),
            settle_bound_seconds=float(c.get("settle_bound_seconds", 60)),
            request_timeout_seconds=float(c.get("request_timeout_seconds", 10)),
            trip_days=int(c.get("trip_days", 13)),
            backup_simulator_url=str(c.get("backup_simulator_url") or "").rstrip("/"),
            flags_file=str(c.get("flags_file") or ""),
        )

    @property
    def events(self) -> EventLog:
        return EventLog(self.results_dir)

    def buyer(self, http: aiohttp.ClientSession) -> Buyer:
        """A buyer on the run's gateway, recording every purchase in the run's history."""
        return Buyer(
            http,
            self.gateway_url,
            self.api_key,
            HistoryRecorder(self.history_path),
            self.request_timeout_seconds,
        )

    @property
    def history_path(self) -> Path:
        return self.results_dir / "history.jsonl"

    @property
    def sources(self) -> Sources:
        return Sources(
            ticketing_database_url=self.ticketing_database_url,
            payment_database_url=self.payment_database_url,
            gateway_database_url=self.gateway_database_url,
            ledger_url=f"{self.simulator_url}/simulator/ledger",
            backup_ledger_url=(
                f"{self.backup_simulator_url}/simulator/ledger"
                if self.backup_simulator_url
                else None
            ),
            simulator_admin_key=self.simulator_admin_key,
            amqp_url=self.amqp_url,
        )

    def limits(self, healed_at: datetime | None = None) -> Limits:
        return Limits(
            hold_ttl_seconds=self.hold_ttl_seconds,
            final_grace_seconds=self.final_grace_seconds,
            settle_bound_seconds=self.settle_bound_seconds,
            healed_at=healed_at if healed_at is not None else self.events.healed_at(),
            strict=True,  # an experiment's check must look at something to pass
        )
