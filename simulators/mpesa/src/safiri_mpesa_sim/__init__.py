"""A simulated M-Pesa (Daraja-like) provider: token, STK push, STK query and result callbacks.

    app = create_app(Settings.from_env(), Telemetry.setup("mpesa-simulator"))

Test phone numbers choose each payment's outcome (see ``outcomes.OUTCOMES_BY_PHONE``);
faults for chaos experiments are switched at run time through ``/simulator/faults``.
"""

from __future__ import annotations

from .app import create_app
from .callbacks import RetryPolicy
from .faults import CallbackFault, Faults, FaultState, InvalidFaults, Outage, StkQueryFault
from .inprocess import RunningSimulator, run_in_process
from .outcomes import NO_CALLBACK_PHONE, OUTCOMES_BY_PHONE, SUCCESS, Outcome, outcome_for
from .settings import Settings
from .stk_push import stk_password

__all__ = [
    "NO_CALLBACK_PHONE",
    "OUTCOMES_BY_PHONE",
    "SUCCESS",
    "CallbackFault",
    "FaultState",
    "Faults",
    "InvalidFaults",
    "Outage",
    "Outcome",
    "RetryPolicy",
    "RunningSimulator",
    "Settings",
    "StkQueryFault",
    "create_app",
    "outcome_for",
    "run_in_process",
    "stk_password",
]
