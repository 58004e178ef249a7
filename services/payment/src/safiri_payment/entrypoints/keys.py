"""Typed application keys."""

from __future__ import annotations

from aiohttp import web

from ..service_layer.handlers import Payments

__all__ = ["PAYMENTS"]

PAYMENTS = web.AppKey("payments", Payments)
