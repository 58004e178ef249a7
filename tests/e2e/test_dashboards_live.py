"""Every dashboard panel returns data, and every rule expression evaluates, on a real Prometheus
scraping the running suite under a short load with faults injected through the simulator."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
import pytest_asyncio
import yaml

from safiri_messaging import EVENTS_EXCHANGE
from tests.conftest import eventually
from tests.deploy.prometheus_server import running_prometheus
from tests.deploy.test_dashboards import QUERIES, evaluable

from .conftest import Running
from .live_prometheus import RULES, alerts, query, scrape_config, write_fast_rules
from .test_alerts_live import buyers, set_faults

pytestmark = pytest.mark.e2e

FAILING = ("254700000001", "254700001032", "254700001037", "254700002001")


@pytest_asyncio.fixture(scope="module")
async def loaded(running: Running, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A Prometheus that has watched healthy sales, failures of every kind and an outage."""
    tmp = tmp_path_factory.mktemp("prometheus-live")
    rules = write_fast_rules(tmp)
    async with running_prometheus(scrape_config(running), rules, tmp) as url:
        http = running.http
        trip = await running.next_trip("Kisumu", "Nairobi")
        for phone in FAILING:
            status, _, _ = await running.place_order(trip["trip_id"], phone=phone)
            assert status == 202
        await forged_callback(running)
        await poison(running)
        async with buyers(running) as answered:
            await eventually(lambda: _at_least(answered, 15), what="healthy purchases")
            await set_faults(http, running, outage="http_503")
            try:
                await eventually(
                    lambda: _firing(running, url),
                    timeout=60,
                    interval=0.3,
                    what="the provider alert to fire",
                )
            finally:
                await set_faults(http, running)
            target = answered.count(202) + 10
            await eventually(lambda: _at_least(answered, target), what="purchases after recovery")
        await asyncio.sleep(2)  # two more scrapes of the settled state
        yield url


async def forged_callback(running: Running) -> None:
    async with running.http.post(
        running.url("payment", f"/callbacks/mpesa/{uuid.uuid4()}?token=forged"),
        json={
            "Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": 0, "ResultDesc": "ok"}}
        },
    ) as response:
        assert response.status == 403


async def poison(running: Running) -> None:
    connection = await aio_pika.connect(running.config.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(b"not json", message_id=str(uuid.uuid4())),
            routing_key="payment.requested",
            mandatory=True,
        )


async def _at_least(answered: list[int], n: int) -> bool:
    return answered.count(202) >= n


async def _firing(running: Running, url: str) -> bool:
    found = await alerts(running.http, url, "SafiriPaymentProviderFailing")
    return bool(found) and found[0]["state"] == "firing"


@pytest.mark.parametrize(("ident", "expr", "variables"), QUERIES, ids=[q[0] for q in QUERIES])
async def test_every_dashboard_panel_returns_data(
    running: Running, loaded: str, ident: str, expr: str, variables: list[str]
) -> None:
    result = await query(running.http, loaded, evaluable(expr, variables))
    assert result, f"{ident}: no data for {expr}"
    print(f"\n{ident}: {len(result)} series")


def _rule_expressions() -> list[tuple[str, str]]:
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((rule.get("alert") or rule["record"], rule["expr"]))
    return out


@pytest.mark.parametrize(
    ("name", "expr"), _rule_expressions(), ids=[r[0] for r in _rule_expressions()]
)
async def test_every_rule_expression_evaluates_on_real_data(
    running: Running, loaded: str, name: str, expr: str
) -> None:
    await query(running.http, loaded, expr)  # asserts status success


async def test_the_recording_rules_produce_series(running: Running, loaded: str) -> None:
    for record in (
        "safiri:http_server_requests:rate5m",
        "safiri:payment_success_ratio:rate5m",
        "safiri:tickets_sold:rate1m",
        "safiri:purchase_errors:ratio_rate5m",
    ):
        assert await query(running.http, loaded, record), record
