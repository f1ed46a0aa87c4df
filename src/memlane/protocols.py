"""The seams memlane plugs components into: LLMs, embedders and stores.

A third-party provider implements one of these protocols and registers itself through the
``memlane.providers`` entry-point group (see :mod:`memlane.providers`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from memlane.core.candidates import CandidatePool
    from memlane.core.consolidate import Row
    from memlane.core.filters import Node
    from memlane.core.graph import Entity, EntityMention, Relation, RelationClaim
    from memlane.core.passages import PassageHit
    from memlane.core.records import (
        FactOutcome,
        FactPlan,
        ImportOutcome,
        MergeOutcome,
        NewMemory,
        NewPassage,
        PortableEntity,
        PortableEvent,
        PortableMemory,
        PortableRelation,
        SearchRow,
        StoredMemory,
    )
    from memlane.types import AddEvent, HistoryEvent, Scope, Source

__all__ = [
    "LLM",
    "CandidateStore",
    "Completion",
    "EmbedKind",
    "Embedder",
    "PromptMessage",
    "Store",
    "Vector",
    "Vectors",
]

EmbedKind = Literal["document", "query"]
Vector = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.float32]


class PromptMessage(TypedDict):
    """One message of a prompt: ``role`` is "system", "user" or "assistant"."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Completion:
    """What an LLM answered, and what it cost.

    Attributes:
        text: the answer as text (JSON when a schema was given).
        prompt_tokens, completion_tokens: as reported by the backend (0 when it reports none).
        truncated: the answer stopped at ``max_tokens`` (it is likely cut mid-JSON).
        data: the parsed object when the backend hands structured output over as an object
            (e.g. a forced tool call); ``None`` otherwise, and memlane parses ``text``.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False
    data: Any = None


@runtime_checkable
class LLM(Protocol):
    """A chat model. memlane makes at most a few calls per ``add``, each with a JSON schema.

    Implementations translate every backend failure into :class:`memlane.errors.ProviderError`
    (or a subclass), apply their own timeout, and retry 429/5xx/timeouts with backoff.
    """

    @property
    def model_id(self) -> str:
        """``provider/model``, for logs and usage reports."""
        ...

    def complete(
        self,
        messages: Sequence[PromptMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str = "result",
        max_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> Completion:
        """Answer ``messages``.

        Args:
            messages: the prompt (system first).
            schema: a JSON schema the answer must follow; backends that can constrain output to
                it (JSON schema, grammars, forced tool calls) must, others are asked for JSON.
            schema_name: a short identifier for the schema (some APIs require one).
            max_tokens: the answer's length limit.
            temperature: sampling temperature (memlane uses 0).
        Returns:
            The answer and its token usage.
        Raises:
            ProviderError: the call failed after retries (see the subclasses).
        """
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    An embedder may also carry ``cosine_range = (unrelated, same meaning)``: the cosines its
    unrelated and equivalent texts typically score, which search maps onto [0, 1] (default
    ``(0.10, 0.80)``, all-MiniLM's). Ranking config ``dense_floor`` / ``dense_ceiling`` override it.
    """

    @property
    def model_id(self) -> str:
        """A stable id of the model; the store refuses vectors from a different one."""
        ...

    @property
    def dimension(self) -> int:
        """The vector length."""
        ...

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed ``texts`` into a ``(len(texts), dimension)`` float32 array with unit rows.

        Args:
            texts: the texts; may be empty.
            kind: ``"query"`` for search queries, ``"document"`` for stored memories
                (asymmetric models prefix them differently; symmetric ones ignore it).
        Returns:
            The vectors, one row per text.
        Raises:
            ProviderError: the model failed.
        """
        ...


class Store(Protocol):
    """What ``Memory`` calls on its store; ``memlane.testing.StoreContract`` checks a backend against it.

    Every write method is one transaction; reads never see a half-applied write.

    A long memory (``NewMemory.passages``) is stored with its passages, which go with its row:
    deleted with it, replaced by ``update``, moved to the past version when reconciliation
    archives its text. Search reaches the memory through them: ``dense`` and ``cosines`` give a
    memory the best cosine of its own vector and its passages', ``keyword`` matches a memory when
    its own text or a passage matches, and ``best_passages`` says which passage answers a query.

    Search reads (``dense``, ``keyword``, ``followers``, ``list``) see active memories; ``include``
    adds those consolidation merged or archived (``"merged"``, ``"archived"``), which otherwise
    leave search like past versions while ``get`` still finds them.

    A memory's ``entities`` and ``relations`` (:mod:`memlane.core.graph`) are resolved against its
    exact scope inside the transaction that writes it (``insert``, ``apply_facts``), under the
    scope's write lock: racing adds that name one entity end with one. Deleting a memory deletes
    its mentions, the relations it stated and the entities left naming nothing; ``delete_scope``
    and ``reset`` delete every entity and relation of the scope / store.
    """

    def open(self, embedder_id: str, dimension: int) -> None: ...
    def close(self) -> None: ...
    def migrate(self) -> builtins.list[int]:
        """Apply pending schema migrations without an embedder; the versions applied now."""
        ...

    def describe(self) -> str:
        """Where the store is (a path, or a URL with its password masked), for messages."""
        ...

    def insert(self, rows: Sequence[NewMemory], now: datetime) -> builtins.list[tuple[str, AddEvent]]: ...
    def update(
        self,
        memory_id: str,
        *,
        text: str,
        search_text: str,
        content_hash: str,
        embedding: Vector,
        metadata: dict[str, Any] | None,
        now: datetime,
        passages: Sequence[NewPassage] = (),
        expires_at: datetime | EllipsisType | None = ...,
        entities: Sequence[EntityMention] | None = None,
        relations: Sequence[RelationClaim] = (),
    ) -> tuple[StoredMemory, StoredMemory]:
        """Replace a memory's text, metadata (None keeps it) and expiry (``...`` keeps it).

        ``entities`` and ``relations``: the new text's names and claims, which replace the memory's
        mentions (resolved in the transaction, claims true from ``now``); None keeps its graph rows.
        """
        ...

    def apply_facts(self, plan: FactPlan, now: datetime) -> builtins.list[FactOutcome]: ...
    def sources(self, memory_id: str) -> builtins.list[Source]: ...
    def delete(self, memory_id: str, *, purge: bool, now: datetime) -> StoredMemory: ...
    def delete_scope(self, scope: Scope, *, purge: bool, now: datetime) -> int: ...
    def reset(self) -> None: ...
    def get(self, memory_id: str) -> StoredMemory | None: ...
    def history(self, memory_id: str) -> builtins.list[HistoryEvent]: ...
    def fetch(self, rids: Iterable[int]) -> dict[int, StoredMemory]: ...
    def term_stats(self, terms: Sequence[str]) -> tuple[int, float, dict[str, int]]: ...
    def keyword(
        self,
        scope: Scope,
        node: Node | None,
        terms: Sequence[str],
        k: int,
        now: datetime,
        as_of: datetime | None = None,
        include: Sequence[str] = (),
    ) -> builtins.list[int]: ...
    def dense(
        self,
        scope: Scope,
        node: Node | None,
        query: Vector,
        k: int,
        now: datetime,
        as_of: datetime | None = None,
        include: Sequence[str] = (),
    ) -> builtins.list[tuple[int, float]]: ...
    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]: ...
    def best_passages(self, query: Vector, terms: Sequence[str], rids: Iterable[int]) -> dict[int, PassageHit]:
        """For each given row that has passages, the one that best answers the query: the passage
        holding the most distinct ``terms``, then the highest cosine. Rows without passages are
        left out."""
        ...

    def search_rows(self, rids: Iterable[int]) -> dict[int, SearchRow]: ...
    def followers(
        self,
        rids: Iterable[int],
        scope: Scope,
        node: Node | None,
        now: datetime,
        as_of: datetime | None = None,
        include: Sequence[str] = (),
    ) -> builtins.list[int]: ...
    def list(
        self,
        scope: Scope,
        node: Node | None,
        *,
        limit: int,
        now: datetime | None,
        before: tuple[str, int] | None = None,
        include: Sequence[str] = (),
    ) -> builtins.list[StoredMemory]: ...

    # -- consolidation (memlane._consolidate; memlane.stores.sql_consolidate) -----------------------
    def scopes(self, scope: Scope | None) -> builtins.list[Scope]:
        """The exact scopes holding active memories within ``scope`` (all when None), sorted."""
        ...

    def consolidation_rows(self, scope: Scope, now: datetime) -> builtins.list[Row]:
        """The active, unexpired memories of one exact scope with their vectors, use and summary links."""
        ...

    def access(self, memory_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Each given memory's ``(retrievals, last retrieved)``, for those ever retrieved."""
        ...

    def fetch_active(self, rids: Iterable[int]) -> dict[int, tuple[StoredMemory, str]]:
        """``fetch`` with each row's last activity (the later of its last change and retrieval)."""
        ...

    def record_access(self, hits: Mapping[str, tuple[int, str]]) -> None:
        """Add retrievals (memory id -> times, last time) in one transaction; unknown ids skipped."""
        ...

    def merge(
        self,
        scope: Scope,
        keep: tuple[str, str],
        others: Sequence[tuple[str, str]],
        now: datetime,
        rewrite: NewMemory | None = None,
    ) -> MergeOutcome | None:
        """Merge ``others`` into ``keep`` (each ``(id, hash)`` as planned) in one transaction."""
        ...

    def supersede(self, scope: Scope, old: tuple[str, str], new: tuple[str, str], now: datetime) -> bool:
        """End ``old`` (a past version from then on) because ``new`` contradicts it; one transaction."""
        ...

    def add_summary(self, row: NewMemory, linked: Sequence[str], now: datetime) -> builtins.list[str] | None:
        """Write an episodic memory linked to the active memories it summarises; the ids linked."""
        ...

    def archive(self, scope: Scope, items: Sequence[tuple[str, str]], now: datetime) -> builtins.list[str]:
        """Archive memories (``(id, hash)`` as planned) of one exact scope; the ids archived."""
        ...

    def restore(self, memory_id: str, now: datetime) -> StoredMemory:
        """Make an archived or merged memory active again."""
        ...

    def linked(self, memory_id: str) -> builtins.list[StoredMemory]:
        """The memories an episodic memory summarises, oldest first."""
        ...

    def profile(self, scope: Scope) -> tuple[dict[str, Any], str, str] | None:
        """One exact scope's stored profile: ``(profile, input fingerprint, updated_at)``."""
        ...

    def put_profile(self, scope: Scope, profile: Mapping[str, Any], fingerprint: str, now: datetime) -> None:
        """Store one exact scope's profile."""
        ...

    def lease(self, name: str, holder: str, seconds: float, now: float) -> bool:
        """Take or renew a named lease until ``now + seconds``; False while another holder's runs."""
        ...

    def release(self, name: str, holder: str) -> None:
        """Give a lease up."""
        ...

    # -- graph reads (memlane.core.graph) --------------------------------------------------------
    def entities(self, scope: Scope) -> builtins.list[Entity]:
        """The entities of ``scope`` (the ids it sets must match, as for memories), by name."""
        ...

    def entity(self, entity_id: str) -> Entity | None:
        """One entity by id, or None."""
        ...

    def relations(self, scope: Scope) -> builtins.list[Relation]:
        """Every relation of ``scope``, closed ones included, by ``valid_from``."""
        ...

    def entity_memories(self, entity_ids: Iterable[str]) -> dict[str, builtins.list[str]]:
        """Each given entity id -> the ids of the current memories naming it ([] for none or an unknown id)."""
        ...

    def memory_entities(self, memory_ids: Iterable[str]) -> dict[str, builtins.list[str]]:
        """Each given memory id -> the ids of the entities it names, by name ([] for none or an unknown id)."""
        ...

    # -- export and import (the record format: memlane.core.portable) ------------------------------
    def export_page(self, scope: Scope | None, after_rid: int, limit: int) -> builtins.list[PortableMemory]:
        """Up to ``limit`` rows with row id above ``after_rid``, by row id, with ``rid`` set.

        Every row of ``scope`` (the whole store when None; the ids that are set must match):
        current memories, past versions and expired ones, each with ``prev_id`` and, on one row
        per memory (the current row, else the newest past version), its ``sources``. One page is
        one consistent read; nothing stays locked between pages.
        """
        ...

    def history_page(
        self, scope: Scope | None, after: tuple[str, int] | None, limit: int
    ) -> builtins.list[PortableEvent]:
        """Up to ``limit`` history events whose scope matches, ordered by ``(memory_id, seq)``, after
        ``after`` (the last event's ``(memory_id, seq)``; None to start). Deleted memories included."""
        ...

    def entity_page(self, scope: Scope | None, after: str | None, limit: int) -> builtins.list[PortableEntity]:
        """Up to ``limit`` entities of ``scope`` (the whole store when None) with id above ``after``
        (None to start), by id, each with the ids of the memories naming it; one consistent read."""
        ...

    def relation_page(self, scope: Scope | None, after: str | None, limit: int) -> builtins.list[Relation]:
        """Up to ``limit`` relations of ``scope`` (all when None) with id above ``after``, by id."""
        ...

    def import_records(
        self,
        memories: Sequence[PortableMemory],
        events: Sequence[PortableEvent],
        *,
        on_conflict: Literal["error", "skip"],
        now: datetime,
        entities: Sequence[PortableEntity] = (),
        relations: Sequence[PortableRelation] = (),
    ) -> ImportOutcome:
        """Write embedded rows (ids, times, versions, ``prev_id`` links, sources, consolidation
        ``state`` / ``merged_into`` / summary links / retrieval counts), history events, entities
        (with their mentions) and relations as they are, in one transaction.

        A memory conflicts when the store already knows its id (as a row, a past version's memory
        or in history) or when a current row duplicates the text of a current memory of its scope
        and speaker (in the store or earlier in ``memories``). ``"skip"`` leaves such a memory out
        whole (rows and history); ``"error"`` raises before writing anything. An entity or relation
        whose id the store knows conflicts the same way. A link to a memory or entity that neither
        the import (its conflicts left out) nor the store holds is left out (an export of a store
        in use may name a memory added after its memory pages were read).

        Raises:
            MemoryConflict: a conflict, with ``on_conflict="error"`` (names the memory id).
            InvalidRequest: an entity or relation links rows of two scopes (``record N: ...``);
                nothing was written.
            StoreError: the write failed; nothing was written.
        """
        ...


@runtime_checkable
class CandidateStore(Protocol):
    """A store that gathers a search's whole candidate pool in one call (optional).

    ``Memory.search`` otherwise composes the pool from :class:`Store`'s ``term_stats``, ``dense``,
    ``keyword``, ``followers``, ``search_rows``, ``cosines`` and ``best_passages``; a store whose
    calls each cost a network round trip (PostgreSQL) answers them all at once instead.
    """

    def candidates(
        self,
        scope: Scope,
        node: Node | None,
        query: Vector,
        terms: Sequence[str],
        k: int,
        now: datetime,
        as_of: datetime | None = None,
        include: Sequence[str] = (),
    ) -> CandidatePool:
        """The pool ``memlane._search.compose_pool`` would build from the single-purpose calls,
        ranking alike: the BM25 statistics of ``terms``; the ``k`` nearest memories (``dense``)
        and best keyword matches of the selective terms (``memlane.core.candidates.selective``;
        a store may bound how many matches of a common term it ranks); their followers; each
        candidate's row, live context row, cosine and best passage."""
        ...
