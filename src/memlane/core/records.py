"""Plain records passed between the drivers and the stores (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from memlane.protocols import Vector
from memlane.types import AddEvent, MemoryItem

__all__ = ["FactOutcome", "FactPlan", "FactWrite", "NewMemory", "SearchRow", "SourceMessage", "StoredMemory"]


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


@dataclass(frozen=True)
class SourceMessage:
    """A message that facts were extracted from (kept per scope, as provenance)."""

    role: str
    name: str | None
    content: str
    timestamp: str


@dataclass
class FactWrite:
    """One extracted fact and what reconciliation decided it does.

    ``new`` is always the fact as a complete new memory, so the store can fall back to adding it
    when the decision no longer applies inside the transaction (the target changed or vanished
    since the model saw it). For UPDATE, ``new`` carries the rewritten text that replaces the
    target's. ``target_hash`` is the target's content hash as shown to the model.
    """

    action: AddEvent
    new: NewMemory
    sources: tuple[int, ...] = ()
    target_id: str | None = None
    target_hash: str | None = None


@dataclass
class FactPlan:
    """Everything one ``add`` writes: its messages (provenance) and each fact's write, in one transaction."""

    messages: list[SourceMessage]
    writes: list[FactWrite]


class FactOutcome(NamedTuple):
    """What a fact write did: the memory it concerns, the event, the memory's text, the text before."""

    id: str
    event: AddEvent
    memory: str
    previous: str | None = None


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
    # Set on a past version (reachable only through search(as_of=...)): when it stopped being true.
    valid_until: str | None = None
    embedding: Vector = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def to_item(self) -> MemoryItem:
        """The public dict shape (no search internals)."""
        item = MemoryItem(
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
        if self.valid_until is not None:
            item["valid_until"] = self.valid_until
        return item


class SearchRow(NamedTuple):
    """The few columns ranking needs of a search candidate (full rows are read for hits only)."""

    rid: int
    search_text: str
    timestamp: str
    prev_rid: int | None
    expires_at: str | None
