"""An STK push is accepted only when every field Daraja checks is right."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from safiri_mpesa_sim.stk_push import InvalidField, check_credentials, parse_stk_push, stk_password

pytestmark = pytest.mark.unit

SHORTCODE = "174379"
PASSKEY = "test-passkey"
TIMESTAMP = "20260125143000"


def push_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "BusinessShortCode": SHORTCODE,
        "Password": stk_password(SHORTCODE, PASSKEY, TIMESTAMP),
        "Timestamp": TIMESTAMP,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1500,
        "PartyA": "254712345678",
        "PartyB": SHORTCODE,
        "PhoneNumber": "254712345678",
        "CallBackURL": "https://payments.example/mpesa/callback",
        "AccountReference": "ORDER-42",
        "TransactionDesc": "Bus ticket",
    }
    body.update(overrides)
    return body


def test_password_is_base64_of_shortcode_passkey_and_timestamp() -> None:
    expected = base64.b64encode(b"174379test-passkey20260125143000").decode()
    assert stk_password(SHORTCODE, PASSKEY, TIMESTAMP) == expected


def test_valid_push_is_parsed() -> None:
    push = parse_stk_push(push_body(), SHORTCODE, PASSKEY)
    assert push.phone == "254712345678"
    assert push.amount == 1500
    assert push.callback_url == "https://payments.example/mpesa/callback"
    assert push.account_reference == "ORDER-42"
    assert push.description == "Bus ticket"


@pytest.mark.parametrize(
    ("overrides", "normalised"),
    [
        ({"Amount": "250"}, {"amount": 250}),
        ({"Amount": 250.0}, {"amount": 250}),
        ({"PhoneNumber": 254712345678}, {"phone": "254712345678"}),
        ({"PhoneNumber": "254112345678"}, {"phone": "254112345678"}),
        ({"BusinessShortCode": 174379}, {}),
        ({"TransactionType": "CustomerBuyGoodsOnline"}, {}),
        ({"CallBackURL": "http://127.0.0.1:8082/callback"}, {}),
    ],
)
def test_daraja_number_and_string_forms_are_both_accepted(
    overrides: dict[str, Any], normalised: dict[str, Any]
) -> None:
    push = parse_stk_push(push_body(**overrides), SHORTCODE, PASSKEY)
    for attribute, value in normalised.items():
        assert getattr(push, attribute) == value


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"BusinessShortCode": "600000"}, "BusinessShortCode"),
        ({"Timestamp": "2026-01-25 14:30"}, "Timestamp"),
        ({"Timestamp": "20261325143000"}, "Timestamp"),
        ({"Password": "bm90IHRoZSBwYXNzd29yZA=="}, "Password"),
        ({"Password": stk_password(SHORTCODE, PASSKEY, "20260125143001")}, "Password"),
        ({"Password": None}, "Password"),
        ({"TransactionType": "SalaryPayment"}, "TransactionType"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": -10}, "Amount"),
        ({"Amount": 10.5}, "Amount"),
        ({"Amount": "ten"}, "Amount"),
        ({"Amount": True}, "Amount"),
        ({"Amount": None}, "Amount"),
        ({"PhoneNumber": "0712345678"}, "PhoneNumber"),
        ({"PhoneNumber": "254812345678"}, "PhoneNumber"),
        ({"PhoneNumber": "25471234567"}, "PhoneNumber"),
        ({"PhoneNumber": "2547123456789"}, "PhoneNumber"),
        ({"CallBackURL": "ftp://payments.example/callback"}, "CallBackURL"),
        ({"CallBackURL": "not a url"}, "CallBackURL"),
        ({"CallBackURL": None}, "CallBackURL"),
        ({"AccountReference": ""}, "AccountReference"),
    ],
)
def test_invalid_field_is_named(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as raised:
        parse_stk_push(push_body(**overrides), SHORTCODE, PASSKEY)
    assert raised.value.field == field


def test_query_credentials_use_the_same_password_rule() -> None:
    check_credentials(push_body(), SHORTCODE, PASSKEY)
    with pytest.raises(InvalidField, match="Password"):
        check_credentials(push_body(), SHORTCODE, "another-passkey")
