"""Ticketing's schema. The constraints, not only the code, keep a seat from being sold twice."""

from __future__ import annotations

from safiri_messaging import OUTBOX_SCHEMA

from ..domain.fleet import REPORTING_WINDOW

__all__ = ["SCHEMA"]

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS trips (
    trip_id uuid PRIMARY KEY,
    origin text NOT NULL,
    destination text NOT NULL,
    departs_at timestamptz NOT NULL,
    arrives_at timestamptz NOT NULL,
    bus_id text NOT NULL,
    fare integer NOT NULL CHECK (fare > 0),
    currency char(3) NOT NULL DEFAULT 'KES',
    seats_total integer NOT NULL CHECK (seats_total > 0),
    UNIQUE (origin, destination, departs_at)
);
CREATE INDEX IF NOT EXISTS trips_search ON trips (origin, destination, departs_at);

CREATE TABLE IF NOT EXISTS seats (
    trip_id uuid NOT NULL REFERENCES trips,
    seat_no integer NOT NULL CHECK (seat_no > 0),
    PRIMARY KEY (trip_id, seat_no)
);

CREATE TABLE IF NOT EXISTS orders (
    order_id uuid PRIMARY KEY,
    trip_id uuid NOT NULL REFERENCES trips,
    seat_count integer NOT NULL CHECK (seat_count BETWEEN 1 AND 6),
    phone text NOT NULL,
    amount integer NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    status text NOT NULL CHECK (status IN
        ('PENDING_PAYMENT', 'CONFIRMED', 'PAYMENT_FAILED', 'EXPIRED')),
    failure_reason text,
    payment_receipt text,
    seats integer[] NOT NULL,
    trace_context jsonb NOT NULL DEFAULT '{}',
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_pending_expiry ON orders (expires_at)
    WHERE status = 'PENDING_PAYMENT';
-- The caller's key for the purchase (the gateway's, per client and Idempotency-Key): a retry
-- after a timeout finds the order the first attempt created instead of making a second one.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS request_key text;
CREATE UNIQUE INDEX IF NOT EXISTS orders_request_key ON orders (request_key)
    WHERE request_key IS NOT NULL;

-- A seat is held or sold by at most one order: the primary key forbids a second row.
CREATE TABLE IF NOT EXISTS seat_allocations (
    trip_id uuid NOT NULL,
    seat_no integer NOT NULL,
    order_id uuid NOT NULL REFERENCES orders,
    sold boolean NOT NULL DEFAULT false,
    PRIMARY KEY (trip_id, seat_no),
    FOREIGN KEY (trip_id, seat_no) REFERENCES seats
);
CREATE INDEX IF NOT EXISTS seat_allocations_order ON seat_allocations (order_id);

-- Tickets outlive allocations in audits; they too are unique per seat.
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders,
    trip_id uuid NOT NULL,
    seat_no integer NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (trip_id, seat_no),
    FOREIGN KEY (trip_id, seat_no) REFERENCES seats
);

-- Money taken for an order that ended before its payment arrived and whose seats were gone:
-- owed back to the customer. The invariant checker matches the provider's ledger against it.
CREATE TABLE IF NOT EXISTS refunds (
    order_id uuid PRIMARY KEY REFERENCES orders,
    amount integer NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    payment_receipt text,
    reason text NOT NULL,
    status text NOT NULL DEFAULT 'OWED',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The newest GPS fix of each bus (adapters/fleet.py): one row per bus, never a history.
CREATE TABLE IF NOT EXISTS bus_positions (
    bus_id text PRIMARY KEY,
    trip_id uuid NOT NULL REFERENCES trips,
    latitude double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    speed_kmh double precision,
    heading_degrees double precision,
    recorded_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bus_positions_recorded ON bus_positions (recorded_at);
-- The buses reporting now: active_buses_count counts it, the Control Tower's map shows it.
CREATE OR REPLACE VIEW buses_reporting AS
    SELECT p.bus_id, p.trip_id, t.origin, t.destination, p.latitude, p.longitude,
           p.speed_kmh, p.heading_degrees, p.recorded_at
    FROM bus_positions p JOIN trips t USING (trip_id)
    WHERE p.recorded_at >= now() - interval '"""
    + f"{int(REPORTING_WINDOW.total_seconds())} seconds"
    + """';
-- Grafana's map reads the view, and only it, as safiri_map_reader where that role exists
-- (compose makes it: deploy/postgres/create-map-reader.sh).
DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'safiri_map_reader') THEN
        GRANT SELECT ON buses_reporting TO safiri_map_reader;
    END IF;
END $$;
"""
    + OUTBOX_SCHEMA
)
