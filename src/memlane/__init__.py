"""memlane: a memory layer for LLM agents.

>>> from memlane import Memory
>>> m = Memory()                                   # doctest: +SKIP
>>> m.add("I'm vegetarian", user_id="alice")       # doctest: +SKIP
>>> m.search("what should I cook?", user_id="alice")  # doctest: +SKIP
"""

from memlane.async_memory import AsyncMemory
from memlane.config import MemoryConfig
from memlane.errors import (
    ConfigError,
    EmbedderMismatch,
    InvalidFilter,
    InvalidRequest,
    LLMOutputError,
    LLMRequired,
    MemlaneError,
    MemoryNotFound,
    ProviderAuthError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ScopeConflict,
    ScopeRequired,
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
    "MemoryConfig",
    "MemoryItem",
    "MemoryNotFound",
    "PromptMessage",
    "ProviderAuthError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "Scope",
    "ScopeConflict",
    "ScopeRequired",
    "SearchResult",
    "Source",
    "StoreBusy",
    "StoreError",
    "Usage",
    "__version__",
]
