"""What the provider's callback endpoint accepts: Daraja's STK callback, as a model.

The handler validates with these models and nothing else, and the fuzz tests build the
endpoint's OpenAPI document from their JSON Schemas, so what is documented is what is checked.
Field names are Daraja's own.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..domain.payments import ProviderOutcome

__all__ = ["CallbackQuery", "StkCallbackBody"]


def _storable(value: str) -> str:
    # PostgreSQL's text cannot hold NUL: let through, it fails the update with a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    return value


Text = Annotated[str, Field(max_length=1000), AfterValidator(_storable)]
# result_code is a PostgreSQL integer: a larger code would fail the update with a 500.
ResultCode = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class _Daraja(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetadataItem(_Daraja):
    Name: str
    Value: Text | int | float | None = None


class Metadata(_Daraja):
    Item: list[MetadataItem] = []


class StkCallback(_Daraja):
    MerchantRequestID: str | None = None
    CheckoutRequestID: Text
    ResultCode: ResultCode
    ResultDesc: Text
    CallbackMetadata: Metadata | None = None


class _CallbackEnvelope(_Daraja):
    stkCallback: StkCallback


class StkCallbackBody(_Daraja):
    """``POST /callbacks/mpesa/{payment_id}``'s body: ``{"Body": {"stkCallback": {...}}}``."""

    Body: _CallbackEnvelope

    @property
    def checkout_request_id(self) -> str:
        return self.Body.stkCallback.CheckoutRequestID

    def outcome(self) -> ProviderOutcome:
        callback = self.Body.stkCallback
        items = callback.CallbackMetadata.Item if callback.CallbackMetadata else []
        receipts = [str(i.Value) for i in items if i.Name == "MpesaReceiptNumber"]
        # The last one wins, as it did when the items were read by hand.
        receipt = receipts[-1] if receipts else None
        return ProviderOutcome(callback.ResultCode, callback.ResultDesc, receipt)


class CallbackQuery(BaseModel):
    """The callback URL's query: the token payment gave the provider with the push."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    token: str = ""
