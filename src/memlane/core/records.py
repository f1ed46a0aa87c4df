"""Plain records passed between the drivers and the stores (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from memlane.protocols import Vector
from memlane.types import MemoryItem

__all__ = ["NewMemory", "SearchRow", "StoredMemory"]


@dataclass
class NewMemory:
    """A memory about to be written: text, its analysed form and vector, scope and times (ISO)."""

    id: str
    memory: str
    search_text: str
    hash: str
    embedding: Vector
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    role: str | None
    actor_id: str | None
    metadata: dict[str, Any]
    created_at: str
    timestamp: str
    expires_at: str | None
    # Verbatim chat messages link to the message before them (see SQLiteStore.insert).
    conversational: bool = False


@dataclass
class StoredMemory:
    """A memory as read back from a store."""

    id: str
    memory: str
    hash: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    role: str | None
    actor_id: str | None
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    timestamp: str
    expires_at: str | None
    search_text: str = ""
    rid: int = 0
    prev_rid: int | None = None
    embedding: Vector = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def to_item(self) -> MemoryItem:
        """The public dict shape (no search internals)."""
        return MemoryItem(
            id=self.id,
            memory=self.memory,
            hash=self.hash,
            user_id=self.user_id,
            agent_id=self.agent_id,
            run_id=self.run_id,
            role=self.role,
            actor_id=self.actor_id,
            metadata=self.metadata,
            created_at=self.created_at,
            updated_at=self.updated_at,
            timestamp=self.timestamp,
            expires_at=self.expires_at,
        )


class SearchRow(NamedTuple):
    """The few columns ranking needs of a search candidate (full rows are read for hits only)."""

    rid: int
    search_text: str
    timestamp: str
    prev_rid: int | None
    expires_at: str | None
