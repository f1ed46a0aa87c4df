"""The memlane exception tree.

Every error memlane raises derives from :class:`MemlaneError`; where a builtin
fits, the class also inherits it so ``except ValueError`` keeps working::

    MemlaneError
    ├── InvalidRequest (ValueError)          bad arguments: fix the call
    │   ├── ScopeRequired                    no user_id / agent_id / run_id given
    │   ├── ScopeConflict                    keyword scope contradicts filters scope
    │   ├── InvalidFilter                    malformed metadata filter
    │   ├── MemoryConflict                   would duplicate another memory / an existing id (409)
    │   └── RequestTooLarge                  body, message count or text over the server's limits (413)
    ├── ConfigError (ValueError)             bad configuration / missing dependency
    ├── LLMRequired (ConfigError)            infer=True but no LLM configured
    ├── MemoryNotFound (LookupError)         no memory with that id
    │   └── EntityNotFound                   no entity with that id, or that name in the scope
    ├── EmbedderMismatch                     store written by another embedder
    ├── StoreError                           the storage backend failed
    │   └── StoreBusy                        could not get the write lock in time
    ├── ProviderError                        an embedder / LLM provider failed (provider, status, cause)
    │   ├── ProviderAuthError                401/403: the key is missing, wrong or not allowed
    │   ├── ProviderTimeout                  no answer within the timeout (after retries)
    │   ├── ProviderUnavailable              429 / 5xx / connection refused (after retries)
    │   └── LLMOutputError                   the model's answer could not be parsed (after one repair)
    ├── AuthenticationError (PermissionError) no or wrong API key (server: 401)
    ├── PermissionDenied (PermissionError)   the key may not do this (server: 403)
    ├── RateLimited                          too many requests for this key; ``retry_after`` seconds (429)
    └── ServiceUnavailable                   the server is not ready, overloaded or unreachable (503)
        └── RequestTimeout                   no answer within the request timeout

The REST server maps this tree to HTTP statuses in one table (``memlane.server.errors``) and
``MemoryClient`` raises the same classes again, so code written against ``Memory`` keeps working.

Messages say what is wrong and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "EmbedderMismatch",
    "EntityNotFound",
    "InvalidFilter",
    "InvalidRequest",
    "LLMOutputError",
    "LLMRequired",
    "MemlaneError",
    "MemoryConflict",
    "MemoryNotFound",
    "PermissionDenied",
    "ProviderAuthError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RequestTimeout",
    "RequestTooLarge",
    "ScopeConflict",
    "ScopeRequired",
    "ServiceUnavailable",
    "StoreBusy",
    "StoreError",
]


class MemlaneError(Exception):
    """Root of every error memlane raises."""


class InvalidRequest(MemlaneError, ValueError):
    """The call's arguments are wrong; the message says which and how to fix them."""


class ScopeRequired(InvalidRequest):
    """An operation that needs a scope was called without user_id, agent_id or run_id."""


class ScopeConflict(InvalidRequest):
    """A scope id given as keyword argument contradicts the one inside ``filters``."""


class InvalidFilter(InvalidRequest):
    """A metadata filter is malformed (unknown operator, wrong value type, bad nesting)."""


class MemoryConflict(InvalidRequest):
    """The write would duplicate another memory of the scope, or reuse an existing id."""


class RequestTooLarge(InvalidRequest):
    """The request is over a server limit (body size, message count, text length)."""


class ConfigError(MemlaneError, ValueError):
    """The configuration is invalid or names something that cannot be loaded."""


class LLMRequired(ConfigError):
    """Fact extraction (``infer=True``) was asked for but no LLM is configured."""


class MemoryNotFound(MemlaneError, LookupError):
    """No memory with the given id exists (or it is not visible in this scope)."""


class EntityNotFound(MemoryNotFound):
    """No entity with the given id, or with the given name in the scope (graph memory).

    A subclass of :class:`MemoryNotFound`, so code (and the REST server's status table) that
    handles a missing memory handles a missing entity the same way.
    """


class EmbedderMismatch(MemlaneError):
    """The store was written with a different embedder (id or dimension)."""


class StoreError(MemlaneError):
    """The storage backend failed; the operation wrote nothing."""


class StoreBusy(StoreError):
    """The store stayed locked by other writers longer than the busy timeout."""


class ProviderError(MemlaneError):
    """An embedding or LLM provider failed; ``provider`` names it, ``status`` is the HTTP status if any.

    Nothing was written: memlane calls providers before it opens a write transaction.
    """

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (401/403): set or fix the API key."""


class ProviderTimeout(ProviderError):
    """The provider did not answer within the configured timeout, on every attempt."""


class ProviderUnavailable(ProviderError):
    """The provider was rate limited (429), failing (5xx) or unreachable, on every attempt."""


class LLMOutputError(ProviderError):
    """The model's answer was not the JSON memlane asked for, even after one repair attempt.

    ``raw`` holds the last answer (for debugging); nothing was written.
    """

    def __init__(self, message: str, *, provider: str = "", raw: str = "") -> None:
        super().__init__(message, provider=provider)
        self.raw = raw


class AuthenticationError(MemlaneError, PermissionError):
    """The server needs an API key and got none, or one it does not know (or that was revoked)."""


class PermissionDenied(MemlaneError, PermissionError):
    """The API key is valid but may not do this (an admin-only call, or a scope outside its namespace)."""


class RateLimited(MemlaneError):
    """Too many requests for this API key; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(MemlaneError):
    """The memlane server is not ready, overloaded, or could not be reached."""


class RequestTimeout(ServiceUnavailable):
    """The request did not finish within the timeout. A write may still have completed: check before retrying."""
