"""Schema migration and the seeded timetable (idempotent: safe on every start)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from safiri_web import apply_schema as schema_once

from ..domain.trips import SEATS_PER_BUS, timetable
from .schema import SCHEMA

__all__ = ["apply_schema", "seed_timetable"]

_LOCK_KEY = 0x5AF1_0001


async def apply_schema(pool: asyncpg.Pool[Any]) -> str:
    """Ticketing's schema, once per version (safiri_web.apply_schema): ``current`` or
    ``applied``."""
    return await schema_once(pool, "ticketing", SCHEMA)


def trip_uuid(origin: str, destination: str, departs_at: datetime) -> str:
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"safiri:{origin}:{destination}:{departs_at:%Y%m%dT%H%M}")
    )


async def seed_timetable(pool: asyncpg.Pool[Any], days: int, today: datetime | None = None) -> int:
    """Add the departures of the next ``days`` days that are not there yet; returns how many."""
    first = (today or datetime.now(UTC)).date() - timedelta(days=1)
    rows = [
        (
            trip_uuid(r.origin, r.destination, dep),
            r.origin,
            r.destination,
            dep,
            dep + timedelta(hours=r.hours),
            bus,
            r.fare,
            SEATS_PER_BUS,
        )
        for r, dep, bus in timetable(first, days + 1)
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        inserted = await conn.fetch(
            "INSERT INTO trips (trip_id, origin, destination, departs_at, arrives_at, bus_id,"
            " fare, seats_total)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],"
            " $5::timestamptz[], $6::text[], $7::int[], $8::int[])"
            " ON CONFLICT DO NOTHING RETURNING trip_id, seats_total",
            *[list(col) for col in zip(*rows, strict=True)],
        )
        await conn.execute(
            "INSERT INTO seats (trip_id, seat_no)"
            " SELECT t.trip_id, g FROM unnest($1::uuid[], $2::int[]) AS t(trip_id, n),"
            " generate_series(1, t.n) AS g ON CONFLICT DO NOTHING",
            [r["trip_id"] for r in inserted],
            [r["seats_total"] for r in inserted],
        )
    return len(inserted)
