-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
-- One database per service; each service creates its own tables at start-up.
CREATE DATABASE safiri_gateway;
CREATE DATABASE safiri_ticketing;
CREATE DATABASE safiri_payment;
