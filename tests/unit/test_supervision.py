"""The supervisor's restart back-off (a pure function) and what it says of a process that
failed (one short-lived process of its own, never a service)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from safiri_chaos.infrastructure import unclean_exit
from safiri_suite.suite import Slot, Suite, SuiteConfig, last_words
from tests.conftest import eventually

pytestmark = pytest.mark.unit


def test_a_process_that_keeps_dying_waits_longer_each_time_up_to_the_cap() -> None:
    suite = Suite(SuiteConfig(api_keys=["k"]))
    quick = [suite._next_backoff("payment", up_for=0.1) for _ in range(7)]
    assert quick == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # One that ran a while before it died starts again from the base wait.
    assert suite._next_backoff("payment", up_for=60.0) == 0.5
    assert suite._next_backoff("gateway", up_for=0.1) == 0.5  # each process has its own


LIFE_BEFORE = '{"level": "ERROR", "message": "an earlier life"}\nTraceback: an earlier crash\n'
RECORD = '{"level": "INFO", "message": "service starting"}'


async def test_a_process_that_fails_leaves_its_last_words_in_stderr_and_in_ps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replica that exits 1 (an exception nothing caught) says why: the traceback it wrote in
    this life, not its log records and not an earlier life's, goes to the supervisor's stderr
    and into its `safiri ps` entry, which the rolling-restart chaos action puts in its error."""
    suite = Suite(SuiteConfig(api_keys=["k"], log_dir=tmp_path))
    suite.slots["payment"] = Slot("payment", 0, 1)
    (tmp_path / "payment.log").write_text(LIFE_BEFORE)
    log = suite.log_path("payment")
    assert log is not None
    with log.open("ab") as out:
        suite._log_from["payment"] = out.tell()
        script = (
            f"print({RECORD!r}, flush=True)\n"
            "def shutdown():\n    raise RuntimeError('cleanup failed')\nshutdown()"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    suite.processes["payment"] = proc
    suite._started_at["payment"] = time.time()
    watcher = asyncio.create_task(suite._supervise("payment"))

    async def exited() -> list[dict[str, object]] | None:
        return suite._exits.get("payment")

    try:
        await eventually(exited, timeout=10, what="the process's exit")
    finally:
        suite._stopping = True  # no restart: this is not a real service
        await watcher
    [entry] = suite.entries()
    assert entry.last_exit == 1
    [ended] = entry.exits
    assert ended["pid"] == proc.pid and ended["code"] == 1
    said = str(ended["last_words"])
    assert said.splitlines()[0] == "Traceback (most recent call last):"
    assert said.splitlines()[-1] == "RuntimeError: cleanup failed"
    assert "service starting" not in said and "earlier" not in said
    err = capsys.readouterr().err
    assert f"payment (pid {proc.pid}) exited with 1" in err
    assert f"its last words:\n{said}" in err


def test_last_words_are_empty_when_a_life_wrote_records_only(tmp_path: Path) -> None:
    log = tmp_path / "ticketing.log"
    log.write_text(LIFE_BEFORE + RECORD + "\n" + RECORD + "\n")
    assert last_words(log, since=len(LIFE_BEFORE)) == ""
    assert last_words(log) == "Traceback: an earlier crash"  # from the start: the earlier life
    assert last_words(tmp_path / "missing.log") == ""


def test_the_rolling_restart_tells_an_unclean_exit_from_a_failed_start_after_it() -> None:
    clean = {"pid": 100, "code": 0, "after_s": 14.6}
    entry = {"role": "payment", "replica": 1, "last_exit": 0, "exits": [clean]}
    assert unclean_exit(entry, 100) is None
    crash = {"pid": 100, "code": 1, "after_s": 14.6, "last_words": "Traceback ...\nError: boom"}
    assert unclean_exit({**entry, "exits": [crash]}, 100) == (
        "payment-1 exited 1 on SIGTERM (a clean shutdown exits 0); its last words:\n"
        "Traceback ...\nError: boom"
    )
    # What the CI run of 2026-12-07 called "payment-1 exited 1 on SIGTERM": the SIGTERMed
    # process exited 0; the start after it lost a deadlock to the other replica's traffic.
    start = {"pid": 101, "code": 1, "after_s": 1.9, "last_words": "DeadlockDetectedError"}
    assert unclean_exit({**entry, "last_exit": 1, "exits": [clean, start]}, 100) == (
        "payment-1 stopped cleanly on SIGTERM, but the start after it failed: pid 101 exited 1"
        " after 1.9 s; its last words:\nDeadlockDetectedError"
    )
    earlier = {"pid": 99, "code": 1, "after_s": 0.5}  # before the SIGTERMed one: not its business
    assert unclean_exit({**entry, "exits": [earlier, clean]}, 100) is None
    assert unclean_exit({**entry, "exits": [clean]}, 7) == "payment-1: no record of how pid 7 ended"
