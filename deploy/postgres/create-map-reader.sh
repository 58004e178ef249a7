#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d), after
# 10-create-databases.sql. Grafana's live bus map logs in as safiri_map_reader: it may connect
# and, once ticketing has created its schema (which grants it), select from the buses_reporting
# view, and nothing else: no orders, no phones.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v password="$SAFIRI_MAP_READER_PASSWORD" <<'SQL'
CREATE ROLE safiri_map_reader LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE safiri_ticketing TO safiri_map_reader;
SQL
