"""Typed keys for what the app factory and its cleanup contexts store on the application."""

from __future__ import annotations

from aiohttp import web

from .faults import FaultState
from .ledger import Ledger
from .metrics import SimulatorMetrics
from .notifier import ResultNotifier
from .settings import Settings
from .tokens import AccessTokens

__all__ = ["FAULTS", "LEDGER", "METRICS", "NOTIFIER", "SETTINGS", "TOKENS"]

SETTINGS = web.AppKey("mpesa_sim_settings", Settings)
LEDGER = web.AppKey("mpesa_sim_ledger", Ledger)
TOKENS = web.AppKey("mpesa_sim_tokens", AccessTokens)
METRICS = web.AppKey("mpesa_sim_metrics", SimulatorMetrics)
FAULTS = web.AppKey("mpesa_sim_faults", FaultState)
# Set by a cleanup context: it needs the client session, which needs a running loop.
NOTIFIER = web.AppKey("mpesa_sim_notifier", ResultNotifier)
