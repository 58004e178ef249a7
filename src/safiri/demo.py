"""``safiri demo``: start the suite, buy tickets twice (one payment fails), show what happened."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from safiri_suite.suite import Suite, SuiteConfig
from safiri_tracestore import running_store
from safiri_tracestore.client import StoreClient
from safiri_tracestore.model import TraceView
from safiri_tracestore.source import TraceNotFound
from safiri_tracestore.terminal import render_trace

__all__ = ["run_demo"]

BUYERS = (
    ("Wanjiru", "254712345678", "succeeds"),
    ("Otieno", "254700000001", "fails: insufficient funds (test number)"),
)


async def _buy(
    http: aiohttp.ClientSession, base: str, key: str, trip_id: str, phone: str
) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": str(uuid.uuid4())}
    body = {"trip_id": trip_id, "seat_count": 2, "phone": phone}
    async with http.post(f"{base}/orders", json=body, headers=headers) as response:
        data = await response.json(content_type=None)
        if response.status != 202:
            raise RuntimeError(f"order refused: {response.status} {data}")
        return data["order_id"], response.headers["X-Trace-Id"]


async def _final(http: aiohttp.ClientSession, base: str, key: str, order_id: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with http.get(
            f"{base}/orders/{order_id}", headers={"Authorization": f"Bearer {key}"}
        ) as response:
            order: dict[str, Any] = await response.json()
        if order["status"] != "PENDING_PAYMENT" or asyncio.get_running_loop().time() > deadline:
            return order
        await asyncio.sleep(0.2)


async def _settled_view(store: StoreClient, order_id: str) -> TraceView:
    """The order's trace once the payment result reached ticketing and logs have arrived."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        try:
            view = await store.order(order_id)
        except TraceNotFound:
            view = None
        settled = view is not None and any(
            s.name in ("confirm_order", "release_seats") for s in view.spans
        )
        if view is not None and (settled or asyncio.get_running_loop().time() > deadline):
            await asyncio.sleep(0.5)  # the last batches of every exporter
            return await store.order(order_id)
        await asyncio.sleep(0.2)


async def run_demo(args: argparse.Namespace) -> int:
    # Kept after the demo (var/ is the suite's own, git-ignored), so its logs and traces can be
    # read again: the last lines printed say how.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = args.log_dir or Path("var/demo") / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    key = f"sk_demo_{secrets.token_urlsafe(12)}"
    async with running_store(port=0, path=log_dir / "traces.sqlite3") as otlp_url:
        config = SuiteConfig(
            api_keys=[key],
            otlp_endpoint=otlp_url,
            log_dir=log_dir,
            extra_env={"SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0.3"},
            # The same databases as `make up`: the same ledger, so `safiri chaos check` agrees.
            ledger_path=Path("var/mpesa-ledger.jsonl"),
        )
        print(f"Starting Safiri (logs in {log_dir}) ...", flush=True)
        async with Suite(config), aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{config.gateway_port}/api/v1"
            day = (date.today() + timedelta(days=1)).isoformat()
            async with http.get(
                f"{base}/trips",
                params={"origin": "Nairobi", "destination": "Mombasa", "date": day},
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                trips = (await response.json())["trips"]
            trip = max(trips, key=lambda t: t["seats_available"])
            print(
                f"Trip {trip['origin']} → {trip['destination']} departing {trip['departs_at']},"
                f" {trip['seats_available']} seats at KES {trip['fare']['amount']}\n"
            )
            orders = []
            for name, phone, expect in BUYERS:
                order_id, trace_id = await _buy(http, base, key, trip["trip_id"], phone)
                orders.append((name, expect, order_id, trace_id))
            failed_order = None
            for name, expect, order_id, trace_id in orders:
                order = await _final(http, base, key, order_id)
                detail = order.get("failure_reason") or ", ".join(
                    f"seat {t['seat_no']}" for t in order.get("tickets", [])
                )
                print(
                    f"{name:8} ({expect})\n  order {order_id}: {order['status']} — {detail}"
                    f"\n  trace {trace_id}\n"
                )
                if order["status"] == "PAYMENT_FAILED":
                    failed_order = order_id
            if failed_order:
                print(f"The failed payment, as `safiri trace {failed_order}` shows it:\n")
                view = await _settled_view(StoreClient(http, otlp_url), failed_order)
                print(render_trace(view, colour=sys.stdout.isatty()))
    store = log_dir / "traces.sqlite3"
    print(
        "\nStopped every process the demo started. Its logs (one file per service) and traces"
        f" are kept in {log_dir}; to browse the traces again:\n"
        f"  SAFIRI_TRACE_STORE_PATH={store} .venv/bin/python -m safiri_tracestore"
        "   # then http://127.0.0.1:4318/ or `.venv/bin/safiri trace ORDER_ID`"
    )
    return 0
