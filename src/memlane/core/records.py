"""Plain records passed between the drivers and the stores (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from memlane.core.graph import Entity, EntityMention, Relation, RelationClaim
from memlane.protocols import Vector
from memlane.types import AddEvent, MemoryItem

__all__ = [
    "FactOutcome",
    "FactPlan",
    "FactWrite",
    "ImportOutcome",
    "MergeOutcome",
    "NewMemory",
    "NewPassage",
    "PortableEntity",
    "PortableEvent",
    "PortableMemory",
    "PortableRelation",
    "SearchRow",
    "SourceMessage",
    "StoredMemory",
]


@dataclass
class NewPassage:
    """One passage of a long memory about to be written: its range of the memory's text (and
    order), its analysed form and its vector (see :mod:`memlane.core.passages`)."""

    seq: int
    start: int
    end: int
    search_text: str
    embedding: Vector


@dataclass
class NewMemory:
    """A memory about to be written: text, its analysed form and vector, scope and times (ISO).

    A long memory also carries its ``passages``; its own ``search_text`` and ``embedding`` are
    then those of its first passage (the start of the text, as an embedder sees it).
    """

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
    passages: list[NewPassage] = field(default_factory=list)
    # The entities it names and the relations it states (core.graph); the store resolves them
    # against the scope's entities inside the write transaction.
    entities: tuple[EntityMention, ...] = ()
    relations: tuple[RelationClaim, ...] = ()


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
    # Consolidation: "merged" (into ``merged_into``) or "archived"; None for an active memory.
    state: str | None = None
    merged_into: str | None = None

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
        if self.state == "merged":
            item["state"] = "merged"
        elif self.state == "archived":
            item["state"] = "archived"
        if self.merged_into is not None:
            item["merged_into"] = self.merged_into
        return item


class SearchRow(NamedTuple):
    """The few columns ranking needs of a search candidate (full rows are read for hits only).

    ``passages`` counts the memory's passages (0 for a memory indexed whole); ``length`` is its
    text's length in characters.
    """

    rid: int
    search_text: str
    timestamp: str
    prev_rid: int | None
    expires_at: str | None
    passages: int = 0
    length: int = 0


@dataclass
class PortableMemory:
    """One memory row as export and import move it between stores (see :mod:`memlane.core.portable`).

    Every row travels, past versions (``version_of``/``valid_until`` set) and expired ones too.
    ``id`` is the row's own id (a past version has its own; ``version_of`` names its memory).
    ``prev_id`` is the id of the message this one follows in its conversation. ``sources`` are
    the messages linked to the memory ``version_of or id``; a store exports them on one row per
    memory (the current row, else the newest past version).

    ``rid`` is the store-local row position an export pages by (0 on import). ``search_text``,
    ``embedding`` and ``passages`` are filled by the importing ``Memory`` (empty on export: they
    depend on the embedder and the passage size, and import recomputes them).

    Consolidation: ``state`` ("merged" or "archived"; None when active) and ``merged_into`` are
    the row's own; ``summarises`` (the ids an episodic summary links to) and ``retrievals`` /
    ``last_retrieved`` (search statistics) belong to the memory and travel on the row that
    carries its sources.
    """

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
    version_of: str | None = None
    valid_until: str | None = None
    conversational: bool = False
    prev_id: str | None = None
    sources: list[SourceMessage] = field(default_factory=list)
    rid: int = 0
    search_text: str = ""
    state: Literal["merged", "archived"] | None = None
    merged_into: str | None = None
    summarises: list[str] = field(default_factory=list)
    retrievals: int = 0
    last_retrieved: str | None = None
    # Its record number in an import (for error messages; 0 when unknown).
    record: int = field(default=0, compare=False)
    # Not compared: equal records are equal whatever vector an embedder gave them.
    embedding: Vector = field(default_factory=lambda: np.zeros(0, dtype=np.float32), compare=False)
    passages: list[NewPassage] = field(default_factory=list, compare=False)

    @property
    def memory_id(self) -> str:
        """The memory this row belongs to: ``version_of`` for a past version, else ``id``."""
        return self.version_of or self.id


@dataclass(frozen=True)
class PortableEvent:
    """One history event as export and import move it; ``seq`` is the store-local event id
    (an export pages by ``(memory_id, seq)``; ignored on import)."""

    memory_id: str
    event: Literal["ADD", "UPDATE", "DELETE", "MERGE", "ARCHIVE"]
    old_memory: str | None
    new_memory: str | None
    created_at: str
    effective_at: str
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    redacted: bool
    seq: int = 0


@dataclass
class PortableEntity:
    """One entity as export and import move it: the entity and the ids of the memories naming it.

    ``record`` is its record number in an import (for error messages; 0 when unknown).
    """

    entity: Entity
    memories: list[str] = field(default_factory=list)
    record: int = field(default=0, compare=False)


@dataclass
class PortableRelation:
    """One relation as export and import move it; ``record`` as in :class:`PortableEntity`."""

    relation: Relation
    record: int = field(default=0, compare=False)


@dataclass(frozen=True)
class MergeOutcome:
    """What a consolidation merge did: the memory kept, the ids merged into it, its text after."""

    into: str
    merged: tuple[str, ...]
    memory: str


class ImportOutcome(NamedTuple):
    """What an import wrote: memory rows written, memories skipped as conflicts, history events written."""

    imported: int
    skipped: int
    history: int
