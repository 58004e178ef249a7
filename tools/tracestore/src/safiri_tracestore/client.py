"""The embedded store's query API, as a ``TraceSource`` for ``safiri trace``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from .model import TraceSummary, TraceView
from .params import RecentQuery
from .source import SourceUnavailable, TraceNotFound

__all__ = ["DEFAULT_STORE_URL", "StoreClient"]

DEFAULT_STORE_URL = "http://127.0.0.1:4318"


class StoreClient:
    holds_logs = True

    def __init__(self, session: aiohttp.ClientSession, base_url: str = DEFAULT_STORE_URL) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self._base}{path}"
        try:
            async with self._session.get(url, params=params) as response:
                if response.status == 404:
                    raise TraceNotFound((await response.json(content_type=None))["error"])
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise SourceUnavailable(f"{url} answered {response.status}: {text}")
                return await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            raise SourceUnavailable(f"cannot read the trace store at {self._base}: {exc}") from exc

    async def trace(self, trace_id: str) -> TraceView:
        return TraceView.from_dict(await self._get(f"/api/traces/{quote(trace_id, safe='')}"))

    async def order(self, order_id: str) -> TraceView:
        return TraceView.from_dict(await self._get(f"/api/orders/{quote(order_id, safe='')}/trace"))

    async def recent(self, query: RecentQuery) -> list[TraceSummary]:
        document = await self._get("/api/traces", query.to_params())
        return [TraceSummary.from_dict(t) for t in document["traces"]]
