"""Payment's settings, read once at start-up from ``SAFIRI_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from safiri_flags import DEFAULT_FLAGS_FILE, flag_file_problem
from safiri_web import EnvReader, Secret

__all__ = ["BACKUP_VARIABLES", "BackupProvider", "Settings"]

# The backup route's provider: a second Daraja-speaking account (a backup paybill, another
# mobile-money provider). Optional: without its URL, payment has the M-Pesa route only.
BACKUP_VARIABLES = (
    "SAFIRI_BACKUP_PROVIDER_URL",
    "SAFIRI_BACKUP_CONSUMER_KEY",
    "SAFIRI_BACKUP_CONSUMER_SECRET",
    "SAFIRI_BACKUP_SHORTCODE",
    "SAFIRI_BACKUP_PASSKEY",
)


@dataclass(frozen=True)
class BackupProvider:
    url: str
    consumer_key: Secret
    consumer_secret: Secret
    shortcode: str
    passkey: Secret

    @classmethod
    def from_env(cls, r: EnvReader, primary_url: str) -> BackupProvider | None:
        given = [name for name in BACKUP_VARIABLES if r.env.get(name, "").strip()]
        if not given:
            return None
        if "SAFIRI_BACKUP_PROVIDER_URL" not in given:
            r.errors.append(
                f"{', '.join(given)} set without SAFIRI_BACKUP_PROVIDER_URL (the backup route's"
                " provider); set it too, or unset them for no backup route"
            )
            return None
        missing = [name for name in BACKUP_VARIABLES if name not in given]
        if missing:
            # No defaults: the backup is another account, never M-Pesa's sandbox credentials.
            r.errors.append(f"SAFIRI_BACKUP_PROVIDER_URL is set but {', '.join(missing)} not")
        url = r.url("SAFIRI_BACKUP_PROVIDER_URL", "", ("http", "https")).rstrip("/")
        if url == primary_url.rstrip("/"):
            r.errors.append(
                "SAFIRI_BACKUP_PROVIDER_URL is SAFIRI_MPESA_URL: the backup route must be"
                " another provider"
            )
        shortcode = r.text("SAFIRI_BACKUP_SHORTCODE", "")
        if shortcode and not shortcode.isdigit():
            r.errors.append(f"SAFIRI_BACKUP_SHORTCODE={shortcode!r} is not a numeric shortcode")
        return cls(
            url=url,
            consumer_key=Secret(r.text("SAFIRI_BACKUP_CONSUMER_KEY", "")),
            consumer_secret=Secret(r.text("SAFIRI_BACKUP_CONSUMER_SECRET", "")),
            shortcode=shortcode,
            passkey=Secret(r.text("SAFIRI_BACKUP_PASSKEY", "")),
        )


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    database_url: str
    amqp_url: str
    callback_base_url: str
    mpesa_url: str
    mpesa_consumer_key: Secret
    mpesa_consumer_secret: Secret
    mpesa_shortcode: str
    mpesa_passkey: Secret
    provider_timeout_seconds: float
    prefetch: int
    db_pool_max: int
    queue_poll_seconds: float = 5.0
    reconcile_after_seconds: float = 60.0
    reconcile_interval_seconds: float = 10.0
    breaker_threshold: int = 5
    breaker_reset_seconds: float = 15.0
    retry_attempts: int = 3
    abandon_after_seconds: float = 600.0
    # The feature-flag file in flagd's format (re-read within seconds of an edit).
    flags_file: str = DEFAULT_FLAGS_FILE
    # The backup route (None: none; a flag naming it falls back to M-Pesa, counted).
    backup: BackupProvider | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        r = EnvReader(env)
        port = r.port("SAFIRI_PAYMENT_PORT", 8082)
        sim_port = r.port("SAFIRI_MPESA_SIM_PORT", 8090)
        mpesa_url = r.url("SAFIRI_MPESA_URL", f"http://127.0.0.1:{sim_port}", ("http", "https"))
        settings = cls(
            host=r.text("SAFIRI_PAYMENT_HOST", "127.0.0.1"),
            port=port,
            database_url=r.url(
                "SAFIRI_PAYMENT_DATABASE_URL",
                "postgresql://postgres@127.0.0.1:5432/safiri_payment",
                ("postgresql", "postgres"),
            ),
            amqp_url=r.url("SAFIRI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", ("amqp",)),
            callback_base_url=r.url(
                "SAFIRI_PAYMENT_CALLBACK_BASE_URL", f"http://127.0.0.1:{port}", ("http", "https")
            ).rstrip("/"),
            mpesa_url=mpesa_url,
            mpesa_consumer_key=Secret(
                r.text("SAFIRI_MPESA_CONSUMER_KEY", "safiri-sim-consumer-key")
            ),
            mpesa_consumer_secret=Secret(
                r.text("SAFIRI_MPESA_CONSUMER_SECRET", "safiri-sim-consumer-secret")
            ),
            mpesa_shortcode=r.text("SAFIRI_MPESA_SHORTCODE", "174379"),
            mpesa_passkey=Secret(r.text("SAFIRI_MPESA_PASSKEY", "safiri-sim-passkey")),
            provider_timeout_seconds=r.number(
                "SAFIRI_PROVIDER_TIMEOUT_SECONDS", 5.0, low=0.1, high=120.0
            ),
            prefetch=r.integer("SAFIRI_PAYMENT_PREFETCH", 32, low=1, high=1000),
            db_pool_max=r.integer("SAFIRI_PAYMENT_DB_POOL_MAX", 10, low=2, high=200),
            queue_poll_seconds=r.number("SAFIRI_QUEUE_POLL_SECONDS", 5.0, low=0.05, high=3600.0),
            # A payment the provider took but has not called back about for this long is
            # asked about (STK query), and again every time it is this overdue.
            reconcile_after_seconds=r.number(
                "SAFIRI_RECONCILE_AFTER_SECONDS", 60.0, low=0.1, high=86400.0
            ),
            reconcile_interval_seconds=r.number(
                "SAFIRI_RECONCILE_INTERVAL_SECONDS", 10.0, low=0.05, high=3600.0
            ),
            breaker_threshold=r.integer("SAFIRI_PROVIDER_BREAKER_THRESHOLD", 5, low=1, high=1000),
            breaker_reset_seconds=r.number(
                "SAFIRI_PROVIDER_BREAKER_RESET_SECONDS", 15.0, low=0.1, high=3600.0
            ),
            retry_attempts=r.integer("SAFIRI_PROVIDER_RETRY_ATTEMPTS", 3, low=1, high=10),
            # A push whose answer was never recorded, and whose charge the provider's
            # transaction list still does not show this long after, failed (its prompt expired).
            abandon_after_seconds=r.number(
                "SAFIRI_PAYMENT_ABANDON_AFTER_SECONDS", 600.0, low=1.0, high=86400.0
            ),
            flags_file=r.text("SAFIRI_FLAGS_FILE", DEFAULT_FLAGS_FILE),
            backup=BackupProvider.from_env(r, mpesa_url),
        )
        if problem := flag_file_problem(settings.flags_file):
            r.errors.append(f"SAFIRI_FLAGS_FILE: {problem}")
        r.check()
        return settings
