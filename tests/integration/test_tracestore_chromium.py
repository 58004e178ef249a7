"""The waterfall page in a real headless Chromium: every span and the failure are on it.

The screenshot is kept under pytest's tmp dir and copied to ``artifacts/trace-waterfall.png``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest

from safiri_tracestore import running_store
from tests.conftest import eventually
from tests.integration.test_tracestore_scenario import FAILURE, export_failed_purchase

# Chromium is installed by `scripts/deps.sh --test` (make test); without it this test fails.
pytestmark = pytest.mark.integration

ARTIFACT = Path(__file__).parents[2] / "artifacts" / "trace-waterfall.png"


# Debian's Chromium, headless, quiet: no sandbox (root in CI), no network beyond the page.
CHROMIUM = (
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


async def chromium(profile: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *CHROMIUM,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_the_failed_trace_page_renders_every_span_and_the_failure(tmp_path: Path) -> None:
    async with running_store(path=tmp_path / "t.sqlite3") as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)

        async def whole() -> bool:
            async with http.get(f"{url}/api/traces/{purchase.trace_id}") as response:
                return len((await response.json())["spans"]) == 15

        await eventually(whole, timeout=10, what="the purchase stored")
        page = f"{url}/traces/{purchase.trace_id}"
        dom = await chromium(tmp_path / "profile-dom", "--dump-dom", page)
        png = tmp_path / "trace-waterfall.png"
        await chromium(
            tmp_path / "profile-shot", f"--screenshot={png}", "--window-size=1280,900", page
        )
    for names in purchase.span_names.values():
        for name in names:
            assert f">{name}<" in dom.replace("&amp;", "&"), name
    assert FAILURE in dom
    assert f"root cause: payment → handle_callback: {FAILURE}" in dom
    for body in purchase.log_bodies[:3]:  # the fourth line carries only the order id
        assert body in dom
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(png, ARTIFACT)
