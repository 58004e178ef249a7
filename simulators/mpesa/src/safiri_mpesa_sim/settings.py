"""The simulator's settings, read once at start-up from ``SAFIRI_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from safiri_web import EnvReader, Secret

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Defaults are the well-known sandbox values the payment service also defaults to."""

    # Secret is a frozen dataclass, so one shared default instance is safe (hence the noqa).

    host: str = "127.0.0.1"
    port: int = 8090
    consumer_key: str = "safiri-sim-consumer-key"
    consumer_secret: Secret = Secret("safiri-sim-consumer-secret")  # noqa: RUF009
    shortcode: str = "174379"
    passkey: Secret = Secret("safiri-sim-passkey")  # noqa: RUF009
    callback_delay: float = 0.5
    admin_key: Secret = Secret("safiri-sim-admin")  # noqa: RUF009
    # The ledger's journal (JSON lines), replayed at start-up; None: memory only.
    ledger_path: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        r = EnvReader(env)
        shortcode = r.text("SAFIRI_MPESA_SHORTCODE", cls.shortcode)
        if not shortcode.isdigit():
            r.errors.append(f"SAFIRI_MPESA_SHORTCODE={shortcode!r} is not a numeric shortcode")
        settings = cls(
            host=r.text("SAFIRI_MPESA_SIM_HOST", cls.host),
            port=r.port("SAFIRI_MPESA_SIM_PORT", cls.port),
            consumer_key=r.text("SAFIRI_MPESA_CONSUMER_KEY", cls.consumer_key),
            consumer_secret=Secret(
                r.text("SAFIRI_MPESA_CONSUMER_SECRET", cls.consumer_secret.value)
            ),
            shortcode=shortcode,
            passkey=Secret(r.text("SAFIRI_MPESA_PASSKEY", cls.passkey.value)),
            callback_delay=r.number(
                "SAFIRI_MPESA_SIM_CALLBACK_DELAY", cls.callback_delay, low=0.0, high=3600.0
            ),
            admin_key=Secret(r.text("SAFIRI_MPESA_SIM_ADMIN_KEY", cls.admin_key.value)),
            ledger_path=Path(path)
            if (path := r.text("SAFIRI_MPESA_SIM_LEDGER_PATH", ""))
            else None,
        )
        r.check()
        return settings
