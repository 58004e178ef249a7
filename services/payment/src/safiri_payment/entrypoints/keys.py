"""Typed application keys."""

from __future__ import annotations

from aiohttp import web

from safiri_flags import Flags

from ..service_layer.handlers import Payments

__all__ = ["FLAGS", "PAYMENTS"]

PAYMENTS = web.AppKey("payments", Payments)
FLAGS = web.AppKey("flags", Flags)
