"""Long CLI runs (chaos, load) that Ctrl-C or SIGTERM cancel cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["until_signalled"]

_T = TypeVar("_T")


async def until_signalled(run: Coroutine[Any, Any, _T]) -> _T:
    """Await ``run``; SIGINT or SIGTERM cancels it, so its own clean-up (healing a fault,
    stopping Locust, stopping the run's suite) happens before the process exits."""
    task = asyncio.ensure_future(run)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
