"""Typed application and request keys: what the app owns and what a request carries."""

from __future__ import annotations

from aiohttp import web

from safiri_flags import Flags

from ..service_layer.place_order import PlaceOrder
from ..service_layer.ports import IdempotencyStore, Ticketing

__all__ = ["CLIENT", "FLAGS", "IDEMPOTENCY", "PLACE_ORDER", "TICKETING"]

TICKETING = web.AppKey[Ticketing]("ticketing")
IDEMPOTENCY = web.AppKey[IdempotencyStore]("idempotency")
PLACE_ORDER = web.AppKey("place_order", PlaceOrder)
FLAGS = web.AppKey("flags", Flags)
# Who is calling, as a hash of their API key: scopes Idempotency-Keys without storing the key.
CLIENT = web.RequestKey("client", str)
