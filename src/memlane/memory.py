"""``Memory``: the embedded, synchronous memory engine.

It validates input, embeds outside any transaction, and hands each operation's writes to the
store as one transaction. ``AsyncMemory`` drives this same object from a thread pool, so there is
one pipeline, not two.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Self

from memlane._consolidate import AccessLog, ConsolidationMethods
from memlane._graph_api import (
    GraphMethods,
    edited_mentions,
    graph_candidates,
    graph_rescore,
    verbatim_mentions,
)
from memlane._indexing import index_texts
from memlane._search import add_passage, candidates_of, gather_candidates
from memlane._store_config import build_store
from memlane._transfer_api import TransferMethods, calibrated
from memlane.config import MemoryConfig
from memlane.core.compat import expiry_of_date, one_of, refuse_unknown
from memlane.core.filters import Node, parse_filter, to_iso
from memlane.core.inputs import (
    MAX_MESSAGE_CHARS,
    check_extractable,
    check_limit,
    check_metadata,
    check_text,
    check_threshold,
    decode_cursor,
    encode_cursor,
    normalise_messages,
    parse_time,
    resolve_expiry,
)
from memlane.core.ranking import RankingParams, rank
from memlane.core.records import NewMemory, StoredMemory
from memlane.core.scope import resolve_scope
from memlane.core.text import content_hash, entity_terms, query_terms
from memlane.errors import ConfigError, InvalidRequest, LLMRequired, MemoryNotFound
from memlane.pipeline import AddContext, FactPipeline, UsageMeter, steering
from memlane.protocols import LLM, Embedder, Store
from memlane.providers import registry
from memlane.types import (
    AddResult,
    AddResultItem,
    HistoryEvent,
    MemoryItem,
    Scope,
    SearchResult,
    Source,
    Usage,
)

__all__ = ["Memory"]

_KEEP: Any = object()  # update(): leave the expiry as it is
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)  # search(show_expired=True): nothing has expired before it


def _day_start(value: object) -> object:
    """A bare date (mem0's ``reference_date`` is often ``"2026-05-04"``) as midnight UTC."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, datetime.min.time(), tzinfo=UTC)
    return value


def _memory_type(value: object) -> str | None:
    if value is None:
        return None
    if value in ("procedural", "procedural_memory"):  # the latter is mem0's spelling
        return "procedural"
    raise InvalidRequest(f"memory_type must be 'procedural' or None, got {value!r}")


def _check_flag(value: object, what: str) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{what} must be True or False, got {value!r}")


def _included(merged: object, archived: object) -> tuple[str, ...]:
    """The consolidation states a read shows besides active memories."""
    _check_flag(merged, "include_merged")
    _check_flag(archived, "include_archived")
    return (("merged",) if merged else ()) + (("archived",) if archived else ())


def _optional_text(value: object, what: str) -> str | None:
    return None if value is None else check_text(value, what)


def _topics(value: object, what: str) -> list[str]:
    """A topic or list of topics, as a list of non-blank strings."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(t, str) and t.strip() for t in items):
        raise InvalidRequest(f"{what} must be a string or a list of non-empty strings")
    return [t.strip() for t in items]


class Memory(GraphMethods, TransferMethods, ConsolidationMethods):
    """A memory store for LLM apps: add, search, get, update, delete, history; and the graph of
    entities and relations its memories name (``entities``, ``relations``, ``neighbours``, ``path``).

    Args:
        path: the SQLite file (default ``$MEMLANE_HOME/memlane.db``, ``~/.memlane/memlane.db``).
        embedder: any :class:`memlane.protocols.Embedder` (default: local all-MiniLM-L6-v2).
        store: a store object (default: the config's ``vector_store``: SQLite at ``path``, or
            PostgreSQL when the config names it or ``$MEMLANE_DATABASE_URL`` is set).
        config: a :class:`MemoryConfig` or config dict (see ``from_config``).
        llm: any :class:`memlane.protocols.LLM`; with one, ``add`` extracts facts (default: the
            config's ``llm``, built on first use; none: messages are stored verbatim).
        clock: returns "now" as an aware datetime (tests inject one).

    Nothing is created on disk and no model loads until the first operation.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedder: Embedder | None = None,
        store: Store | None = None,
        config: MemoryConfig | Mapping[str, Any] | None = None,
        llm: LLM | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        cfg = config if isinstance(config, MemoryConfig) else MemoryConfig.from_dict(dict(config or {}))
        if llm is not None and not isinstance(llm, LLM):
            raise ConfigError(
                f"llm must implement memlane.protocols.LLM (model_id and complete()), got {type(llm).__name__}; "
                "build one with memlane.providers.registry.llm(name, config)"
            )
        if path is not None and store is not None:
            raise InvalidRequest("give path or store, not both")
        self.config = cfg
        self._embedder = embedder or registry.embedder(cfg.embedder.provider, cfg.embedder.config)
        dims = cfg.vector_store.embedding_model_dims
        if dims is not None and dims != self._embedder.dimension:
            raise ConfigError(
                f"vector_store embedding_model_dims is {dims} but the embedder {self._embedder.model_id!r} makes "
                f"{self._embedder.dimension}-dimension vectors; fix embedding_model_dims or drop it"
            )
        if store is None:  # the config's store: SQLite, or PostgreSQL (see memlane._store_config)
            store = build_store(cfg.vector_store, path, cfg.database_path())
        self._store: Store = store
        self._ranking: RankingParams = calibrated(cfg, self._embedder)
        self._passages = cfg.passages
        self._clock = clock or (lambda: datetime.now(UTC))
        self._llm: LLM | None = llm
        self._usage = UsageMeter()
        self._access = AccessLog()
        self._opened = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | MemoryConfig, **overrides: Any) -> Memory:
        """Build from a (mem0-shaped) config dict; keyword overrides go to the constructor.

        Raises:
            ConfigError: the config is invalid.
        """
        return cls(config=config, **overrides)

    @property
    def store(self) -> Store:
        """The storage backend."""
        return self._store

    @property
    def embedder(self) -> Embedder:
        """The embedding provider."""
        return self._embedder

    @property
    def llm(self) -> LLM | None:
        """The LLM that extracts facts, or None (built from the config on first access).

        Raises:
            ConfigError: the configured provider is unknown, its SDK is missing, or its config is invalid.
        """
        if self._llm is None and self.config.llm is not None:
            self._llm = registry.llm(self.config.llm.provider, self.config.llm.config)
        return self._llm

    @property
    def usage(self) -> Usage:
        """LLM calls and tokens spent by this Memory's adds so far."""
        return self._usage.snapshot()

    def _open(self) -> Store:
        if not self._opened:
            self._store.open(self._embedder.model_id, self._embedder.dimension)
            self._opened = True
        return self._store

    def _now(self) -> datetime:
        now = self._clock()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    def close(self) -> None:
        """Write pending search statistics and release the database connection."""
        if self._opened:
            self._flush_access()
        self._store.close()
        self._opened = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes --------------------------------------------------------------------------
    def add(
        self,
        messages: str | Mapping[str, Any] | list[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        filters: Mapping[str, Any] | None = None,
        infer: bool | None = None,
        timestamp: datetime | str | float | None = None,
        expires_at: datetime | str | float | None = None,
        ttl: float | Any | None = None,
        instructions: str | None = None,
        prompt: str | None = None,
        includes: str | list[str] | None = None,
        excludes: str | list[str] | None = None,
        memory_type: str | None = None,
        expiration_date: date | datetime | str | None = None,
        custom_instructions: str | None = None,
        **unsupported: Any,
    ) -> AddResult:
        """Remember messages in a scope.

        With an LLM (the default when one is configured) the messages are distilled into
        self-contained facts and reconciled with the scope's memories: a known fact gives
        ``NONE`` (pointing at the memory that has it), a changed one ``UPDATE`` (with
        ``previous_memory``; the old text stays in ``history`` and in ``search(as_of=...)``), an
        invalidated one ``DELETE``, anything else ``ADD``. Each fact keeps the messages it came
        from (``get(id, include_sources=True)``). Without an LLM, or with ``infer=False``, each
        message is stored verbatim; an exact duplicate in the scope gives ``NONE``.

        Args:
            messages: a string, a ``{"role", "content", "name"?}`` dict, or a list of them;
                ``system`` messages (instructions to the model) are left out.
            user_id, agent_id, run_id: the scope (at least one; also accepted inside ``filters``).
            metadata: a JSON object stored with every memory of this call.
            infer: extract facts with the LLM (default: when one is configured).
            timestamp: when the messages were said (default: now); relative dates in them
                ("last Tuesday") are resolved against it.
            expires_at, ttl: when the memories stop being returned (a time, or seconds from now).
            expiration_date: mem0's form of ``expires_at``: a date (``"2026-12-31"``); the
                memories are returned through that day (UTC) and hidden from the next.
            instructions: extra rules for this call's extraction ("only food preferences");
                ``prompt`` and ``custom_instructions`` are accepted as mem0's names for it.
            includes, excludes: topics to keep to / never remember in this call.
            memory_type: ``"procedural"`` (needs ``agent_id`` and an LLM) condenses an agent's run
                into one procedural memory (metadata ``memory_type: procedural``).
        Returns:
            ``{"results": [{"id", "memory", "event", "previous_memory"?}], "mode", "usage"}``;
            ``mode`` says what happened: "verbatim", "extracted" or "procedural"; ``usage`` counts
            this call's LLM calls and tokens.
        Raises:
            ScopeRequired, ScopeConflict, InvalidRequest, LLMRequired, ProviderError (the LLM
            failed; nothing was written), LLMOutputError, StoreError.
        """
        refuse_unknown("add", unsupported)
        scope, rest = resolve_scope(
            user_id=user_id, agent_id=agent_id, run_id=run_id, filters=filters, required=True, operation="add"
        )
        if rest:
            raise InvalidRequest(f"add() takes only scope ids in filters, got {sorted(rest)}; use metadata")
        kind = _memory_type(memory_type)
        if infer is not None and not isinstance(infer, bool):
            raise InvalidRequest(f"infer must be True, False or None, got {infer!r}")
        if instructions is not None and prompt is not None:
            raise InvalidRequest("give instructions or prompt (mem0's name for it), not both")
        given = one_of("instructions", instructions if instructions is not None else prompt,
                       "custom_instructions", custom_instructions)  # fmt: skip
        rules = _optional_text(given, "instructions")
        keep, avoid = _topics(includes, "includes"), _topics(excludes, "excludes")
        llm = self.llm if infer is not False or kind == "procedural" else None
        if kind == "procedural" and scope.agent_id is None:
            raise InvalidRequest("procedural memory belongs to an agent: pass agent_id")
        if llm is None and (infer is True or kind == "procedural"):
            raise LLMRequired(
                "this add needs an LLM (to extract facts or summarise a procedure) and none is configured; "
                "configure one (Memory(llm=...) or config 'llm'), or pass infer=False to store the messages verbatim"
            )
        if kind == "procedural" and infer is False:
            raise InvalidRequest("procedural memory is written by the LLM: drop infer=False")
        # A system message instructs the model; it is not something anyone said. Chat apps pass
        # the whole prompt (mem0's README does), whose system message repeats earlier memories.
        msgs = [m for m in normalise_messages(messages) if m.role != "system"]
        if not msgs:
            raise InvalidRequest("add() got only system messages: nothing was said to remember; pass the chat turns")
        if llm is not None:
            check_extractable(msgs)
        meta = check_metadata(metadata)
        now = self._now()
        when = parse_time(timestamp, "timestamp") if timestamp is not None else now
        if expiration_date is not None:
            if expires_at is not None or ttl is not None:
                raise InvalidRequest("give expires_at, ttl or expiration_date (mem0's name), not two of them")
            expires_at = expiry_of_date(expiration_date)
        expiry = resolve_expiry(expires_at, ttl, now)
        if llm is not None:
            ctx = AddContext(
                messages=msgs,
                scope=scope,
                metadata=meta,
                when=when,
                expires_at=to_iso(expiry) if expiry else None,
                steering=steering(self.config.extraction, rules, keep, avoid),
                now=now,
            )
            pipeline = FactPipeline(llm, self._embedder, self._open(), self.config.extraction, self._usage)
            return pipeline.add_procedure(ctx) if kind == "procedural" else pipeline.add_facts(ctx)
        if rules is not None or keep or avoid:
            raise InvalidRequest("instructions, includes and excludes steer fact extraction: they need an LLM")
        store = self._open()
        indexed = index_texts(self._embedder, [(m.content, m.name) for m in msgs], self._passages)
        created = to_iso(now)
        rows = [
            NewMemory(
                id=str(uuid.uuid4()),
                memory=m.content,
                search_text=ix.search_text,
                hash=content_hash(m.content),
                embedding=ix.embedding,
                user_id=scope.user_id,
                agent_id=scope.agent_id,
                run_id=scope.run_id,
                role=m.role,
                actor_id=m.name,
                metadata=meta,
                created_at=created,
                timestamp=to_iso(when),
                expires_at=to_iso(expiry) if expiry else None,
                conversational=True,
                passages=ix.passages,
                entities=verbatim_mentions(m.content, m.name),  # no LLM: names, and no relations
            )
            for m, ix in zip(msgs, indexed, strict=True)
        ]
        outcomes = store.insert(rows, now)
        results = [
            AddResultItem(id=mid, memory=row.memory, event=event)
            for row, (mid, event) in zip(rows, outcomes, strict=True)
        ]
        return AddResult(
            results=results, mode="verbatim", usage=Usage(llm_calls=0, prompt_tokens=0, completion_tokens=0)
        )

    def update(
        self,
        memory_id: str,
        data: str | None = None,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        expires_at: datetime | str | float | None = _KEEP,
        expiration_date: date | datetime | str | None = _KEEP,
    ) -> MemoryItem:
        """Replace a memory's text, metadata or expiry (whichever are given); history keeps the old text.

        A text longer than the passage size (config ``passages.max_chars``) is searched passage
        by passage, as in ``add``. A new text's entity links are those of its entities still named
        in it, plus the names it adds (found as without an LLM); the relations stay.

        Args:
            data: the new text (``text`` is accepted as mem0's name for it); None keeps the text.
            metadata: replaces the whole metadata object; None keeps it.
            expires_at: when the memory stops being returned; None clears the expiry.
            expiration_date: mem0's form of it: a ``YYYY-MM-DD`` date, visible through that day
                (UTC); None clears the expiry.
        Returns:
            The updated memory.
        Raises:
            MemoryNotFound: no memory has this id.
            InvalidRequest: nothing to change, empty text, or text that duplicates another memory
                of the scope.
        """
        check_text(memory_id, "memory_id")
        new_text = one_of("data", data, "text", text)
        if expires_at is not _KEEP and expiration_date is not _KEEP:
            raise InvalidRequest("give expires_at or expiration_date (mem0's name for it), not both")
        if new_text is None and metadata is None and expires_at is _KEEP and expiration_date is _KEEP:
            raise InvalidRequest("update() needs data (the new text), metadata or expires_at")
        expiry: Any = _KEEP
        if expiration_date is not _KEEP:
            expiry = None if expiration_date is None else expiry_of_date(expiration_date)
        elif expires_at is not _KEEP:
            expiry = None if expires_at is None else parse_time(expires_at, "expires_at")
        meta = check_metadata(metadata) if metadata is not None else None
        store = self._open()
        current = store.get(memory_id)
        if current is None:
            raise MemoryNotFound(f"no memory with id {memory_id!r}")
        text_now = current.memory if new_text is None else check_text(new_text, "data", limit=MAX_MESSAGE_CHARS)
        (indexed,) = index_texts(self._embedder, [(text_now, current.actor_id)], self._passages)
        _, after = store.update(
            memory_id,
            text=text_now,
            search_text=indexed.search_text,
            content_hash=content_hash(text_now),
            embedding=indexed.embedding,
            metadata=meta,
            now=self._now(),
            passages=indexed.passages,
            expires_at=... if expiry is _KEEP else expiry,
            entities=None if new_text is None else edited_mentions(store, memory_id, text_now),
        )
        return after.to_item()

    def delete(self, memory_id: str, *, purge: bool = False, **unsupported: Any) -> dict[str, str]:
        """Delete one memory everywhere (row, vector, keyword index).

        History records the deletion and, unless ``purge=True``, keeps the deleted text (so
        ``history()`` still shows what was said); ``purge=True`` erases the text from history too.

        Raises:
            MemoryNotFound: no memory has this id.
        """
        refuse_unknown("delete", unsupported)
        check_text(memory_id, "memory_id")
        self._open().delete(memory_id, purge=purge, now=self._now())
        return {"message": f"memory {memory_id} deleted"}

    def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        purge: bool = False,
        **unsupported: Any,
    ) -> dict[str, Any]:
        """Delete every memory of a scope; ``purge=True`` also erases the scope's history text.

        ``delete_all(user_id="alice", purge=True)`` is the right to be forgotten: no text of
        alice's remains in memories, the keyword index, history or the write-ahead log.

        Raises:
            ScopeRequired: no scope given (there is no "delete everything" here: use ``reset``).
        """
        refuse_unknown("delete_all", unsupported)
        scope, rest = resolve_scope(
            user_id=user_id,
            agent_id=agent_id,
            run_id=run_id,
            filters=filters,
            required=True,
            operation="delete_all",
        )
        if rest:
            raise InvalidRequest(f"delete_all() takes only scope ids in filters, got {sorted(rest)}")
        count = self._open().delete_scope(scope, purge=purge, now=self._now())
        return {"message": f"{count} memories deleted", "deleted": count}

    def reset(self) -> None:
        """Delete everything in the store (all scopes, all history)."""
        self._open().reset()
        self._opened = False

    # -- reads ---------------------------------------------------------------------------
    def get(self, memory_id: str, *, include_sources: bool = False) -> MemoryItem:
        """One memory by id.

        Args:
            include_sources: add ``sources``: the messages the memory was extracted from (for
                a verbatim memory, the message itself; for an episodic summary, the memories it
                summarises, each with its ``memory_id``).
        Raises:
            MemoryNotFound: no memory has this id.
        """
        check_text(memory_id, "memory_id")
        store = self._open()
        found = store.get(memory_id)
        if found is None:
            raise MemoryNotFound(f"no memory with id {memory_id!r}")
        item = found.to_item()
        if include_sources:
            sources = store.sources(memory_id)
            if found.metadata.get("memory_type") == "episodic":  # a summary's sources: what it summarises
                sources = [
                    Source(role=m.role or "memory", name=m.actor_id, content=m.memory, timestamp=m.timestamp,
                           memory_id=m.id)
                    for m in store.linked(memory_id)
                ]  # fmt: skip
            elif not sources and found.role is not None:  # a verbatim message is its own source
                sources = [
                    Source(role=found.role, name=found.actor_id, content=found.memory, timestamp=found.timestamp)
                ]
            item["sources"] = sources
        return item

    def get_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        top_k: int | None = None,
        show_expired: bool = False,
        include_merged: bool = False,
        include_archived: bool = False,
        **unsupported: Any,
    ) -> SearchResult:
        """Memories of a scope, newest first, optionally filtered on metadata (unexpired only).

        Args:
            limit: at most this many memories per call (default 100; ``top_k`` is accepted as
                mem0's name for it).
            cursor: continue after the previous page: pass its ``next_cursor``. Pages stay
                consistent while others write (memories added meanwhile are newer and not repeated).
            show_expired: include memories whose ``expires_at`` has passed.
            include_merged, include_archived: include memories consolidation merged into another
                (they carry ``state: "merged"`` and ``merged_into``) or archived (``state: "archived"``).
        Returns:
            ``{"results": [...]}``, plus ``next_cursor`` when the page is full (there may be more).
        Raises:
            ScopeRequired, ScopeConflict, InvalidFilter, InvalidRequest.
        """
        refuse_unknown("get_all", unsupported)
        scope, node = self._scope_and_filter(user_id, agent_id, run_id, filters, "get_all")
        chosen = one_of("limit", limit, "top_k", top_k)
        limit = check_limit(100 if chosen is None else chosen)
        _check_flag(show_expired, "show_expired")
        include = _included(include_merged, include_archived)
        before = decode_cursor(cursor) if cursor is not None else None
        now = None if show_expired else self._now()
        extra: dict[str, Any] = {"include": include} if include else {}
        rows = self._open().list(scope, node, limit=limit, now=now, before=before, **extra)
        result = SearchResult(results=[r.to_item() for r in rows])
        if len(rows) == limit:
            result["next_cursor"] = encode_cursor(rows[-1].created_at, rows[-1].rid)
        return result

    def history(self, memory_id: str) -> list[HistoryEvent]:
        """Every change to a memory, oldest first (also after it was deleted)."""
        check_text(memory_id, "memory_id")
        return self._open().history(memory_id)

    def _scope_and_filter(
        self,
        user_id: str | None,
        agent_id: str | None,
        run_id: str | None,
        filters: Mapping[str, Any] | None,
        operation: str,
    ) -> tuple[Scope, Node | None]:
        scope, rest = resolve_scope(
            user_id=user_id,
            agent_id=agent_id,
            run_id=run_id,
            filters=filters,
            required=True,
            operation=operation,
        )
        return scope, (parse_filter(rest) if rest else None)

    def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        threshold: float | None = None,
        explain: bool = False,
        recency_weight: float = 0.0,
        half_life_days: float = 30.0,
        as_of: datetime | str | float | None = None,
        top_k: int | None = None,
        show_expired: bool = False,
        reference_date: datetime | date | str | float | None = None,
        rerank: bool = False,
        graph: bool = False,
        include_merged: bool = False,
        include_archived: bool = False,
        **unsupported: Any,
    ) -> SearchResult:
        """The memories of a scope most relevant to ``query``, best first.

        Dense (embedding) and keyword (BM25) search both propose candidates; each candidate gets
        one score in [0, 1] from meaning, keywords and named entities (and recency when
        ``recency_weight > 0``), comparable across queries; a long memory's score is discounted
        for its length and, among equals, a newer memory edges out an older one (see
        ``memlane.core.ranking``).

        Args:
            query: the text to search for.
            filters: metadata filter (see ``memlane.core.filters``), applied inside the store.
            limit: at most this many results (default 10; ``top_k`` is accepted as mem0's name).
            threshold: drop results scoring below it.
            explain: add each signal's contribution to every result under ``explain``.
            recency_weight: weight of recency (0 = off) relative to the other signals (sum ~1).
            half_life_days: age at which the recency signal halves.
            as_of: search what was true at that time instead of now: memories whose timestamp
                is not later, including past versions that reconciliation superseded or
                invalidated since (those carry ``valid_until``).
            show_expired: include memories whose ``expires_at`` has passed.
            reference_date: the "now" that recency is measured from (a date, time or epoch
                seconds; default: now). It does not hide anything: ``as_of`` does that.
            rerank: accepted for mem0 code. memlane has no second ranking pass to switch on: every
                search already scores each candidate on meaning, keywords, entities and time.
            graph: also follow the graph: the memories naming the entities the query names, or
                entities one relation away from them, join the candidates and gain a graph signal
                (``explain`` says how each was reached under ``graph``). Without an entity of the
                scope in the query, the ranking is the same as without it.
            include_merged, include_archived: also search memories consolidation merged into
                another or archived (see ``consolidate``); they carry ``state``.
        Returns:
            ``{"results": [...]}``; a long memory (one with passages) is one result, ranked on
            its best passage, and carries it as ``passage``: ``{"start", "end", "text"}``, a range
            of ``memory`` (which stays the whole text).
        Raises:
            ScopeRequired, ScopeConflict, InvalidFilter, InvalidRequest.
        """
        refuse_unknown("search", unsupported)
        text = check_text(query, "query")
        scope, node = self._scope_and_filter(user_id, agent_id, run_id, filters, "search")
        chosen = one_of("limit", limit, "top_k", top_k)
        limit = check_limit(10 if chosen is None else chosen, maximum=1000)
        _check_flag(show_expired, "show_expired")
        _check_flag(rerank, "rerank")
        _check_flag(graph, "graph")
        include = _included(include_merged, include_archived)
        cutoff = check_threshold(threshold)
        if not isinstance(recency_weight, int | float) or not 0 <= recency_weight <= 10:
            raise InvalidRequest("recency_weight must be a number from 0 to 10")
        if not isinstance(half_life_days, int | float) or half_life_days <= 0:
            raise InvalidRequest("half_life_days must be a positive number")
        at = parse_time(as_of, "as_of") if as_of is not None else None
        store = self._open()
        now = self._now()
        if reference_date is not None:
            now = parse_time(_day_start(reference_date), "reference_date")
        visible_after = _EARLIEST if show_expired else self._now()  # what has expired is hidden
        qvec = self._embedder.embed([text], kind="query")[0]
        terms = query_terms(text)
        k = max(self._ranking.candidates, 3 * limit)
        pool, candidates = gather_candidates(store, scope, node, qvec, terms, k, visible_after, at, include)
        links = graph_candidates(store, scope, node, text, qvec, terms, pool, visible_after, at) if graph else None
        if links is not None and links.joined:
            candidates = candidates_of(pool, visible_after)
        ranked = rank(
            list(candidates.values()), query_terms=terms, entities=entity_terms(text), df=pool.df,
            n_docs=pool.n_docs, avg_len=pool.avg_len, params=self._ranking, recency_weight=float(recency_weight),
            half_life_days=float(half_life_days), now_epoch=now.timestamp(),
        )  # fmt: skip
        ranked, linked = graph_rescore(store, ranked, links, limit)
        read: dict[int, StoredMemory] = {}
        if at is None:  # idle memories sink a little (not in a search of the past)
            ranked, read = self._decay(store, ranked, limit)
        if cutoff is not None:
            ranked = [r for r in ranked if r.score >= cutoff]
        ranked = ranked[:limit]
        missing = [int(r.id) for r in ranked if int(r.id) not in read]
        rows = {**read, **store.fetch(missing)} if missing else read
        results: list[MemoryItem] = []
        for hit in ranked:
            item = rows[int(hit.id)].to_item()
            add_passage(item, hit.candidate)
            item["score"] = hit.score
            if explain:
                item["explain"] = hit.explain()
                if int(hit.id) in linked:
                    item["explain"]["graph"] = linked[int(hit.id)]
            results.append(item)
        self._retrieved([item["id"] for item in results])
        return SearchResult(results=results)
