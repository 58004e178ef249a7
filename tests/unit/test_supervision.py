"""The supervisor's restart back-off: a pure function, no process started."""

from __future__ import annotations

import pytest

from safiri_suite.suite import Suite, SuiteConfig

pytestmark = pytest.mark.unit


def test_a_process_that_keeps_dying_waits_longer_each_time_up_to_the_cap() -> None:
    suite = Suite(SuiteConfig(api_keys=["k"]))
    quick = [suite._next_backoff("payment", up_for=0.1) for _ in range(7)]
    assert quick == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # One that ran a while before it died starts again from the base wait.
    assert suite._next_backoff("payment", up_for=60.0) == 0.5
    assert suite._next_backoff("gateway", up_for=0.1) == 0.5  # each process has its own
