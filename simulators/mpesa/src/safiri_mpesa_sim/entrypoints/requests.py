"""What the Daraja endpoints and the admin API accept: one model per request.

The handlers validate with these models first (the shape: types, patterns, the fields Daraja
requires) and then check what a schema cannot (the password, a real timestamp, the shortcode);
the fuzz tests build the simulator's OpenAPI document from the same models. Field names and
their order are Daraja's: the first field in error names the Daraja error.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

__all__ = [
    "FaultSettings",
    "PullTransactionsRequest",
    "StkPushRequest",
    "StkQueryRequest",
    "TokenQuery",
]

# Daraja takes codes and numbers as JSON numbers or as strings.
Code = Annotated[StrictStr, Field(max_length=64)] | Annotated[StrictInt, Field(ge=0, lt=10**15)]
# An amount is whole shillings; more than a billion is no STK push (and would overflow the
# ledger's integer column and its float formatting).
Amount = (
    Annotated[StrictInt, Field(gt=0, lt=10**9)]
    | Annotated[StrictFloat, Field(gt=0, lt=10**9, multiple_of=1)]
    | Annotated[StrictStr, Field(pattern=r"^[0-9]{1,9}$")]
)
Msisdn = (
    Annotated[StrictStr, Field(pattern=r"^254[17][0-9]{8}$")]
    | Annotated[StrictInt, Field(ge=254100000000, le=254799999999)]
)
Timestamp = Annotated[StrictStr, Field(pattern=r"^[0-9]{14}$", description="YYYYMMDDHHmmss")]
Text = Annotated[StrictStr, Field(max_length=1000)]


class _Daraja(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TokenQuery(_Daraja):
    """``GET /oauth/v1/generate``'s query (the credentials come as HTTP Basic auth)."""

    grant_type: Literal["client_credentials"]


class _StkCredentials(_Daraja):
    BusinessShortCode: Code
    Timestamp: Timestamp
    Password: Text


class StkPushRequest(_StkCredentials):
    """``POST /mpesa/stkpush/v1/processrequest``: prompt a phone to pay."""

    TransactionType: Literal["CustomerPayBillOnline", "CustomerBuyGoodsOnline"]
    Amount: Amount
    PartyA: Code | None = None
    PartyB: Code | None = None
    PhoneNumber: Msisdn
    CallBackURL: Annotated[StrictStr, Field(pattern=r"^https?://", max_length=2000)]
    AccountReference: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    TransactionDesc: Text | None = None


class StkQueryRequest(_StkCredentials):
    """``POST /mpesa/stkpushquery/v1/query``: how did a push end?"""

    CheckoutRequestID: Text


DarajaTime = Annotated[
    StrictStr, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$")
]


class PullTransactionsRequest(_Daraja):
    """``POST /pulltransactions/v1/query``: the shortcode's payments in a window (EAT)."""

    ShortCode: Code
    StartDate: DarajaTime
    EndDate: DarajaTime
    OffSetValue: Code | None = None


Number = StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)]


class FaultSettings(BaseModel):
    """``PUT /simulator/faults``: every fault at once (one left out is healthy); the values'
    ranges and combinations are ``Faults``' to check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outage: Literal["off", "http_503", "refuse"] | None = None
    latency_seconds: Annotated[Number, Field(ge=0)] | None = None
    failure_ratio: Annotated[Number, Field(ge=0, le=1)] | None = None
    seed: StrictInt | None = None
    flap_period_seconds: Annotated[Number, Field(gt=0)] | None = None
    callbacks: Literal["normal", "never", "lost", "duplicate", "out_of_order"] | None = None
    stk_query: Literal["normal", "pending"] | None = None
