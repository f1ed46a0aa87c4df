"""API keys, their rate limits and the audit log: one contract, two backends.

A key is ``mlk_<key id>_<secret>``. The key id is public (it names the key in listings and in the
audit log); the secret is 256 random bits, shown once at creation. A store keeps SHA-256 of the
secret: for a random 256-bit secret a slow password hash adds nothing (there is nothing to guess)
and would cost every request milliseconds.

Each key is one of:

- **admin**: every scope, plus ``reset``, export and import of the whole store;
- **tenant** of a namespace, e.g. ``acme``: only scopes whose user and agent ids start with
  ``acme:``. Namespaces cannot contain ``:``, so no namespace is a prefix of another.

:class:`KeyStore` is what the server, ``memlane mcp`` and ``memlane keys`` need: ``create``,
``list``, ``revoke``, ``authenticate``, a token bucket per key (``take``; ``admit`` authenticates
and spends one token) and the audit log (``audit``). Its backends follow the memory store
(:func:`key_store_for`):

- :class:`~memlane.server.keys_sqlite.SQLiteKeyStore` (embedded, the default): ``<home>/keys.db``,
  a token bucket per process, ``<home>/audit.log``;
- :class:`~memlane.server.keys_postgres.PostgresKeyStore`: tables in the store's PostgreSQL
  schema, so every server on one database shares keys, revocations, rate limits and the audit log.

Revocation is immediate on both: the key is read on every request (a primary-key lookup), never
cached.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from memlane import AuthenticationError, InvalidRequest, MemoryNotFound, RateLimited
from memlane.server.audit import AuditSink

if TYPE_CHECKING:
    from memlane.config import StoreConfig

__all__ = [
    "INVALID_KEY",
    "NAMESPACE_SEPARATOR",
    "ApiKey",
    "AuditSink",
    "KeyStore",
    "burst_for",
    "digest",
    "key_store_for",
    "parse_token",
    "rate_limited",
]

NAMESPACE_SEPARATOR = ":"
INVALID_KEY = "the API key is not valid (unknown, mistyped or revoked)"
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^mlk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


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


def now_iso() -> str:
    """The time a key is created or revoked (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def digest(secret: str) -> str:
    """What a store keeps of a secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def burst_for(rate: float, burst: float | None) -> float:
    """The bucket size of a key with this rate: ``burst`` when the server sets one, else twice the rate."""
    return burst if burst is not None else max(1.0, 2.0 * rate)


def rate_limited(rate: float, tokens: float) -> RateLimited:
    """The error of an empty bucket holding ``tokens`` (< 1) that refills at ``rate`` per second."""
    wait = (1.0 - tokens) / rate
    return RateLimited(
        f"rate limit of {rate:g} requests/s for this key reached; retry after {wait:.2f} s", retry_after=wait
    )


def _new_key(name: str, *, admin: bool, namespace: str | None, rate_limit: float | None) -> tuple[ApiKey, str]:
    """A checked new key and its secret."""
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
    key = ApiKey(
        id=secrets.token_hex(8),
        name=name.strip(),
        role="admin" if admin else "tenant",
        namespace=namespace,
        rate_limit=float(rate_limit) if rate_limit is not None else None,
        created_at=now_iso(),
        revoked_at=None,
    )
    return key, secrets.token_urlsafe(32)


class KeyStore(ABC):
    """The API keys, rate limits and audit log of one memlane store (the contract both backends pass).

    Backends implement the storage primitives; checking names, namespaces and rates, and finding
    the key to revoke, happen here once. Nothing is opened or created until first use.
    """

    #: Where audit records go (the file next to ``keys.db``, or the database).
    audit: AuditSink

    def __new__(cls, *args: Any, **kwargs: Any) -> KeyStore:
        # ``KeyStore(path)`` built the embedded store before there were two backends, and scripts
        # still call it: it builds a SQLiteKeyStore (as ``pathlib.Path(...)`` builds the
        # platform's class). New code names the backend or uses key_store_for.
        if cls is KeyStore:
            from memlane.server.keys_sqlite import SQLiteKeyStore

            return super().__new__(SQLiteKeyStore)
        return super().__new__(cls)

    @abstractmethod
    def describe(self) -> str:
        """Where the keys live, for people (``sqlite <path>``, ``postgres <url> (schema s)``)."""

    @abstractmethod
    def _insert(self, key: ApiKey, secret_sha256: str) -> None:
        """Store a new key."""

    @abstractmethod
    def _mark_revoked(self, key_id: str, when: str) -> None:
        """Set ``revoked_at`` of an active key."""

    @abstractmethod
    def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKey]:
        """Every key, oldest first (revoked ones only when asked)."""

    @abstractmethod
    def authenticate(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (unknown, malformed, wrong secret or revoked)."""

    @abstractmethod
    def take(self, key_id: str, rate: float, burst: float) -> None:
        """Spend one token of ``key_id``'s bucket (``rate`` per second sustained, ``burst`` at once).

        Raises:
            RateLimited: the bucket is empty; ``retry_after`` is when the next token arrives.
        """

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
            StoreError: the backend failed.
        """
        key, secret = _new_key(name, admin=admin, namespace=namespace, rate_limit=rate_limit)
        self._insert(key, digest(secret))
        return key, f"mlk_{key.id}_{secret}"

    def revoke(self, key: str) -> ApiKey:
        """Revoke a key by id (or by name when exactly one active key has it); takes effect at once.

        Raises:
            MemoryNotFound: no active key has this id or name.
            InvalidRequest: several active keys share the name: revoke by id.
            StoreError: the backend failed.
        """
        active = [k for k in self.list() if key in (k.id, k.name)]
        by_id = [k for k in active if k.id == key]
        if by_id:
            active = by_id
        if not active:
            raise MemoryNotFound(f"no active API key with id or name {key!r}; see `memlane keys list`")
        if len(active) > 1:
            raise InvalidRequest(f"{len(active)} active keys are named {key!r}: revoke one by its id")
        when = now_iso()
        self._mark_revoked(active[0].id, when)
        return replace(active[0], revoked_at=when)

    def admit(self, token: str, *, rate: float, burst: float | None = None) -> ApiKey:
        """Authenticate a token and spend one token of its key's bucket.

        Args:
            token: the ``mlk_...`` token a request carries.
            rate: requests per second for keys without their own rate.
            burst: the bucket size (None: twice the key's rate).
        Raises:
            AuthenticationError: the token is malformed, unknown, wrong or revoked (nothing spent).
            RateLimited: the key's bucket is empty.
            StoreError: the backend failed.
        """
        key = self.authenticate(token)
        if key is None:
            raise AuthenticationError(INVALID_KEY)
        own = key.rate_limit or rate
        self.take(key.id, own, burst_for(own, burst))
        return key

    def close(self) -> None:
        """Store every audit record written so far and release connections and files."""
        self.audit.close()


def key_store_for(store: StoreConfig, home: str | Path) -> KeyStore:
    """The key store that goes with a memory store: the same PostgreSQL schema, else ``<home>/keys.db``.

    Args:
        store: the resolved store config (``MemoryConfig.store()``), as ``memlane serve`` uses.
        home: the memlane home holding ``keys.db`` and ``audit.log`` (SQLite only).
    Raises:
        ConfigError: PostgreSQL without its extra installed.
    """
    from memlane.config import PostgresStoreOptions

    options = store.config
    if store.provider == "postgres" and isinstance(options, PostgresStoreOptions) and options.url:
        from memlane.server.keys_postgres import PostgresKeyStore

        return PostgresKeyStore(options.url, schema=options.db_schema, timeout=options.timeout)
    from memlane.server.keys_sqlite import SQLiteKeyStore

    directory = Path(home).expanduser()
    return SQLiteKeyStore(directory / "keys.db", audit_path=directory / "audit.log")
