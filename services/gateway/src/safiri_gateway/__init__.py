"""Safiri's public HTTP API: authenticates, validates, and calls ticketing at most once per key."""

from __future__ import annotations

from .bootstrap import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
