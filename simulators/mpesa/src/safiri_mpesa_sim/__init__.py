"""A simulated M-Pesa (Daraja-like) provider: token, STK push, STK query and result callbacks.

    app = create_app(Settings.from_env(), Telemetry.setup("mpesa-simulator"))

Test phone numbers choose each payment's outcome (see ``outcomes.OUTCOMES_BY_PHONE``).
"""

from __future__ import annotations

from .app import create_app
from .callbacks import RetryPolicy
from .inprocess import RunningSimulator, run_in_process
from .outcomes import NO_CALLBACK_PHONE, OUTCOMES_BY_PHONE, SUCCESS, Outcome, outcome_for
from .settings import Settings
from .stk_push import stk_password

__all__ = [
    "NO_CALLBACK_PHONE",
    "OUTCOMES_BY_PHONE",
    "SUCCESS",
    "Outcome",
    "RetryPolicy",
    "RunningSimulator",
    "Settings",
    "create_app",
    "outcome_for",
    "run_in_process",
    "stk_password",
]
