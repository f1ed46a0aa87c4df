"""The key store in PostgreSQL: API keys, rate limits and the audit log shared by every server.

Servers on one database (``memlane serve --database-url ...`` behind a load balancer) see the
same keys, the same revocations (at the next request: keys are read per request, never cached),
the same token bucket per key, and write one audit log. The tables live in the memory store's
schema, created by the server's own recorded migrations (:mod:`memlane.server.postgres_schema`).

A request costs one statement, one round trip: :meth:`PostgresKeyStore.admit` looks the key up
by id and secret hash and, if it is active, refills and spends its bucket in the same statement
(an ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, whose row lock serialises concurrent
requests of one key across servers). Refills use the database's ``clock_timestamp()``, so the
servers' clocks never matter. The secret hash is compared in SQL: the id is public, so a wrong
secret must not spend a key's tokens (comparing SHA-256 digests leaks nothing usable by timing).
"""

from __future__ import annotations

import builtins
import hmac
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from memlane import AuthenticationError, ConfigError, InvalidRequest, StoreBusy, StoreError
from memlane.config import mask_url
from memlane.server.audit_postgres import PostgresAuditLog
from memlane.server.keys import INVALID_KEY, ApiKey, KeyStore, digest, parse_token, rate_limited

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresKeyStore"]

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_KEY_COLUMNS = "id, name, role, namespace, rate_limit, created_at, revoked_at"

# Refill by the time since the last request (database clock, evaluated under the row's lock),
# capped at the burst; spend one token if there is one. `granted` says which happened.
_SPEND = """
ON CONFLICT (key_id) DO UPDATE SET (rate, burst, tokens, refilled_at, granted) = (
    SELECT excluded.rate, excluded.burst, CASE WHEN r.level >= 1 THEN r.level - 1 ELSE r.level END,
           greatest(b.refilled_at, r.now), r.level >= 1
    FROM (SELECT least(excluded.burst, b.tokens + excluded.rate
                       * greatest(0, extract(epoch FROM c.now - b.refilled_at))::float8) AS level, c.now
          FROM (SELECT clock_timestamp() AS now) AS c) AS r)
RETURNING tokens, granted, rate
"""

_TAKE = (
    "INSERT INTO {s}.rate_buckets AS b (key_id, rate, burst, tokens, refilled_at, granted) "
    "VALUES (%(id)s, %(rate)s::float8, %(burst)s::float8, %(burst)s::float8 - 1, clock_timestamp(), true)" + _SPEND
)

_ADMIT = f"""
WITH k AS (
    SELECT {_KEY_COLUMNS}, COALESCE(rate_limit, %(rate)s::float8) AS own_rate
    FROM {{s}}.api_keys WHERE id = %(id)s AND secret_sha256 = %(digest)s AND revoked_at IS NULL
), spent AS (
    INSERT INTO {{s}}.rate_buckets AS b (key_id, rate, burst, tokens, refilled_at, granted)
    SELECT k.id, k.own_rate, x.burst, x.burst - 1, clock_timestamp(), true
    FROM k, LATERAL (SELECT COALESCE(%(burst)s::float8, greatest(1, 2 * k.own_rate)) AS burst) AS x
    {_SPEND}
)
SELECT k.id, k.name, k.role, k.namespace, k.rate_limit, k.created_at, k.revoked_at,
       spent.tokens, spent.granted, spent.rate
FROM k LEFT JOIN spent ON true
"""


class PostgresKeyStore(KeyStore):
    """API keys, rate-limit buckets and the audit log in a PostgreSQL schema. Nothing connects until first use.

    Args:
        url: a libpq URL or DSN, e.g. ``postgresql://memlane:secret@db:5432/memlane``.
        schema: the schema of the memory store these keys guard.
        max_connections: the pool's bound, per process (requests hold a connection for one statement).
        timeout: seconds to wait for a connection (then ``StoreBusy``, 503).
    Raises:
        InvalidRequest: a bad URL or schema name.
    """

    def __init__(self, url: str, *, schema: str = "memlane", max_connections: int = 4, timeout: float = 10.0) -> None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidRequest("url must be a PostgreSQL URL, e.g. postgresql://user:password@host:5432/dbname")
        if not _SCHEMA.fullmatch(schema):
            raise InvalidRequest(f"schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*), got {schema!r}")
        self.url = url
        self.schema = schema
        self.max_connections = max(1, max_connections)
        self.timeout = timeout
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        quoted = f'"{schema}"'
        self._take_sql, self._admit_sql = (sql.replace("{s}", quoted) for sql in (_TAKE, _ADMIT))
        self._keys = f"{quoted}.api_keys"
        self.audit = PostgresAuditLog(self.connection, f"{quoted}.audit_log", self.describe())

    def describe(self) -> str:
        """``postgres <url, password masked> (schema s)``."""
        return f"postgres {mask_url(self.url)} (schema {self.schema})"

    # -- connections ---------------------------------------------------------------------------
    def _open(self) -> ConnectionPool[Any]:
        """The pool, after migrating the server's tables on first use."""
        with self._lock:
            if self._pool is not None:
                return self._pool
            try:
                import psycopg
                from psycopg_pool import ConnectionPool
            except ImportError as exc:
                raise ConfigError(
                    f"the PostgreSQL key store needs psycopg and psycopg_pool ({exc.name} is missing): "
                    "pip install 'memlane[postgres]'"
                ) from exc
            from memlane.server.postgres_schema import migrate

            try:
                with psycopg.connect(self.url, connect_timeout=max(1, int(self.timeout))) as conn:
                    migrate(conn, self.schema)
            except psycopg.Error as exc:
                raise StoreError(f"could not set up the key tables in {self.describe()}: {exc}") from exc
            pool: ConnectionPool[Any] = ConnectionPool(
                self.url, min_size=1, max_size=self.max_connections, timeout=self.timeout,
                kwargs={"autocommit": True}, open=False, name=f"memlane-keys-{self.schema}",
            )  # fmt: skip
            try:
                pool.open(wait=True, timeout=self.timeout)
            except Exception as exc:
                pool.close()
                raise StoreError(f"could not open a connection pool to {self.describe()}: {exc}") from exc
            self._pool = pool
            return pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection; psycopg and pool errors come out as ``StoreError``.

        Raises:
            StoreBusy: no free connection within ``timeout``.
            StoreError: the database failed.
        """
        import psycopg
        from psycopg_pool import PoolTimeout

        pool = self._open()
        try:
            with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreBusy(f"no free connection to the key store in {self.describe()} within {self.timeout}s") from exc
        except psycopg.Error as exc:
            raise StoreError(f"the key store in {self.describe()} failed: {exc}") from exc

    def close(self) -> None:
        """Store the queued audit records, then close the pool (it reopens on next use)."""
        self.audit.close()
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- keys ----------------------------------------------------------------------------------
    def _insert(self, key: ApiKey, secret_sha256: str) -> None:
        with self.connection() as conn:
            conn.execute(
                f"INSERT INTO {self._keys} (id, name, role, namespace, rate_limit, secret_sha256, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (key.id, key.name, key.role, key.namespace, key.rate_limit, secret_sha256, key.created_at),
            )

    def _mark_revoked(self, key_id: str, when: str) -> None:
        with self.connection() as conn:
            conn.execute(
                f"UPDATE {self._keys} SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (when, key_id)
            )

    def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKey]:
        """Every key, oldest first (revoked ones only when asked)."""
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        with self.connection() as conn:
            rows = conn.execute(f"SELECT {_KEY_COLUMNS} FROM {self._keys} {where} ORDER BY created_at, seq").fetchall()
        return [ApiKey(*row) for row in rows]

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (unknown, malformed, wrong secret or revoked); spends nothing."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self.connection() as conn:
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS}, secret_sha256 FROM {self._keys} WHERE id = %s", (key_id,)
            ).fetchone()
        if row is None or not hmac.compare_digest(row[7], digest(secret)) or row[6] is not None:
            return None
        return ApiKey(*row[:7])

    # -- rate limits ---------------------------------------------------------------------------
    def take(self, key_id: str, rate: float, burst: float) -> None:
        """Spend one token of ``key_id``'s shared bucket (one statement).

        Raises:
            RateLimited: the bucket is empty.
            StoreError: the database failed.
        """
        with self.connection() as conn:
            row = conn.execute(self._take_sql, {"id": key_id, "rate": rate, "burst": burst}).fetchone()
        assert row is not None  # an upsert always returns its row
        if not row[1]:
            raise rate_limited(rate, row[0])

    def admit(self, token: str, *, rate: float, burst: float | None = None) -> ApiKey:
        """Authenticate a token and spend one token of its key's shared bucket, in one statement.

        Raises:
            AuthenticationError: the token is malformed, unknown, wrong or revoked (nothing spent).
            RateLimited: the key's bucket is empty.
            StoreError: the database failed.
        """
        parsed = parse_token(token)
        if parsed is None:
            raise AuthenticationError(INVALID_KEY)
        key_id, secret = parsed
        params = {"id": key_id, "digest": digest(secret), "rate": rate, "burst": burst}
        with self.connection() as conn:
            row = conn.execute(self._admit_sql, params).fetchone()
        if row is None:
            raise AuthenticationError(INVALID_KEY)
        if not row[8]:  # an active key always gets its bucket row back: granted is true or false
            raise rate_limited(row[9], row[7])
        return ApiKey(*row[:7])
