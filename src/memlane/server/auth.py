"""Who is calling, what they may touch, and how fast.

- :func:`admit` turns the ``Authorization: Bearer mlk_...`` (or ``X-API-Key``) header into an
  :class:`ApiKey` and spends one token of its rate limit, or raises ``AuthenticationError`` (401)
  or ``RateLimited`` (429). The key store does both (on PostgreSQL in one statement).
- :class:`Guard` applies a key's namespace to scopes and memories. Naming a scope outside the
  namespace is ``PermissionDenied`` (403: the rule is no secret); a memory outside it is
  ``MemoryNotFound`` (404), exactly as for an id that does not exist, so ids cannot be probed; an
  entity outside it is ``EntityNotFound`` (404) in the same way.
- :class:`RateLimiter` is a token bucket per key in one process: the embedded key store's (with N
  workers a key gets up to N times the rate); the PostgreSQL key store shares its buckets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memlane import (
    AuthenticationError,
    EntityItem,
    EntityNotFound,
    HistoryEvent,
    InvalidRequest,
    MemoryItem,
    MemoryNotFound,
    PermissionDenied,
    Scope,
    resolve_scope,
)
from memlane.server.keys import NAMESPACE_SEPARATOR, ApiKey, rate_limited

if TYPE_CHECKING:
    from memlane.server.keys import KeyStore
    from memlane.server.settings import ServerSettings

__all__ = ["ANONYMOUS", "Guard", "RateLimiter", "admit", "bearer_token"]

# The principal of a --no-auth server (loopback only): an admin without a key.
ANONYMOUS = ApiKey(
    id="anonymous", name="no-auth", role="admin", namespace=None, rate_limit=None, created_at="", revoked_at=None
)


def bearer_token(headers: Mapping[str, str]) -> str:
    """The API key a request carries (``Authorization: Bearer`` or ``X-API-Key``), not yet checked.

    Raises:
        AuthenticationError: no key, or another authorization scheme.
    """
    token = headers.get("x-api-key")
    auth = headers.get("authorization")
    if token is None and auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            raise AuthenticationError("use 'Authorization: Bearer <API key>' (or the X-API-Key header)")
        token = value.strip()
    if not token:
        raise AuthenticationError(
            "this server needs an API key: send 'Authorization: Bearer <key>'; "
            "an admin creates keys with `memlane keys create`"
        )
    return token


def admit(headers: Mapping[str, str] | None, keys: KeyStore, settings: ServerSettings) -> ApiKey:
    """The key a request carries, after spending one token of its rate limit.

    Args:
        headers: the request's headers (lower-case names); None: a ``--no-auth`` server, whose
            requests share the bucket of :data:`ANONYMOUS`.
        keys: the key store (its buckets are shared across servers on PostgreSQL).
        settings: the server's default rate and burst.
    Raises:
        AuthenticationError: no key, a malformed one, an unknown one, or a revoked one.
        RateLimited: the key's bucket is empty.
        StoreError: the key store failed.
    """
    if headers is None:
        keys.take(ANONYMOUS.id, settings.rate_limit, settings.burst_for(settings.rate_limit))
        return ANONYMOUS
    return keys.admit(bearer_token(headers), rate=settings.rate_limit, burst=settings.rate_burst)


@dataclass(frozen=True)
class Guard:
    """A key's view of the store."""

    key: ApiKey

    def _hint(self) -> str:
        return f"'{self.key.namespace}{NAMESPACE_SEPARATOR}'"

    def require_admin(self, action: str) -> None:
        """Raises PermissionDenied unless the key is an admin key."""
        if not self.key.is_admin:
            raise PermissionDenied(f"{action} needs an admin key; this key belongs to namespace {self._hint()}")

    def check_scope(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        operation: str,
        required: bool = True,
    ) -> Scope:
        """The scope a request names, after checking the key may use it.

        Scope ids are read the way ``Memory`` reads them (keywords or ``filters``), so the check
        sees exactly the scope the operation will use.

        Raises:
            ScopeRequired, ScopeConflict, InvalidRequest: as ``Memory`` would.
            PermissionDenied: a user or agent id outside the key's namespace, or (tenant keys)
                no user or agent id at all.
        """
        scope, _ = resolve_scope(
            user_id=user_id, agent_id=agent_id, run_id=run_id, filters=filters, required=required, operation=operation
        )
        if self.key.is_admin:
            return scope
        named = [i for i in (scope.user_id, scope.agent_id) if i is not None]
        if not named:
            raise PermissionDenied(
                f"{operation}: a tenant key must name a user_id or agent_id in its namespace "
                f"(ids starting with {self._hint()})"
            )
        for value in named:
            if not self.key.owns(value):
                raise PermissionDenied(
                    f"{operation}: {value!r} is outside this key's namespace: ids must start with {self._hint()}"
                )
        return scope

    def visible(self, user_id: str | None, agent_id: str | None) -> bool:
        """Whether a memory with these ids is the key's to see (its user or its agent is owned)."""
        return self.key.is_admin or self.key.owns(user_id) or self.key.owns(agent_id)

    def check_memory(self, item: MemoryItem) -> MemoryItem:
        """The memory, if visible; otherwise exactly the error of an unknown id."""
        if not self.visible(item["user_id"], item["agent_id"]):
            raise MemoryNotFound(f"no memory with id {item['id']!r}")
        return item

    def check_entity(self, item: EntityItem) -> EntityItem:
        """The entity, if visible; otherwise exactly the error (and message) of ``Memory.entity``
        for an unknown id."""
        if not self.visible(item["user_id"], item["agent_id"]):
            raise EntityNotFound(f"no entity with id {item['id']!r}; entities(user_id=...) lists a scope's entities")
        return item

    def check_history(self, events: list[HistoryEvent]) -> list[HistoryEvent]:
        """The events the key may see: a memory's scope never changes, so all or none."""
        return [e for e in events if self.visible(e["user_id"], e["agent_id"])]

    def check_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Check that every import record, and every event of a history record, lies in the namespace.

        Raises:
            PermissionDenied: a record or an event outside the namespace (nothing is imported).
            InvalidRequest: a history record without a non-empty list of events to judge it by.
        """
        if self.key.is_admin:
            return
        for number, record in enumerate(records, 1):
            if record.get("type") == "memlane-export":
                continue
            scoped = record.get("events") if record.get("type") == "history" else [record]
            if not isinstance(scoped, list) or not scoped or not all(isinstance(e, Mapping) for e in scoped):
                raise InvalidRequest(f"import record {number}: events must be a non-empty list of history events")
            for ids in scoped:
                owned = [i for i in (ids.get("user_id"), ids.get("agent_id")) if i is not None]
                if not owned or not all(isinstance(i, str) and self.key.owns(i) for i in owned):
                    raise PermissionDenied(
                        f"import record {number}: its user_id/agent_id must all start with {self._hint()}; "
                        "nothing imported"
                    )


class RateLimiter:
    """Token buckets per key: ``rate`` per second sustained, ``burst`` at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)

    def take(self, key_id: str, rate: float, burst: float) -> None:
        """Spend one token.

        Raises:
            RateLimited: the bucket is empty; ``retry_after`` is when the next token arrives.
        """
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                raise rate_limited(rate, tokens)
            self._buckets[key_id] = (tokens - 1.0, now)
