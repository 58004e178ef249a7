"""Daraja (M-Pesa) client: OAuth token, STK push, STK query. Works against the simulator or the
real API."""

from __future__ import annotations

import asyncio
import base64
import copy
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from loguru import logger
from opentelemetry import baggage
from opentelemetry import context as otel_context

from safiri_telemetry import outside_http_step

from ..domain.payments import ProviderOutcome
from ..service_layer.provider import (
    Charge,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    StkPush,
)

__all__ = ["DarajaClient"]

_EAT = timedelta(hours=3)
# Daraja answers an STK query for a push the customer has not finished with HTTP 500 and this.
_STILL_PROCESSING = "500.001.1001"


class _StillProcessing(Exception):
    pass


@dataclass
class _AccessToken:
    """The OAuth token, shared by a client and its ``with_timeout`` siblings."""

    value: str | None = None
    expires: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class DarajaClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        shortcode: str,
        passkey: str,
        timeout: float,
        *,
        name: str = "mpesa",  # the route it serves: mpesa, or backup (another Daraja account)
    ) -> None:
        self.name = name
        self._session = session
        self._base = base_url.rstrip("/")
        self._basic = {"Authorization": aiohttp.encode_basic_auth(consumer_key, consumer_secret)}
        self._shortcode = shortcode
        self._passkey = passkey
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._token = _AccessToken()

    def with_timeout(self, timeout: float) -> DarajaClient:
        """The same client (session, account, access token) with another per-request time
        limit: the provider-policy canary's (its arm's calls give up sooner)."""
        sibling = copy.copy(self)
        sibling._timeout = aiohttp.ClientTimeout(total=timeout)
        return sibling

    async def _access_token(self) -> str:
        token = self._token
        async with token.lock:
            if token.value is None or time.monotonic() >= token.expires:
                # Fetched on the way to a step's call (an STK push): not that call.
                with outside_http_step():
                    data = await self._call(
                        "GET",
                        "/oauth/v1/generate?grant_type=client_credentials",
                        headers=self._basic,
                    )
                token.value = str(data["access_token"])
                # Renew a minute early so a request never carries a token about to lapse.
                token.expires = time.monotonic() + float(str(data["expires_in"])) - 60
            return token.value

    async def _bearer(self) -> dict[str, str]:
        try:
            token = await self._access_token()
        except ProviderError as exc:
            # Without a token nothing was asked of the provider yet: safe to try again.
            raise ProviderUnreachable(f"no access token: {exc}") from exc
        return {"Authorization": f"Bearer {token}"}

    def _credentials(self) -> dict[str, str]:
        timestamp = (datetime.now(UTC) + _EAT).strftime("%Y%m%d%H%M%S")
        password = base64.b64encode(
            f"{self._shortcode}{self._passkey}{timestamp}".encode()
        ).decode()
        return {"BusinessShortCode": self._shortcode, "Password": password, "Timestamp": timestamp}

    async def stk_push(self, request: StkPush) -> str:
        headers = await self._bearer()
        body = {
            **self._credentials(),
            "TransactionType": "CustomerPayBillOnline",
            "Amount": request.amount,
            "PartyA": request.phone,
            "PartyB": self._shortcode,
            "PhoneNumber": request.phone,
            "CallBackURL": request.callback_url,
            "AccountReference": request.account_reference,
            "TransactionDesc": request.description,
        }
        data = await self._call(
            "POST",
            "/mpesa/stkpush/v1/processrequest",
            json=body,
            headers=headers,
        )
        if str(data.get("ResponseCode")) != "0":
            raise ProviderRejected(
                str(data.get("ResponseCode")), str(data.get("ResponseDescription"))
            )
        return str(data["CheckoutRequestID"])

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        headers = await self._bearer()
        body = {**self._credentials(), "CheckoutRequestID": checkout_request_id}
        try:
            data = await self._call(
                "POST", "/mpesa/stkpushquery/v1/query", json=body, headers=headers
            )
        except _StillProcessing:
            return None
        if str(data.get("ResponseCode")) != "0" or "ResultCode" not in data:
            raise ProviderUnavailable(f"unexpected STK query answer: {data.get('ResponseCode')}")
        try:
            code = int(str(data["ResultCode"]))
        except ValueError as exc:
            raise ProviderUnavailable(f"STK query: bad ResultCode {data['ResultCode']!r}") from exc
        return ProviderOutcome(code, str(data.get("ResultDesc", "")))

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        """Daraja's Pull Transactions API (times in Nairobi's zone, as Daraja keeps them)."""
        headers = await self._bearer()
        body = {
            "ShortCode": self._shortcode,
            "StartDate": (since + _EAT).strftime("%Y-%m-%d %H:%M:%S"),
            "EndDate": (until + _EAT).strftime("%Y-%m-%d %H:%M:%S"),
            "OffSetValue": "0",
        }
        data = await self._call("POST", "/pulltransactions/v1/query", json=body, headers=headers)
        if str(data.get("ResponseCode")) != "1000":
            raise ProviderUnavailable(f"pull transactions answered {data.get('ResponseCode')}")
        pages = data.get("Response")
        found: list[Charge] = []
        for page in pages if isinstance(pages, list) else []:
            for row in page if isinstance(page, list) else []:
                charge = _charge(row)
                if charge is None:
                    # One bad row must not hide the good ones, nor count as an outage that
                    # opens the breaker for every payment: it is reported and passed over.
                    logger.bind(row=repr(row)[:300]).warning(
                        "pull transactions: malformed row skipped"
                    )
                else:
                    found.append(charge)
        return found

    async def _call(self, method: str, path: str, **kwargs: object) -> dict[str, object]:
        # The trace goes on to the provider, our baggage (the client, the canary arm) does not:
        # it is for Safiri's own services, not a third party's.
        unbagged = otel_context.attach(baggage.clear())
        try:
            return await self._request(method, path, **kwargs)
        finally:
            otel_context.detach(unbagged)

    async def _request(self, method: str, path: str, **kwargs: object) -> dict[str, object]:
        try:
            async with self._session.request(
                method,
                self._base + path,
                timeout=self._timeout,
                **kwargs,  # type: ignore[arg-type]
            ) as response:
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = {}
                if isinstance(data, dict) and data.get("errorCode") == _STILL_PROCESSING:
                    raise _StillProcessing()
                if response.status >= 500:
                    raise ProviderUnavailable(f"provider answered {response.status}")
                if response.status >= 400:
                    raise ProviderRejected(
                        str(data.get("errorCode", response.status)),
                        str(data.get("errorMessage", response.reason)),
                    )
                if not isinstance(data, dict):
                    raise ProviderUnavailable("provider answered with a non-object body")
                return data
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"no answer from the provider in {self._timeout.total} s"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ProviderUnreachable(f"cannot reach the provider: {exc}") from exc
        except aiohttp.ClientError as exc:
            # The request may have been sent: its outcome is unknown, not failed.
            raise ProviderTimeout(f"provider connection broke: {exc!r}") from exc


def _charge(row: object) -> Charge | None:
    """A Pull Transactions row as a charge in whole shillings, or ``None`` if it is malformed."""
    if not isinstance(row, dict):
        return None
    receipt, reference, amount = (row.get(k) for k in ("transactionId", "billreference", "amount"))
    # An empty reference is a payment to the shortcode that names no order: not ours, not bad.
    if not (isinstance(receipt, str) and receipt and isinstance(reference, str)):
        return None
    if isinstance(amount, bool) or not isinstance(amount, str | int | float):
        return None
    try:
        shillings = float(amount)
    except ValueError:
        return None
    if not math.isfinite(shillings):
        return None
    return Charge(receipt, reference, round(shillings))
