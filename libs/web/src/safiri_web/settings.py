"""Strict readers for ``SAFIRI_*`` variables: each bad value gets a message naming it.

A bad value raises ``safiri_telemetry.ConfigError``, the one configuration-error type: the
same as for a bad ``OTEL_*`` value, so a service's start-up catches one type and exits 2 with
the message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from safiri_telemetry import LOG_LEVELS, ConfigError

__all__ = ["EnvReader", "Secret", "log_level"]


@dataclass(frozen=True)
class Secret:
    """A value that must not print: ``repr`` and ``str`` show only that it is set."""

    value: str

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


class EnvReader:
    """Reads variables and collects every problem before raising one ``ConfigError``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env
        self.errors: list[str] = []

    def text(self, name: str, default: str) -> str:
        return self.env.get(name, "").strip() or default

    def integer(self, name: str, default: int, *, low: int = 0, high: int = 2**31) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not a whole number")
            return default
        if not low <= value <= high:
            self.errors.append(f"{name}={value} is outside {low}..{high}")
        return value

    def number(self, name: str, default: float, *, low: float = 0.0, high: float = 1e9) -> float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not a number")
            return default
        if not low <= value <= high:
            self.errors.append(f"{name}={value} is outside {low}..{high}")
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        raw = self.env.get(name, "").strip() or default
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            self.errors.append(f"{name}={_hide_password(raw)!r} is not a {'/'.join(schemes)} URL")
        return raw

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, low=0, high=65535)

    def check(self) -> None:
        if self.errors:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(self.errors))


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":****@")
    return url


def log_level(env: Mapping[str, str] | None = None) -> str:
    """``SAFIRI_LOG_LEVEL`` (default INFO): the lowest level a Safiri process writes, given to
    ``Telemetry.setup`` (the telemetry library reads no ``SAFIRI_*`` variable itself)."""
    raw = (os.environ if env is None else env).get("SAFIRI_LOG_LEVEL", "").strip() or "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"SAFIRI_LOG_LEVEL={raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return raw.upper()
