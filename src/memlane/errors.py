"""The memlane exception tree.

Every error memlane raises derives from :class:`MemlaneError`; where a builtin
fits, the class also inherits it so ``except ValueError`` keeps working::

    MemlaneError
    ├── InvalidRequest (ValueError)          bad arguments: fix the call
    │   ├── ScopeRequired                    no user_id / agent_id / run_id given
    │   ├── ScopeConflict                    keyword scope contradicts filters scope
    │   └── InvalidFilter                    malformed metadata filter
    ├── ConfigError (ValueError)             bad configuration / missing dependency
    ├── LLMRequired (ConfigError)            infer=True but no LLM configured
    ├── MemoryNotFound (LookupError)         no memory with that id
    ├── EmbedderMismatch                     store written by another embedder
    ├── StoreError                           the storage backend failed
    │   └── StoreBusy                        could not get the write lock in time
    └── ProviderError                        an embedder / LLM provider failed

Messages say what is wrong and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EmbedderMismatch",
    "InvalidFilter",
    "InvalidRequest",
    "LLMRequired",
    "MemlaneError",
    "MemoryNotFound",
    "ProviderError",
    "ScopeConflict",
    "ScopeRequired",
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


class ConfigError(MemlaneError, ValueError):
    """The configuration is invalid or names something that cannot be loaded."""


class LLMRequired(ConfigError):
    """Fact extraction (``infer=True``) was asked for but no LLM is configured."""


class MemoryNotFound(MemlaneError, LookupError):
    """No memory with the given id exists (or it is not visible in this scope)."""


class EmbedderMismatch(MemlaneError):
    """The store was written with a different embedder (id or dimension)."""


class StoreError(MemlaneError):
    """The storage backend failed; the operation wrote nothing."""


class StoreBusy(StoreError):
    """The store stayed locked by other writers longer than the busy timeout."""


class ProviderError(MemlaneError):
    """An embedding or LLM provider failed; ``provider`` names it."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider
