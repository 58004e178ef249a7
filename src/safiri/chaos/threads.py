"""Awaiting blocking work in a daemon thread, so an interrupted run does not wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["in_daemon_thread"]

T = TypeVar("T")


async def in_daemon_thread(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a daemon thread of its own; its result or exception, awaited.

    ``asyncio.to_thread`` uses the loop's executor, whose threads the process waits for at
    exit: a Ctrl-C would hang until a long probe gave up. A daemon thread dies with the
    process instead.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def resolve(result: T) -> None:
        if not done.cancelled():
            done.set_result(result)

    def fail(exc: BaseException) -> None:
        if not done.cancelled():
            done.set_exception(exc)

    def call() -> None:
        # After an interrupt the loop may be closed: nobody is waiting for the answer then.
        with contextlib.suppress(RuntimeError):
            try:
                result = func(*args)
            except BaseException as exc:  # handed to the awaiting task, whatever it is
                loop.call_soon_threadsafe(fail, exc)
            else:
                loop.call_soon_threadsafe(resolve, result)

    threading.Thread(target=call, name="chaos-experiment", daemon=True).start()
    return await done
