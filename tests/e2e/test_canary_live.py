"""``safiri canary check`` on a real Prometheus scraping a real suite: promote, wait, roll back.

A suite of its own with two API keys; its flag file sends every order of the first key's client
to the provider-policy canary and none of the other's (the rollout weight at 0 here, so the
arms are exactly the two keys). The client reaches payment only as W3C baggage, set by the
gateway and carried through ticketing, its outbox and the message: a canary arm with payments
in it proves that path. A real Prometheus scrapes the suite every second.

1. Both keys buy healthy: the check over that window says promote (exit 0); with a minimum
   above what was sold it says wait (exit 2).
2. The canary key's purchases fail one in ten (the simulator's 254700000001, insufficient
   funds), the other key's none: the check over that window says roll back (exit 1).

The CLI runs as an operator runs it (``safiri canary check``, and its ``--json`` form), each
time ``--at`` the end of its phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from safiri.cli import main
from safiri.otlp import SpanStore, running_receiver
from safiri_chaos.prometheus import running_prometheus
from safiri_gateway.entrypoints.auth import client_id
from safiri_suite.suite import Suite, drop_databases, isolated_config
from tests.conftest import eventually, own_vhost

from .conftest import HOLD_TTL_SECONDS, Running

pytestmark = pytest.mark.e2e

HEALTHY = "254712345678"
INSUFFICIENT_FUNDS = "254700000001"
MIN_REQUESTS = 20


@dataclass
class Canary:
    canary: Running  # buys with the key whose client the flag sends to the canary
    baseline: Running  # buys with the other key
    prometheus: str
    trip_id: str


def _target(flags_file: Path, client: str) -> None:
    document = json.loads(flags_file.read_text())
    targeting = document["flags"]["provider-policy"]["targeting"]
    targeting["if"][0]["in"][1] = [client]
    targeting["if"][2]["fractional"] = [["canary", 0], ["baseline", 100]]
    flags_file.write_text(json.dumps(document))


@asynccontextmanager
async def _canary_suite(run_id: str, tmp: Path) -> AsyncIterator[Canary]:
    canary_key, baseline_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with own_vhost(f"safiri-test-{run_id}-canary") as amqp_url:
        async with running_receiver() as (_, otlp_url):
            config = isolated_config(
                api_key=baseline_key,
                database_prefix=f"safiri_test_{run_id}_canary",
                amqp_url=amqp_url,
                otlp_endpoint=otlp_url,
                log_dir=tmp / "logs",
                extra_env={
                    "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0.1",
                    "SAFIRI_HOLD_TTL_SECONDS": str(HOLD_TTL_SECONDS),
                    "SAFIRI_SEED_DAYS": "1",
                },
            )
            config.api_keys.append(canary_key)
            assert config.flags_file is not None
            _target(config.flags_file, client_id(canary_key))
            try:
                # Prometheus first, scraping payment's port: its first scrapes (seconds after it
                # is ready) happen while the suite starts.
                payment = {"payment": [f"127.0.0.1:{config.port('payment')}"]}
                async with (
                    running_prometheus(payment, [], tmp / "prometheus", "500ms") as url,
                    Suite(config) as suite,
                    aiohttp.ClientSession() as http,
                ):
                    canary = Running(suite, SpanStore(), canary_key, http)
                    baseline = Running(suite, SpanStore(), baseline_key, http)
                    setup = Canary(canary, baseline, url, await canary.add_trip(200))
                    # Prometheus scrapes its targets a few seconds after it is ready: the
                    # windows start once payment's zeros are in it.
                    await eventually(
                        lambda: _scraped_since_start(setup), timeout=20, what="payment scraped"
                    )
                    yield setup
            finally:
                await drop_databases(config)


async def _place(running: Running, trip_id: str, phone: str) -> None:
    status, body, _ = await running.place_order(trip_id, phone=phone, key=str(uuid.uuid4()))
    assert status == 202, body


async def _phase(setup: Canary, canary_phones: list[str], baseline_phones: list[str]) -> float:
    """Sell, wait until Prometheus has scraped every payment's outcome, return the time it
    has them (the end of the phase's window)."""
    await asyncio.sleep(1.0)  # the totals at rest open the window: no sale before its edge
    before = await _outcomes(setup)
    orders = [_place(setup.canary, setup.trip_id, p) for p in canary_phones]
    orders += [_place(setup.baseline, setup.trip_id, p) for p in baseline_phones]
    await asyncio.gather(*orders)
    expected = dict(before)
    for variant, phones in (("canary", canary_phones), ("baseline", baseline_phones)):
        for phone in phones:
            code = "1" if phone == INSUFFICIENT_FUNDS else "0"
            expected[(variant, code)] = expected.get((variant, code), 0) + 1

    async def scraped() -> bool:
        return await _outcomes(setup) == expected

    await eventually(scraped, timeout=20, what=f"Prometheus to count {expected}")
    # A second of the totals at rest: the window's edges are samples, not extrapolations.
    await asyncio.sleep(1.0)
    return time.time()


async def _scraped_since_start(setup: Canary) -> bool:
    async with setup.canary.http.get(
        f"{setup.prometheus}/api/v1/query",
        params={"query": 'count_over_time(up{job="safiri-payment"}[1m]) >= 2'},
    ) as response:
        return bool((await response.json())["data"]["result"])


async def _outcomes(setup: Canary) -> dict[tuple[str, str], float]:
    """Payments so far by arm and result code, as Prometheus has them (zeros left out)."""
    async with setup.canary.http.get(
        f"{setup.prometheus}/api/v1/query",
        params={"query": "sum by (variant, result_code) (payments_total) > 0"},
    ) as response:
        body = await response.json()
    return {
        (s["metric"]["variant"], s["metric"]["result_code"]): float(s["value"][1])
        for s in body["data"]["result"]
    }


async def _check(setup: Canary, since: float, at: float, *extra: str) -> tuple[int, dict[str, Any]]:
    """``safiri canary check`` as the operator runs it (in a thread: it runs its own loop),
    printed, then its ``--json`` form; its exit status and verdict."""
    window = f"{int((at - since) * 1000)}ms"  # from ``since`` on: nothing of the phase before
    argv = ["canary", "check", "--prometheus", setup.prometheus, "--window", window]
    argv += ["--at", str(at), "--min-requests", str(MIN_REQUESTS), *extra]

    def run(args: list[str]) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            main(args)
        return int(exited.value.code or 0), out.getvalue()

    code, text = await asyncio.to_thread(run, argv)
    print(text)  # the report, as the operator reads it
    json_code, document = await asyncio.to_thread(run, [*argv, "--json"])
    verdict: dict[str, Any] = json.loads(document)
    assert json_code == code == verdict["exit_code"], (code, json_code, verdict)
    return code, verdict


async def test_the_check_promotes_a_healthy_canary_waits_below_its_minimum_rolls_back_a_bad_one(
    run_id: str, tmp_path: Path
) -> None:
    async with _canary_suite(run_id, tmp_path) as setup:
        started = time.time() - 2  # payment's zeros were scraped by then
        # 1. Both arms healthy.
        healthy_end = await _phase(setup, [HEALTHY] * MIN_REQUESTS, [HEALTHY] * MIN_REQUESTS)
        code, verdict = await _check(setup, started, healthy_end)
        assert (code, verdict["decision"]) == (0, "promote"), verdict
        arms = verdict["arms"]
        assert arms["canary"]["payments"] >= MIN_REQUESTS, arms  # the client's baggage arrived
        assert arms["canary"]["failed"] == arms["baseline"]["failed"] == 0, arms
        code, verdict = await _check(setup, started, healthy_end, "--min-requests", "1000")
        assert (code, verdict["decision"]) == (2, "wait"), verdict

        # 2. The canary fails one payment in ten; the baseline none.
        canary_phones = ([INSUFFICIENT_FUNDS] + [HEALTHY] * 9) * 5
        failing_end = await _phase(setup, canary_phones, [HEALTHY] * 50)
        code, verdict = await _check(setup, healthy_end, failing_end)
        assert (code, verdict["decision"]) == (1, "rollback"), verdict
        canary = verdict["arms"]["canary"]
        # increase() extrapolates to the window's edges: near the figures sold, not exactly.
        assert canary["failed"] == pytest.approx(5, rel=0.15), canary
        assert canary["error_ratio"] == pytest.approx(0.1, abs=0.03), canary
        assert verdict["arms"]["baseline"]["failed"] == 0
        assert verdict["p_value"] < 0.05
