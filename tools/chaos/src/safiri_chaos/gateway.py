"""A buyer on the public API that records every purchase in the Jepsen-style history."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import aiohttp

from .history import HistoryRecorder, Op

__all__ = ["HEALTHY_PHONE", "Buyer"]

HEALTHY_PHONE = "254712345678"  # the simulator's "success" test number


class Buyer:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        gateway_url: str,
        api_key: str,
        history: HistoryRecorder,
        request_timeout: float = 10.0,
    ) -> None:
        self._http = http
        self._api = f"{gateway_url.rstrip('/')}/api/v1"
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._history = history
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    async def trips_on_sale(self, days: int, enough: int | None = None) -> list[str]:
        """The trips of every route over the next ``days`` days that have a seat left (once
        ``enough`` are found, no more are looked for), through the public search by day."""
        found: list[str] = []
        for offset in range(1, days + 1):
            params = {"date": (date.today() + timedelta(days=offset)).isoformat()}
            async with self._http.get(
                f"{self._api}/trips", params=params, headers=self._auth, timeout=self._timeout
            ) as response:
                response.raise_for_status()
                body: dict[str, Any] = await response.json()
            found += [t["trip_id"] for t in body["trips"] if t["seats_available"] > 0]
            if enough is not None and len(found) >= enough:
                return found
        return found

    async def purchase(self, process: str, trip_id: str, phone: str = HEALTHY_PHONE) -> Op:
        """One purchase: invoke, then ok (202), fail (4xx) or unknown (timeout, 5xx, dropped)."""
        key = str(uuid.uuid4())
        record = self._history.record
        record("invoke", process, key, trip_id=trip_id)
        body = {"trip_id": trip_id, "seat_count": 1, "phone": phone}
        headers = {**self._auth, "Idempotency-Key": key}
        try:
            async with self._http.post(
                f"{self._api}/orders", json=body, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return record("unknown", process, key, trip_id=trip_id, error=repr(exc))
        try:
            answer: dict[str, Any] = json.loads(text) if text else {}
        except ValueError:  # not the gateway's JSON: a proxy's error page, say; keep its start
            answer = {"detail": " ".join(text.split())[:120]}
        if status == 202 and "order_id" in answer:
            return record("ok", process, key, trip_id=trip_id, order_id=answer["order_id"])
        error = str(answer.get("title") or answer.get("detail") or "")
        # 409 idempotency-key-in-flight: a first request with this key (one a load balancer
        # sent again after its replica died) may still take effect: not known, not refused.
        in_flight = status == 409 and str(answer.get("type", "")).endswith(
            "idempotency-key-in-flight"
        )
        if status >= 500 or status == 202 or in_flight:  # a 202 without its order: not known
            return record("unknown", process, key, trip_id=trip_id, status=status, error=error)
        return record("fail", process, key, trip_id=trip_id, status=status, error=error)

    async def order_status(self, order_id: str) -> str:
        async with self._http.get(
            f"{self._api}/orders/{order_id}", headers=self._auth, timeout=self._timeout
        ) as response:
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
        return str(body["status"])
