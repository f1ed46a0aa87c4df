"""The embedded key store: ``<home>/keys.db`` (SQLite), a token bucket per process, ``<home>/audit.log``.

The file format is the one memlane has always written. Rate limits are per process: with N worker
processes or servers a key can reach N times its rate (the PostgreSQL key store shares them).
"""

from __future__ import annotations

import builtins
import hmac
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memlane.server.audit import AuditLog
from memlane.server.auth import RateLimiter
from memlane.server.keys import ApiKey, KeyStore, digest, parse_token

__all__ = ["SQLiteKeyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'tenant')),
    namespace TEXT,
    rate_limit REAL,
    secret_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    CHECK ((role = 'admin') = (namespace IS NULL))
)
"""


class SQLiteKeyStore(KeyStore):
    """The API keys of one memlane home (``<home>/keys.db``).

    Args:
        path: the SQLite file; created (with its directory) on the first ``create``.
        audit_path: the audit log (JSON lines); default ``audit.log`` next to ``path``.
    """

    def __init__(self, path: str | Path, *, audit_path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser()
        self.audit = AuditLog(Path(audit_path).expanduser() if audit_path else self.path.with_name("audit.log"))
        self._limiter = RateLimiter()

    def describe(self) -> str:
        """``sqlite <path>``."""
        return f"sqlite {self.path}"

    @contextmanager
    def _connect(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                # Only hashes are stored, but who holds which key is nobody else's business.
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute(_SCHEMA)
            yield conn
        finally:
            conn.close()

    def _insert(self, key: ApiKey, secret_sha256: str) -> None:
        with self._connect(create=True) as conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, role, namespace, rate_limit, secret_sha256, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.id, key.name, key.role, key.namespace, key.rate_limit, secret_sha256, key.created_at),
            )

    def _mark_revoked(self, key_id: str, when: str) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (when, key_id))

    def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKey]:
        """Every key, oldest first (revoked ones only when asked)."""
        if not self.path.exists():
            return []
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT id, name, role, namespace, rate_limit, created_at, revoked_at FROM api_keys {where} "
                "ORDER BY created_at, rowid"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (unknown, malformed, wrong secret or revoked)."""
        parsed = parse_token(token)
        if parsed is None or not self.path.exists():
            return None
        key_id, secret = parsed
        with self._connect() as conn:
            row = conn.execute(
                "SELECT id, name, role, namespace, rate_limit, created_at, revoked_at, secret_sha256 "
                "FROM api_keys WHERE id = ?",
                (key_id,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[7], digest(secret)) or row[6] is not None:
            return None
        return ApiKey(*row[:7])

    def take(self, key_id: str, rate: float, burst: float) -> None:
        """Spend one token of this process's bucket for ``key_id``.

        Raises:
            RateLimited: the bucket is empty.
        """
        self._limiter.take(key_id, rate, burst)
