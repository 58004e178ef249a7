"""Ticketing's internal HTTP API, called over a traced aiohttp session, its answers mapped
onto the public API's own models: what ticketing says is never passed through as it is."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

import aiohttp
from pydantic import BaseModel, ValidationError

from ..public.models import Order, OrderAccepted, TripList
from ..service_layer.ports import UpstreamReply, UpstreamTimeout, UpstreamUnavailable

__all__ = ["HttpTicketing"]


class HttpTicketing:
    """Turns every way ticketing can fail into ``UpstreamUnavailable`` or ``UpstreamTimeout``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def search_trips(self, params: Mapping[str, str]) -> UpstreamReply:
        reply = await self._call("GET", "/trips", params=params)
        return _public(reply, TripList, refusals={400})

    async def place_order(self, body: Mapping[str, Any], request_key: str) -> UpstreamReply:
        reply = await self._call(
            "POST", "/orders", body=body, headers={"Idempotency-Key": request_key}
        )
        return _public(reply, OrderAccepted, refusals={400, 409, 422})

    async def get_order(self, order_id: str) -> UpstreamReply:
        reply = await self._call("GET", f"/orders/{order_id}")
        return _public(reply, Order, refusals={404})

    async def check_alive(self) -> None:
        reply = await self._call("GET", "/healthz")
        if reply.status != 200:
            raise UpstreamUnavailable(f"ticketing /healthz answered {reply.status}")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamReply:
        try:
            async with self._session.request(
                method,
                self._base_url + path,
                params=params,
                json=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                raw = await response.read()
        # Before ClientError: aiohttp's ServerTimeoutError is both.
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{method} {path} took too long") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        if not (200 <= status < 300 or 400 <= status < 500):
            raise UpstreamUnavailable(f"{method} {path} answered {status}")
        try:
            document = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            raise UpstreamUnavailable(f"{method} {path} answered non-JSON") from exc
        if not isinstance(document, dict):
            raise UpstreamUnavailable(f"{method} {path} answered JSON that is not an object")
        return UpstreamReply(status, document)


def _public(
    reply: UpstreamReply, model: type[BaseModel], refusals: Collection[int]
) -> UpstreamReply:
    """Ticketing's answer as the public API gives it: a success in ``model``'s shape, a refusal
    among ``refusals`` as a problem's type, title and detail; anything else is ticketing
    failing (``UpstreamUnavailable``), never a shape the public document does not describe."""
    if 200 <= reply.status < 300:
        try:
            body = model.model_validate(reply.body).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            raise UpstreamUnavailable(
                f"ticketing answered a {model.__name__} the public API cannot give:"
                f" {exc.error_count()} errors"
            ) from None
        return UpstreamReply(reply.status, body)
    if reply.status not in refusals:
        raise UpstreamUnavailable(f"ticketing answered an unexpected {reply.status}")
    problem = {
        name: reply.body[name]
        for name in ("type", "title", "detail")
        if isinstance(reply.body.get(name), str)
    }
    if "type" not in problem or "title" not in problem:
        raise UpstreamUnavailable(f"ticketing answered {reply.status} without a problem")
    return UpstreamReply(reply.status, problem)
