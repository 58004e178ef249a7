"""What an STK push (and its status query) must contain, checked as Daraja checks it."""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

__all__ = ["InvalidField", "StkPush", "check_credentials", "parse_stk_push", "stk_password"]

_MSISDN = re.compile(r"^254[17][0-9]{8}\Z")  # \d would take any script's digits
_TRANSACTION_TYPES = frozenset({"CustomerPayBillOnline", "CustomerBuyGoodsOnline"})


class InvalidField(ValueError):
    """The request names a field Daraja would reject; ``field`` is its Daraja name."""

    def __init__(self, field: str) -> None:
        super().__init__(f"Invalid {field}")
        self.field = field


@dataclass(frozen=True)
class StkPush:
    """An accepted request to prompt ``phone`` for ``amount`` shillings."""

    phone: str
    amount: int
    callback_url: str
    account_reference: str
    description: str


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """``base64(shortcode + passkey + timestamp)``, the password every STK call carries."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def check_credentials(body: Mapping[str, object], shortcode: str, passkey: str) -> None:
    """Raise ``InvalidField`` unless shortcode, timestamp and password all match."""
    if str(body.get("BusinessShortCode", "")) != shortcode:
        raise InvalidField("BusinessShortCode")
    timestamp = body.get("Timestamp")
    if not isinstance(timestamp, str) or not _is_timestamp(timestamp):
        raise InvalidField("Timestamp")
    password = body.get("Password")
    expected = stk_password(shortcode, passkey, timestamp)
    # Bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, a 500).
    if not isinstance(password, str) or not hmac.compare_digest(
        password.encode(errors="replace"), expected.encode()
    ):
        raise InvalidField("Password")


def parse_stk_push(body: Mapping[str, object], shortcode: str, passkey: str) -> StkPush:
    """The push ``body`` asks for, or ``InvalidField`` naming the first field that is wrong."""
    check_credentials(body, shortcode, passkey)
    if body.get("TransactionType") not in _TRANSACTION_TYPES:
        raise InvalidField("TransactionType")
    amount = _positive_int(body.get("Amount"))
    if amount is None:
        raise InvalidField("Amount")
    phone = str(body.get("PhoneNumber", ""))
    if not _MSISDN.match(phone):
        raise InvalidField("PhoneNumber")
    callback_url = body.get("CallBackURL")
    if not isinstance(callback_url, str) or not _is_http_url(callback_url):
        raise InvalidField("CallBackURL")
    reference = body.get("AccountReference")
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidField("AccountReference")
    description = body.get("TransactionDesc", "")
    return StkPush(phone, amount, callback_url, reference, str(description))


def _is_timestamp(value: str) -> bool:
    if len(value) != 14 or not value.isdigit():
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def _positive_int(value: object) -> int | None:
    # Daraja accepts the amount as a number or a numeric string, but never a fraction.
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme in {"http", "https"} and bool(parts.hostname)
    except ValueError:  # "http://[::1": an IPv6 host left open
        return False
