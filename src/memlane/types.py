"""Result types: plain JSON-able dicts with a typed shape (mem0-compatible keys).

They are ``TypedDict``s, so they index like dicts (``hit["memory"]``), serialise with ``json.dumps``
unchanged, and type-check under mypy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired

# typing_extensions' TypedDict: pydantic (the REST server's response schemas) needs it on Python 3.11.
from typing_extensions import TypedDict

__all__ = [
    "AddEvent",
    "AddResult",
    "AddResultItem",
    "ArchiveItem",
    "ConsolidationReport",
    "EntityItem",
    "EntityList",
    "EntityRef",
    "Explain",
    "GraphExplain",
    "HistoryEvent",
    "MemoryItem",
    "MergeItem",
    "Message",
    "NeighbourItem",
    "NeighbourList",
    "Passage",
    "PathResult",
    "Profile",
    "ProfileEntry",
    "RelationItem",
    "RelationList",
    "Scope",
    "SearchResult",
    "Source",
    "SummaryItem",
    "SupersedeItem",
    "Usage",
]

AddEvent = Literal["ADD", "UPDATE", "DELETE", "NONE"]


class Message(TypedDict, total=False):
    """A chat message as apps pass it to ``add``: ``role`` and ``content``, optional ``name``."""

    role: str
    content: str
    name: str


class GraphExplain(TypedDict):
    """Why ``search(graph=True)`` linked a memory to the query: it names ``entity``, which is the
    query's entity ``via`` itself (``distance`` 0, ``relation`` None) or related to it by
    ``relation`` (``distance`` 1); ``value`` is the graph signal in [0, 1]."""

    entity: str
    via: str
    relation: str | None
    distance: int
    value: float


class Explain(TypedDict):
    """Each signal's value in [0, 1], their weights, whether the preceding message added context,
    and the two priors: ``length`` (the factor a long memory's score was multiplied by, 1.0 for
    a short one) and ``newer`` (where the memory's time lies among the candidates', 0 = oldest,
    1 = newest). ``graph`` is set on a memory that ``search(graph=True)`` linked to the query's
    entities."""

    dense: float
    keyword: float
    entity: float
    recency: float
    context: bool
    length: float
    newer: float
    weights: dict[str, float]
    matched_terms: list[str]
    sources: list[str]
    graph: NotRequired[GraphExplain]


class Source(TypedDict):
    """A message a memory was taken from (``get(id, include_sources=True)``)."""

    role: str
    name: str | None
    content: str
    timestamp: str
    memory_id: NotRequired[str]


class Usage(TypedDict):
    """LLM cost of an ``add`` (or running totals on ``Memory.usage``)."""

    llm_calls: int
    prompt_tokens: int
    completion_tokens: int


class Passage(TypedDict):
    """The part of a long memory that answered a search: ``memory[start:end]`` (offsets count
    Unicode code points, as Python strings do)."""

    start: int
    end: int
    text: str


class MemoryItem(TypedDict):
    """One stored memory as returned by get / get_all / search.

    ``passage`` is set on search results for a long memory (one stored as passages): the passage
    that matched best, while ``memory`` stays the whole text.
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
    score: NotRequired[float]
    explain: NotRequired[Explain]
    valid_until: NotRequired[str]
    state: NotRequired[Literal["merged", "archived"]]
    merged_into: NotRequired[str]
    sources: NotRequired[list[Source]]
    passage: NotRequired[Passage]


class SearchResult(TypedDict):
    """``{"results": [...]}``: the shape search and get_all return (get_all adds ``next_cursor``)."""

    results: list[MemoryItem]
    next_cursor: NotRequired[str]


class AddResultItem(TypedDict):
    """One outcome of an add: which memory, its text, and what happened to it."""

    id: str
    memory: str
    event: AddEvent
    previous_memory: NotRequired[str]


class AddResult(TypedDict):
    """``{"results": [...], "mode": "verbatim" | "extracted" | "procedural", "usage": {...}}``."""

    results: list[AddResultItem]
    mode: Literal["verbatim", "extracted", "procedural"]
    usage: Usage


class HistoryEvent(TypedDict):
    """One change to a memory; ``history`` lists them oldest first.

    ``created_at`` is when memlane recorded the change; ``effective_at`` when it happened in the
    world (the message's timestamp): for UPDATE and DELETE, the time the old text stopped being true.
    """

    id: int
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


class EntityItem(TypedDict):
    """An entity of a scope (``Memory.entities``, ``Memory.entity``): a canonical ``name``, its
    ``type`` (None when unknown) and the other names it goes by."""

    id: str
    name: str
    type: str | None
    aliases: list[str]
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    created_at: str
    updated_at: str


class EntityList(TypedDict):
    """``{"results": [...]}``: the entities of a scope, by name."""

    results: list[EntityItem]


class EntityRef(TypedDict):
    """An end of a relation: the entity's id and canonical name."""

    id: str
    name: str


class RelationItem(TypedDict):
    """``subject predicate object``, true from ``valid_from`` until ``valid_until`` (None: still
    true); ``memory_id`` is the memory that stated it."""

    id: str
    subject: EntityRef
    predicate: str
    object: EntityRef
    valid_from: str
    valid_until: str | None
    memory_id: str | None


class RelationList(TypedDict):
    """``{"results": [...]}``: relations, oldest first."""

    results: list[RelationItem]


class NeighbourItem(EntityItem):
    """An entity near another one, ``distance`` relations away."""

    distance: int


class NeighbourList(TypedDict):
    """``{"results": [...]}``: neighbours, nearest first, then by name."""

    results: list[NeighbourItem]


class PathResult(TypedDict):
    """The shortest chain of relations between two entities, in order from the first (each may
    read either way); ``found`` is False when none joins them (``results`` is then empty)."""

    found: bool
    results: list[RelationItem]


class MergeItem(TypedDict):
    """Near-duplicates ``ids`` merged into the memory ``into``, whose text is now ``memory``."""

    into: str
    ids: list[str]
    memory: str


class SupersedeItem(TypedDict):
    """The memory ``id`` (text ``memory``) ended because the newer memory ``by`` contradicts it."""

    id: str
    by: str
    memory: str


class SummaryItem(TypedDict):
    """An episodic memory (``id``; None in a dry run) summarising ``sources``, of ``episode``."""

    id: str | None
    episode: str
    sources: list[str]
    memory: str


class ArchiveItem(TypedDict):
    """The memory ``id`` archived: ``reason`` "idle" (unused past ``archive_after_days``) or "cap"."""

    id: str
    reason: Literal["idle", "cap"]
    memory: str


class ConsolidationReport(TypedDict):
    """What ``consolidate`` did (or, with ``dry_run``, would do), scope by scope.

    ``scopes`` and ``examined`` count the exact scopes and active memories looked at; ``skipped``
    says which steps did not run and why (e.g. summaries without an LLM); ``usage`` counts the
    pass's LLM calls; ``seconds`` its wall time.
    """

    dry_run: bool
    scopes: int
    examined: int
    merged: list[MergeItem]
    superseded: list[SupersedeItem]
    summaries: list[SummaryItem]
    archived: list[ArchiveItem]
    profiles: list[str]
    skipped: list[str]
    usage: Usage
    seconds: float


class ProfileEntry(TypedDict):
    """One line of a profile and the ids of the memories it rests on."""

    text: str
    sources: list[str]


class Profile(TypedDict):
    """A user's stable facts in five sections (``preferences``, ``people``, ``places``, ``work``,
    ``other``), each entry with its sources, and ``text``: the same as a few lines for a prompt.

    ``mode`` says who wrote it: "llm", "graph" (without an LLM: entities and stated preferences)
    or "empty" (nothing known yet). ``updated_at`` is when it was built.
    """

    user_id: str
    sections: dict[str, list[ProfileEntry]]
    text: str
    mode: Literal["llm", "graph", "empty"]
    updated_at: str | None
    memories: int


@dataclass(frozen=True)
class Scope:
    """Who a memory belongs to. At least one id is set for every write and scoped read.

    Matching is by the ids that are set: ``Scope(user_id="alice")`` covers alice's memories
    whatever their agent or run; ``Scope(user_id="alice", run_id="s1")`` only that run's.
    """

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    def is_empty(self) -> bool:
        """True when no id is set."""
        return self.user_id is None and self.agent_id is None and self.run_id is None

    def as_dict(self) -> dict[str, str | None]:
        """The three ids as a dict (None where unset)."""
        return {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}
