"""memlane: a memory layer for LLM agents.

>>> from memlane import Memory
>>> m = Memory()                                   # doctest: +SKIP
>>> m.add("I'm vegetarian", user_id="alice")       # doctest: +SKIP
>>> m.search("what should I cook?", user_id="alice")  # doctest: +SKIP
"""

from memlane.async_memory import AsyncMemory
from memlane.client import AsyncMemoryClient, MemoryClient
from memlane.config import MemoryConfig
from memlane.core.scope import resolve_scope
from memlane.errors import (
    AuthenticationError,
    ConfigError,
    EmbedderMismatch,
    InvalidFilter,
    InvalidRequest,
    LLMOutputError,
    LLMRequired,
    MemlaneError,
    MemoryConflict,
    MemoryNotFound,
    PermissionDenied,
    ProviderAuthError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    ScopeConflict,
    ScopeRequired,
    ServiceUnavailable,
    StoreBusy,
    StoreError,
)
from memlane.memory import Memory
from memlane.protocols import LLM, Completion, Embedder, PromptMessage
from memlane.types import (
    AddResult,
    AddResultItem,
    Explain,
    HistoryEvent,
    MemoryItem,
    Passage,
    Scope,
    SearchResult,
    Source,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "AddResult",
    "AddResultItem",
    "AsyncMemory",
    "AsyncMemoryClient",
    "AuthenticationError",
    "Completion",
    "ConfigError",
    "Embedder",
    "EmbedderMismatch",
    "Explain",
    "HistoryEvent",
    "InvalidFilter",
    "InvalidRequest",
    "LLMOutputError",
    "LLMRequired",
    "MemlaneError",
    "Memory",
    "MemoryClient",
    "MemoryConfig",
    "MemoryConflict",
    "MemoryItem",
    "MemoryNotFound",
    "Passage",
    "PermissionDenied",
    "PromptMessage",
    "ProviderAuthError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RequestTimeout",
    "RequestTooLarge",
    "Scope",
    "ScopeConflict",
    "ScopeRequired",
    "SearchResult",
    "ServiceUnavailable",
    "Source",
    "StoreBusy",
    "StoreError",
    "Usage",
    "__version__",
    "resolve_scope",
]
