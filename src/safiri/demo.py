"""``safiri demo``: start the suite, buy tickets twice (one payment fails), show what happened."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from .otlp import ReceivedSpan, SpanStore, running_receiver
from .suite import Suite, SuiteConfig

__all__ = ["print_waterfall", "run_demo"]

BUYERS = (
    ("Wanjiru", "254712345678", "succeeds"),
    ("Otieno", "254700000001", "fails: insufficient funds (test number)"),
)


def print_waterfall(spans: list[ReceivedSpan], out: Any = sys.stdout) -> None:
    """An indented tree: service, span, start offset and duration; errors marked."""
    if not spans:
        print("  (no spans received)", file=out)
        return
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    t0 = min(s.start_ns for s in spans)

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            offset = (span.start_ns - t0) / 1e6
            duration = (span.end_ns - span.start_ns) / 1e6
            mark = "  ✗ " + span.status_message if span.is_error else ""
            code = span.attributes.get("safiri.payment.result_code")
            note = f"  [ResultCode {code}]" if code not in (None, 0) else ""
            label = f"{'  ' * depth}{span.service}: {span.name}"
            print(f"  {label:<64} +{offset:8.1f} ms {duration:8.1f} ms{note}{mark}", file=out)
            walk(span.span_id, depth + 1)

    walk(None, 0)


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


async def _settled_trace(store: SpanStore, trace_id: str) -> list[ReceivedSpan]:
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        spans = store.trace(trace_id)
        if any(s.name in ("confirm_order", "release_seats") for s in spans):
            await asyncio.sleep(0.5)  # let the last batches of every exporter arrive
            return store.trace(trace_id)
        await asyncio.sleep(0.2)
    return store.trace(trace_id)


async def run_demo(args: argparse.Namespace) -> int:
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="safiri-demo-"))
    key = f"sk_demo_{secrets.token_urlsafe(12)}"
    async with running_receiver() as (store, otlp_url):
        config = SuiteConfig(
            api_keys=[key],
            otlp_endpoint=otlp_url,
            log_dir=log_dir,
            extra_env={"SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0.3"},
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
            failed_trace = None
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
                    failed_trace = trace_id
            if failed_trace:
                print(f"The failed payment's trace ({failed_trace}):")
                print_waterfall(await _settled_trace(store, failed_trace))
    print("\nStopped every process the demo started.")
    return 0
