"""A background job elected through a PostgreSQL advisory lock: with several replicas exactly
one runs it, and when the one that runs it is killed with SIGKILL another takes over within
seconds. Real PostgreSQL, real processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, Gauge

from safiri_messaging.single_active import SingleActive, lock_key
from tests.conftest import eventually

pytestmark = pytest.mark.integration

RETRY = 0.2


async def test_of_two_replicas_exactly_one_runs_the_job_until_it_stops(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_database("single_active")
    steps = {"a": 0, "b": 0}
    registry = CollectorRegistry()
    active = Gauge("job_active", "1 where this replica runs the job", ["job"], registry=registry)

    def counting(replica: str) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            steps[replica] += 1

        return step

    a = SingleActive("sweep", url, counting("a"), 0.02, active=active, retry_interval=RETRY)
    b = SingleActive("sweep", url, counting("b"), 0.02, retry_interval=RETRY)
    task_a = asyncio.create_task(a.run())
    await eventually(lambda: _true(a.holding), what="a to hold the lock")
    task_b = asyncio.create_task(b.run())
    await eventually(lambda: _true(steps["a"] >= 20), what="a to run the job")
    assert (steps["b"], b.holding) == (0, False)
    assert registry.get_sample_value("job_active", {"job": "sweep"}) == 1

    task_a.cancel()  # a graceful stop closes the lock's connection: b takes over
    with pytest.raises(asyncio.CancelledError):
        await task_a
    assert registry.get_sample_value("job_active", {"job": "sweep"}) == 0
    await eventually(lambda: _true(steps["b"] >= 5), timeout=5, what="b to take over")
    task_b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task_b


async def test_another_replica_takes_over_within_seconds_after_kill_9(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_database("single_active_kill")
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(
            f"""
            import asyncio
            from safiri_messaging.single_active import SingleActive

            async def step():
                print("step", flush=True)

            asyncio.run(SingleActive("reconcile", {url!r}, step, 0.05, retry_interval=0.2).run())
            """
        ),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 20)
        assert line == b"step\n"  # the other process holds the lock and runs the job
        steps: list[float] = []

        async def step() -> None:
            steps.append(time.monotonic())

        standby = SingleActive("reconcile", url, step, 0.05, retry_interval=RETRY)
        task = asyncio.create_task(standby.run())
        await asyncio.sleep(1.0)
        assert steps == [] and not standby.holding  # a standby while the holder lives

        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        await holder.wait()
        await eventually(lambda: _true(bool(steps)), timeout=10, what="the standby to take over")
        takeover = steps[0] - killed
        print(f"takeover after kill -9: {takeover:.2f} s")
        assert takeover < 3.0, f"took {takeover:.2f} s"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The lock is free again once the standby stopped: nothing is left holding it.
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("reconcile"))
        finally:
            await conn.close()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def _true(value: bool) -> bool | None:
    return True if value else None


async def test_an_unexpected_error_on_the_lock_connection_does_not_end_the_job(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    """Seen in CI while PostgreSQL restarted under a running suite: the lock connection's
    liveness check raised asyncpg's InternalClientError ("another operation is in progress"),
    which is none of the connection errors expected there; it ended the job's task, and the
    payment service reconciled nothing until it was restarted. Any error on the lock's
    connection now means the lock is lost: the job drops it and takes it again."""
    url = await make_database("single_active_error")
    steps: list[float] = []

    async def step() -> None:
        steps.append(time.monotonic())

    job = SingleActive("sweep", url, step, 0.02, retry_interval=RETRY)
    task = asyncio.create_task(job.run())
    try:
        await eventually(lambda: _true(job.holding), what="the job to hold the lock")
        conn = job._conn
        assert conn is not None

        class Broken:
            """The lock's connection, whose queries fail as asyncpg's did in CI."""

            async def fetchval(self, *args: object, **kwargs: object) -> object:
                raise asyncpg.exceptions._base.InternalClientError(
                    "cannot switch to state 12; another operation (2) is in progress"
                )

            def is_closed(self) -> bool:
                return conn.is_closed()

            def terminate(self) -> None:
                conn.terminate()

            async def close(self, timeout: float | None = None) -> None:
                await conn.close(timeout=timeout)

        broken = Broken()
        job._conn = broken  # type: ignore[assignment]
        await eventually(
            lambda: _true(job._conn is not broken), what="the broken connection dropped"
        )
        assert not task.done(), task
        broke = time.monotonic()
        await eventually(
            lambda: _true(job.holding and bool(steps) and steps[-1] > broke),
            timeout=5,
            what="the job to take the lock again and go on",
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
