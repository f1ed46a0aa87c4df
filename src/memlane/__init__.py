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
    LLMRequired,
    MemlaneError,
    MemoryNotFound,
    ProviderError,
    ScopeConflict,
    ScopeRequired,
    StoreBusy,
    StoreError,
)
from memlane.memory import Memory
from memlane.types import AddResult, AddResultItem, Explain, HistoryEvent, MemoryItem, Scope, SearchResult

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "AddResultItem",
    "AsyncMemory",
    "ConfigError",
    "EmbedderMismatch",
    "Explain",
    "HistoryEvent",
    "InvalidFilter",
    "InvalidRequest",
    "LLMRequired",
    "MemlaneError",
    "Memory",
    "MemoryConfig",
    "MemoryItem",
    "MemoryNotFound",
    "ProviderError",
    "Scope",
    "ScopeConflict",
    "ScopeRequired",
    "SearchResult",
    "StoreBusy",
    "StoreError",
    "__version__",
]
