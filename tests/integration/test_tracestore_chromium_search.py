"""The trace UI searched in a real headless Chromium, driven over the DevTools protocol.

The browser opens the index, the order id is typed into the search box and Enter pressed,
and the page it lands on shows the order's trace: the root cause and the log line's fields.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from safiri_tracestore import running_store
from tests.conftest import eventually
from tests.integration.test_tracestore_chromium import CHROMIUM
from tests.integration.test_tracestore_scenario import FAILURE, export_failed_purchase

# Chromium is installed by `scripts/deps.sh --test` (make test); without it this test fails.
pytestmark = pytest.mark.integration


class Page:
    """One browser tab: DevTools commands in, their results out (events are skipped)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = json.loads((await self._ws.receive(timeout=30)).data)
            if message.get("id") == ident:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def js(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    async def loaded(self, path: str) -> None:
        async def there() -> bool:
            state = await self.js("[location.pathname, document.readyState]")
            return bool(state == [path, "complete"])

        await eventually(there, timeout=15, what=f"the browser at {path}")

    async def type(self, text: str) -> None:
        await self.call("Input.insertText", text=text)

    async def press_enter(self) -> None:
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **key)


@asynccontextmanager
async def browser(profile: Path, http: aiohttp.ClientSession) -> AsyncIterator[Page]:
    process = await asyncio.create_subprocess_exec(
        *CHROMIUM,
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"

        async def port() -> str | None:
            lines = port_file.read_text().split() if port_file.exists() else []
            return lines[0] if lines else None

        devtools = f"http://127.0.0.1:{await eventually(port, timeout=30, what='DevTools')}"
        async with http.get(f"{devtools}/json/list") as response:
            targets = await response.json()
        tab = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            yield Page(ws)
    finally:
        process.terminate()
        await process.wait()


async def test_an_order_id_typed_into_the_search_opens_its_trace(tmp_path: Path) -> None:
    async with (
        running_store(path=tmp_path / "t.sqlite3") as url,
        aiohttp.ClientSession() as http,
    ):
        purchase = await export_failed_purchase(url)

        async def whole() -> bool:
            async with http.get(f"{url}/api/orders/{purchase.order_id}/trace") as response:
                document = await response.json() if response.status == 200 else {}
            return len(document.get("spans", [])) == 15 and len(document["logs"]) == 4

        await eventually(whole, timeout=10, what="the purchase stored")
        async with browser(tmp_path / "profile", http) as page:
            await page.call("Page.navigate", url=f"{url}/")
            await page.loaded("/")
            order_link = f'a[href="/orders/{purchase.order_id}"]'
            assert await page.js(f"document.querySelectorAll('{order_link}').length") == 1
            await page.js("document.querySelector('input[name=q]').focus()")
            await page.type(purchase.order_id)
            await page.press_enter()
            await page.loaded(f"/orders/{purchase.order_id}")
            text = await page.js("document.body.innerText")
    assert f"root cause: payment → handle_callback: {FAILURE}" in text
    assert "payment failed: ResultCode 1037" in text
    assert "result_code=1037" in text and 'phone="2547****0037"' in text
    assert "✗ failed" in text  # the marks are explained on the page
