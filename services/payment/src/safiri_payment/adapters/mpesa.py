"""Daraja (M-Pesa) client: OAuth token, STK push. Works against the simulator or the real API."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta

import aiohttp

from ..service_layer.provider import (
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StkPush,
)

__all__ = ["DarajaClient"]

_EAT = timedelta(hours=3)


class DarajaClient:
    name = "mpesa"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        shortcode: str,
        passkey: str,
        timeout: float,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._basic = {"Authorization": aiohttp.encode_basic_auth(consumer_key, consumer_secret)}
        self._shortcode = shortcode
        self._passkey = passkey
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def _access_token(self) -> str:
        async with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_expires:
                data = await self._call(
                    "GET", "/oauth/v1/generate?grant_type=client_credentials", headers=self._basic
                )
                self._token = str(data["access_token"])
                # Renew a minute early so a request never carries a token about to lapse.
                self._token_expires = time.monotonic() + float(str(data["expires_in"])) - 60
            return self._token

    async def stk_push(self, request: StkPush) -> str:
        token = await self._access_token()
        timestamp = (datetime.now(UTC) + _EAT).strftime("%Y%m%d%H%M%S")
        password = base64.b64encode(
            f"{self._shortcode}{self._passkey}{timestamp}".encode()
        ).decode()
        body = {
            "BusinessShortCode": self._shortcode,
            "Password": password,
            "Timestamp": timestamp,
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
            headers={"Authorization": f"Bearer {token}"},
        )
        if str(data.get("ResponseCode")) != "0":
            raise ProviderRejected(
                str(data.get("ResponseCode")), str(data.get("ResponseDescription"))
            )
        return str(data["CheckoutRequestID"])

    async def _call(self, method: str, path: str, **kwargs: object) -> dict[str, object]:
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
            raise ProviderUnavailable(f"cannot reach the provider: {exc}") from exc
        except aiohttp.ClientError as exc:
            # The request may have been sent: its outcome is unknown, not failed.
            raise ProviderTimeout(f"provider connection broke: {exc!r}") from exc
