"""API keys: created, listed and revoked with ``memlane keys``; only their hashes are stored.

A key is ``mlk_<key id>_<secret>``. The key id is public (it names the key in listings and in the
audit log); the secret is 256 random bits, shown once at creation. The store keeps SHA-256 of the
secret: for a random 256-bit secret a slow password hash adds nothing (there is nothing to guess)
and would cost every request milliseconds.

Each key is one of:

- **admin**: every scope, plus ``reset``, export and import of the whole store;
- **tenant** of a namespace, e.g. ``acme``: only scopes whose user and agent ids start with
  ``acme:``. Namespaces cannot contain ``:``, so no namespace is a prefix of another.

Keys live in a small SQLite file (``<home>/keys.db``) next to the data. Revocation is immediate:
the server reads the key on every request (a primary-key lookup, microseconds).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from memlane import InvalidRequest, MemoryNotFound

__all__ = ["NAMESPACE_SEPARATOR", "ApiKey", "KeyStore", "parse_token"]

NAMESPACE_SEPARATOR = ":"
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^mlk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
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


@dataclass(frozen=True)
class ApiKey:
    """One API key as stored (never its secret)."""

    id: str
    name: str
    role: Literal["admin", "tenant"]
    namespace: str | None
    rate_limit: float | None
    created_at: str
    revoked_at: str | None

    @property
    def is_admin(self) -> bool:
        """True for an admin key."""
        return self.role == "admin"

    def owns(self, scope_id: str | None) -> bool:
        """Whether a user or agent id lies in this key's namespace (admin keys own every id)."""
        if self.is_admin:
            return True
        return scope_id is not None and scope_id.startswith(f"{self.namespace}{NAMESPACE_SEPARATOR}")

    def as_dict(self) -> dict[str, object]:
        """JSON-able fields, for ``memlane keys list --json``."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "namespace": self.namespace,
            "rate_limit": self.rate_limit,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed token, else None.

    Parsed by the token's fixed layout, never by splitting on ``_``: the base64url secret may
    itself contain ``_``.
    """
    match = _TOKEN.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The API keys of one memlane home (``<home>/keys.db``).

    Args:
        path: the SQLite file; created (with its directory) on the first ``create``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

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

    def create(
        self, name: str, *, admin: bool = False, namespace: str | None = None, rate_limit: float | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its token (shown once: only a hash is kept).

        Args:
            name: a label for people ("ci", "acme-prod").
            admin: an admin key (every scope); otherwise ``namespace`` is required.
            namespace: the tenant's namespace: the key touches only ids starting with ``<namespace>:``.
            rate_limit: requests per second for this key (default: the server's).
        Raises:
            InvalidRequest: a bad name, namespace or rate limit, or both/neither of admin and namespace.
        """
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise InvalidRequest("a key needs a name of 1 to 100 characters, e.g. --name acme-prod")
        if admin == (namespace is not None):
            raise InvalidRequest("a key is either admin (--admin) or a tenant of one namespace (--namespace NAME)")
        if namespace is not None and not _NAMESPACE.match(namespace):
            raise InvalidRequest(
                f"namespace {namespace!r} must be 1-64 letters, digits, '_', '.' or '-' (no ':'), e.g. 'acme'; "
                f"the key then owns user and agent ids that start with '{namespace or 'acme'}:'"
            )
        if rate_limit is not None and (not isinstance(rate_limit, int | float) or not 0 < rate_limit <= 100_000):
            raise InvalidRequest("rate_limit is requests per second: a number above 0 (at most 100000)")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            name=name.strip(),
            role="admin" if admin else "tenant",
            namespace=namespace,
            rate_limit=float(rate_limit) if rate_limit is not None else None,
            created_at=_now(),
            revoked_at=None,
        )
        with self._connect(create=True) as conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, role, namespace, rate_limit, secret_sha256, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.id, key.name, key.role, key.namespace, key.rate_limit, _digest(secret), key.created_at),
            )
        return key, f"mlk_{key_id}_{secret}"

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
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

    def revoke(self, key: str) -> ApiKey:
        """Revoke a key by id (or by name when exactly one active key has it); takes effect at once.

        Raises:
            MemoryNotFound: no active key has this id or name.
            InvalidRequest: several active keys share the name: revoke by id.
        """
        active = [k for k in self.list() if key in (k.id, k.name)]
        by_id = [k for k in active if k.id == key]
        if by_id:
            active = by_id
        if not active:
            raise MemoryNotFound(f"no active API key with id or name {key!r}; see `memlane keys list`")
        if len(active) > 1:
            raise InvalidRequest(f"{len(active)} active keys are named {key!r}: revoke one by its id")
        when = _now()
        with self._connect() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (when, active[0].id))
        found = active[0]
        return ApiKey(**{**found.__dict__, "revoked_at": when})

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
        if row is None or not hmac.compare_digest(row[7], _digest(secret)) or row[6] is not None:
            return None
        return ApiKey(*row[:7])
