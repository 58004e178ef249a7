"""Payment's two routes with the real app, a real PostgreSQL, a real RabbitMQ vhost, the real
flagd file provider and two real M-Pesa simulators on loopback (M-Pesa, and the backup with an
account of its own): the flag file's edit sends the next payment to the backup, which takes it
and calls back; the STK query for a payment M-Pesa took before the switch still goes to M-Pesa;
the flag's evaluation is an event on the payment's span; rows from before the migration are
M-Pesa's."""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_chaos.flagfile import set_default_variant
from safiri_mpesa_sim.faults import CallbackFault, Faults
from safiri_mpesa_sim.inprocess import RunningSimulator, run_in_process
from safiri_mpesa_sim.settings import Settings as SimulatorSettings
from safiri_payment.adapters.postgres import SCHEMA, apply_schema
from safiri_payment.bootstrap import create_app
from safiri_payment.entrypoints.keys import FLAGS, PAYMENTS
from safiri_payment.service_layer.handlers import PaymentRequest
from safiri_payment.settings import Settings
from safiri_telemetry import Telemetry, TelemetryConfig
from safiri_web import Secret
from tests.conftest import eventually, free_port, own_vhost, serving

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BACKUP_ACCOUNT = {
    "shortcode": "600100",
    "consumer_key": "backup-consumer-key",
    "consumer_secret": "backup-consumer-secret",
    "passkey": "backup-passkey",
}


def simulator_telemetry(name: str) -> Telemetry:
    return Telemetry.setup(
        name,
        install_global=False,
        env={"OTEL_SDK_DISABLED": "false"},
        span_processor=SimpleSpanProcessor(InMemorySpanExporter()),
        log_stream=io.StringIO(),
    )


@dataclass
class Routed:
    app: web.Application
    mpesa: RunningSimulator
    backup: RunningSimulator
    flags_file: Path
    database_url: str
    registry: CollectorRegistry

    async def pay(self) -> str:
        order = str(uuid.uuid4())
        await self.app[PAYMENTS].request_payment(
            PaymentRequest(str(uuid.uuid4()), order, 1200, "KES", "254712345678", "Nairobi")
        )
        return order

    async def row(self, order: str) -> asyncpg.Record:
        conn = await asyncpg.connect(self.database_url)
        try:
            row = await conn.fetchrow(
                "SELECT provider, status, checkout_request_id, receipt FROM payments"
                " WHERE order_id = $1::uuid",
                order,
            )
        finally:
            await conn.close()
        assert row is not None
        return row

    def sample(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples carrying ``labels`` (whatever other labels they have)."""
        return sum(
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )


@pytest_asyncio.fixture
async def routed(
    make_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[Routed]:
    database_url = await make_database(f"payment_routes_{uuid.uuid4().hex[:6]}")
    flags_file = tmp_path / "flags.json"
    shutil.copyfile(REPO / "deploy" / "flags" / "flags.json", flags_file)
    backup_settings = SimulatorSettings(
        callback_delay=0.1,
        shortcode=BACKUP_ACCOUNT["shortcode"],
        consumer_key=BACKUP_ACCOUNT["consumer_key"],
        consumer_secret=Secret(BACKUP_ACCOUNT["consumer_secret"]),
        passkey=Secret(BACKUP_ACCOUNT["passkey"]),
    )
    port = free_port()
    with own_vhost(f"safiri-test-routes-{uuid.uuid4().hex[:8]}") as amqp_url:
        async with (
            run_in_process(
                SimulatorSettings(callback_delay=0.1), simulator_telemetry("mpesa-simulator")
            ) as mpesa,
            run_in_process(backup_settings, simulator_telemetry("backup-simulator")) as backup,
        ):
            settings = Settings.from_env(
                {
                    "SAFIRI_PAYMENT_DATABASE_URL": database_url,
                    "SAFIRI_AMQP_URL": amqp_url,
                    "SAFIRI_PAYMENT_PORT": str(port),
                    "SAFIRI_MPESA_URL": mpesa.base_url,
                    "SAFIRI_BACKUP_PROVIDER_URL": backup.base_url,
                    "SAFIRI_BACKUP_SHORTCODE": BACKUP_ACCOUNT["shortcode"],
                    "SAFIRI_BACKUP_CONSUMER_KEY": BACKUP_ACCOUNT["consumer_key"],
                    "SAFIRI_BACKUP_CONSUMER_SECRET": BACKUP_ACCOUNT["consumer_secret"],
                    "SAFIRI_BACKUP_PASSKEY": BACKUP_ACCOUNT["passkey"],
                    "SAFIRI_FLAGS_FILE": str(flags_file),
                    # Reconciliation is the test's to run, after the route is switched.
                    "SAFIRI_RECONCILE_AFTER_SECONDS": "86400",
                }
            )
            config = TelemetryConfig.from_env("payment", "0.1.0", {"OTEL_SDK_DISABLED": "true"})
            registry = CollectorRegistry()
            app = create_app(settings, Telemetry(config, registry, None))
            async with serving(app, port=port):
                yield Routed(app, mpesa, backup, flags_file, database_url, registry)


def references(simulator: RunningSimulator) -> list[str]:
    return [t.push.account_reference for t in simulator.ledger.transactions()]


async def test_the_flag_switches_new_payments_and_queries_follow_the_record(
    routed: Routed, spans: InMemorySpanExporter
) -> None:
    # M-Pesa takes a payment and charges it, but its callback is lost.
    routed.mpesa.faults.set(Faults(callbacks=CallbackFault.LOST))
    before = await routed.pay()
    assert (await routed.row(before))["provider"] == "mpesa"
    assert references(routed.mpesa) == [before[:12]]

    set_default_variant(routed.flags_file, "payment-provider", "backup")

    async def switched() -> bool:
        return routed.app[FLAGS].string("payment-provider", "mpesa") == "backup"

    await eventually(switched, timeout=10, what="the flag file's edit to be read")
    spans.clear()
    after = await routed.pay()

    # The backup took it, under its own account, and called back: paid.
    async def settled() -> asyncpg.Record | None:
        row = await routed.row(after)
        return row if row["status"] == "SUCCEEDED" else None

    row = await eventually(settled, timeout=15, what="the backup's callback")
    assert row["provider"] == "backup"
    assert references(routed.backup) == [after[:12]]
    assert after[:12] not in references(routed.mpesa)
    assert routed.sample("payment_callbacks_total", provider="backup", outcome="applied") == 1
    assert routed.sample("payments_total", provider="backup", result_code="0") == 1

    # The evaluation is on the payment's span, and the push's span names the backup.
    [request] = [s for s in spans.get_finished_spans() if s.name == "request_payment"]
    [evaluation] = [
        e.attributes
        for e in request.events
        if e.name == "feature_flag.evaluation"
        and e.attributes is not None
        and e.attributes["feature_flag.key"] == "payment-provider"
    ]
    assert evaluation["feature_flag.result.variant"] == "backup"
    assert request.attributes is not None
    assert request.attributes["safiri.payment.provider"] == "backup"
    [push] = [s for s in spans.get_finished_spans() if s.name == "provider.stk_push"]
    assert push.attributes is not None and push.attributes["safiri.payment.provider"] == "backup"

    # The payment M-Pesa took before the switch is asked about at M-Pesa, not the backup.
    assert (await routed.row(before))["status"] == "AWAITING_CALLBACK"
    settled_count = await routed.app[PAYMENTS].reconcile(timedelta(0))
    assert settled_count == 1
    row = await routed.row(before)
    assert (row["provider"], row["status"]) == ("mpesa", "SUCCEEDED")
    assert routed.sample("payment_reconciliations_total", provider="mpesa", outcome="settled") == 1
    assert routed.sample("payment_reconciliations_total", provider="backup", outcome="error") == 0
    assert routed.sample("payments_total", provider="mpesa", result_code="0") == 1


async def test_rows_from_before_the_migration_are_mpesas(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    database_url = await make_database(f"payment_migrate_{uuid.uuid4().hex[:6]}")
    before_routes = SCHEMA.split("ALTER TABLE payments ADD COLUMN IF NOT EXISTS provider")[0]
    assert "provider" not in before_routes.split("CREATE TABLE IF NOT EXISTS outbox")[0]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(before_routes)
        await conn.execute(
            "INSERT INTO payments (payment_id, order_id, amount, currency, phone, status,"
            " callback_token_hash) VALUES ($1::uuid, $2::uuid, 500, 'KES', '2547', 'SUCCEEDED',"
            " 'h')",
            str(uuid.uuid4()),
            str(uuid.uuid4()),
        )
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await apply_schema(pool)
        await apply_schema(pool)  # again at the next start: nothing changes
        assert await pool.fetchval("SELECT array_agg(DISTINCT provider) FROM payments") == ["mpesa"]
    finally:
        await pool.close()
