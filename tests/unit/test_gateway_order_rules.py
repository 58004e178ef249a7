"""What the gateway accepts as an order or a trip search, before anything reaches ticketing."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from safiri_gateway.domain.orders import InvalidOrder, OrderRequest, normalise_phone, parse_order
from safiri_gateway.domain.trips import InvalidQuery, TripQuery, parse_trip_query

TRIP_ID = "7d5b7e1c-3a57-4f2b-9a64-0f8f3a1e2b01"


def body(**changes: Any) -> dict[str, Any]:
    return {"trip_id": TRIP_ID, "seat_count": 2, "phone": "254712345678", **changes}


def fields_in_error(raw: object) -> set[str]:
    with pytest.raises(InvalidOrder) as caught:
        parse_order(raw)
    return {error.field for error in caught.value.errors}


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("254712345678", "254712345678"),
        ("254112345678", "254112345678"),
        ("+254712345678", "254712345678"),
        ("0712345678", "254712345678"),
        ("0112345678", "254112345678"),
    ],
)
def test_kenyan_mobile_numbers_are_normalised_to_254_form(raw: str, normalised: str) -> None:
    assert normalise_phone(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "25471234567",  # one digit short
        "2547123456789",  # one digit long
        "254812345678",  # not a mobile range
        "0812345678",
        "+0712345678",
        "712345678",
        "254 712 345 678",
        "254712345678\n",
        "٢٥٤٧١٢٣٤٥٦٧٨",  # Arabic-Indic digits are digits to str.isdigit, not to M-Pesa
    ],
)
def test_anything_else_is_not_a_phone(raw: str) -> None:
    assert normalise_phone(raw) is None


def test_a_valid_body_becomes_a_normalised_order() -> None:
    order = parse_order(body(trip_id=TRIP_ID.upper(), phone="0712345678"))
    assert order == OrderRequest(TRIP_ID, 2, "254712345678")
    assert order.as_json() == {"trip_id": TRIP_ID, "seat_count": 2, "phone": "254712345678"}


def test_bodies_meaning_the_same_order_share_a_fingerprint() -> None:
    first = parse_order(body(phone="+254712345678"))
    second = parse_order({"phone": "0712345678", "seat_count": 2, "trip_id": TRIP_ID.upper()})
    assert first.fingerprint() == second.fingerprint()
    assert first.fingerprint() != parse_order(body(seat_count=3)).fingerprint()


@pytest.mark.parametrize("seat_count", [0, 7, -1, 2.5, 7.0, "2", True, None, float("inf")])
def test_seat_count_must_be_a_whole_number_from_1_to_6(seat_count: object) -> None:
    assert fields_in_error(body(seat_count=seat_count)) == {"seat_count"}


@pytest.mark.parametrize(("seat_count", "seats"), [(2.0, 2), (1e0, 1), (6.0, 6)])
def test_a_seat_count_written_with_a_zero_fraction_is_that_many_seats(
    seat_count: float, seats: int
) -> None:
    # JSON has numbers, not integers: 2.0 is the integer 2 for JSON Schema (and the OpenAPI
    # document), so refusing it refused what the document allows (schemathesis found it).
    order = parse_order(body(seat_count=seat_count))
    assert order.seat_count == seats
    assert type(order.seat_count) is int
    assert order.fingerprint() == parse_order(body(seat_count=seats)).fingerprint()


@pytest.mark.parametrize("seat_count", [1, 6])
def test_seat_count_limits_are_inclusive(seat_count: int) -> None:
    assert parse_order(body(seat_count=seat_count)).seat_count == seat_count


@pytest.mark.parametrize(
    "trip_id", ["nope", 42, None, TRIP_ID.replace("-", ""), f"{{{TRIP_ID}}}", f"urn:uuid:{TRIP_ID}"]
)
def test_trip_id_must_be_a_uuid_string(trip_id: object) -> None:
    assert fields_in_error(body(trip_id=trip_id)) == {"trip_id"}


def test_every_problem_is_reported_at_once() -> None:
    raw = {"seat_count": 9, "phone": 254712345678, "coupon": "FREE"}
    assert fields_in_error(raw) == {"trip_id", "seat_count", "phone", "coupon"}


@pytest.mark.parametrize("raw", [[], "order", 3, None])
def test_the_body_must_be_an_object(raw: object) -> None:
    assert fields_in_error(raw) == {"body"}


def test_a_trip_search_needs_only_a_date() -> None:
    assert parse_trip_query({"date": "2026-03-01"}) == TripQuery(date(2026, 3, 1))
    query = parse_trip_query({"date": "2026-03-01", "origin": "Nairobi", "destination": ""})
    assert query.as_params() == {"date": "2026-03-01", "origin": "Nairobi"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "date"),
        ({"date": ""}, "date"),
        ({"date": "2026-02-30"}, "date"),
        ({"date": "20260301"}, "date"),
        ({"date": "2026-W09-1"}, "date"),
        ({"date": "tomorrow"}, "date"),
        ({"date": "2026-03-01", "origin": "x" * 65}, "origin"),
        ({"date": "2026-03-01", "destination": "y" * 65}, "destination"),
    ],
)
def test_a_bad_trip_search_names_the_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        parse_trip_query(query)
    assert caught.value.field == field


@pytest.mark.parametrize("place", ["Qd\x00c", "Nai\nrobi", "\x1f", "Mom\x7fbasa"])
@pytest.mark.parametrize("field", ["origin", "destination"])
def test_a_place_with_control_characters_is_refused_as_the_clients_mistake(
    place: str, field: str
) -> None:
    # Schemathesis found it: a NUL byte reached PostgreSQL through ticketing, which failed, and
    # the client was told ticketing was unavailable (503) instead of that its query was bad.
    with pytest.raises(InvalidQuery) as caught:
        parse_trip_query({"date": "2026-03-01", field: place})
    assert caught.value.field == field
    assert "control characters" in caught.value.message
