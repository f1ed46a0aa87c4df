"""The server's PostgreSQL tables (API keys, rate-limit buckets, audit log) as numbered, recorded migrations.

They live in the memory store's schema (one store, one set of keys) but are migrated and recorded
apart from the store's own migrations (``memlane.stores.postgres_schema``), in
``<schema>.server_migrations``. Why a separate list:

- they belong to the server, not to the memory store: a library ``PostgresStore`` (or the target
  of ``memlane copy``) never gets tables it does not use, and ``reset``, export and import never
  touch keys or the audit trail;
- the two version sequences cannot collide when both grow (the store's list is append-only and
  shared by more changes than the server's);
- the server's tables can be created before the store's (``memlane keys create`` on a new
  database) and either list can run first.

``migrate`` takes a transaction-scoped advisory lock of its own, so servers starting at once
apply each migration exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["SERVER_MIGRATIONS", "migrate"]

_KEYS = r"""
CREATE TABLE {s}.api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'tenant')),
    namespace     TEXT COLLATE "C",
    rate_limit    DOUBLE PRECISION,
    secret_sha256 TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    revoked_at    TEXT COLLATE "C",
    -- Listing order among keys created in the same second (SQLite's rowid in keys.db).
    seq           BIGINT GENERATED ALWAYS AS IDENTITY,
    CHECK ((role = 'admin') = (namespace IS NULL))
);

-- One token bucket per key id, shared by every server: a request refills it from refilled_at by
-- the database clock and spends a token in one UPDATE. UNLOGGED: no WAL for the hottest rows in
-- the database; after a crash (or on a promoted replica) the buckets start full again, which is
-- a burst, not a breach. fillfactor leaves room for HOT updates.
CREATE UNLOGGED TABLE {s}.rate_buckets (
    key_id      TEXT COLLATE "C" PRIMARY KEY,
    rate        DOUBLE PRECISION NOT NULL,
    burst       DOUBLE PRECISION NOT NULL,
    tokens      DOUBLE PRECISION NOT NULL,
    refilled_at TIMESTAMPTZ NOT NULL,
    granted     BOOLEAN NOT NULL
) WITH (fillfactor = 50);

-- The audit log: each record exactly as a line of <home>/audit.log would hold it, with the
-- fields people query as columns.
CREATE TABLE {s}.audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record JSONB NOT NULL CHECK (jsonb_typeof(record) = 'object'),
    at     TEXT COLLATE "C" GENERATED ALWAYS AS (record ->> 'at') STORED,
    key_id TEXT COLLATE "C" GENERATED ALWAYS AS (record ->> 'key_id') STORED,
    action TEXT COLLATE "C" GENERATED ALWAYS AS (record ->> 'action') STORED
);
CREATE INDEX audit_log_at ON {s}.audit_log (at);
CREATE INDEX audit_log_key ON {s}.audit_log (key_id, id);
"""

SERVER_MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "API keys, shared rate-limit buckets and the audit log", _KEYS),
]


def migrate(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    """Create ``schema`` if needed and apply the server's pending migrations; returns the versions applied now.

    ``schema`` must already be a validated identifier.
    """
    s = f'"{schema}"'
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"memlane-server-schema\x1f{schema}",))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.server_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in conn.execute(f"SELECT version FROM {s}.server_migrations")}
        applied = []
        for version, name, sql in SERVER_MIGRATIONS:
            if version in done:
                continue
            conn.execute(sql.replace("{s}", s))
            conn.execute(
                f"INSERT INTO {s}.server_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (version, name, datetime.now(UTC).isoformat()),
            )
            applied.append(version)
        return applied
