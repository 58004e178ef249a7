"""Typed application keys: what the app owns, looked up by entry points."""

from __future__ import annotations

from aiohttp import web

from ..adapters.fleet import FleetPositions
from ..adapters.postgres import TripQueries
from ..service_layer.handlers import Ticketing

__all__ = ["FLEET", "QUERIES", "TICKETING"]

TICKETING = web.AppKey("ticketing", Ticketing)
QUERIES = web.AppKey("queries", TripQueries)
FLEET = web.AppKey("fleet", FleetPositions)
