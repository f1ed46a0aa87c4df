"""What the SQL stores share: every row-level operation, written once over a :class:`Tx`.

``SQLiteStore`` and ``PostgresStore`` subclass :class:`SQLStore` and supply the connection and
transaction handling (``_write``, ``_read``, ``_snapshot``), the filter compiler, and their own
search indexes (``dense``, ``keyword``, ``term_stats``, ``cosines``). Everything that decides what
a memory, its history and its provenance look like after a write lives here, so the two backends
cannot drift apart; the store contract suite checks both.

Writes that can create or change a memory of an exact scope hold that scope's write lock
(:meth:`Tx.lock_scope`): a no-op on SQLite, whose ``BEGIN IMMEDIATE`` serialises all writers, and
an advisory lock on PostgreSQL, where many processes write at once.
"""

from __future__ import annotations

import builtins
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import EllipsisType
from typing import Any, Literal, TypeVar

from memlane.core.filters import Node, to_iso
from memlane.core.graph import EntityMention, RelationClaim
from memlane.core.records import (
    FactOutcome,
    FactPlan,
    ImportOutcome,
    NewMemory,
    NewPassage,
    PortableEntity,
    PortableEvent,
    PortableMemory,
    PortableRelation,
    SearchRow,
    StoredMemory,
)
from memlane.errors import MemoryConflict, MemoryNotFound
from memlane.protocols import Vector
from memlane.stores import sql_export
from memlane.stores.sql_consolidate import ConsolidationOps, forget_scope_profiles
from memlane.stores.sql_graph import GraphEdit, delete_scope_graph, replace_graph, write_graph
from memlane.stores.sql_graph_io import GraphReads
from memlane.stores.sql_rows import (
    COLUMNS,
    LIVE,
    FactWriter,
    delete_rows,
    insert_passages,
    insert_row,
    live_duplicate,
    none,
    record,
    row_to_memory,
    scope_sql,
    states_sql,
    visible_sql,
)
from memlane.stores.sql_tx import Tx
from memlane.types import AddEvent, HistoryEvent, Scope, Source

__all__ = ["CONVERSATION_GAP", "FILTER_COLUMNS", "SQLStore"]

T = TypeVar("T")
# Where filters on reserved fields read (the same expressions on both backends).
FILTER_COLUMNS = {
    "id": "m.id",
    "memory": "m.memory",
    "role": "m.role",
    "actor_id": "NULLIF(m.actor_id, '')",
    "created_at": "m.created_at",
    "updated_at": "m.updated_at",
    "timestamp": "m.timestamp",
    "expires_at": "m.expires_at",
}
# Messages added within this many seconds of the previous one in the same scope continue its conversation.
CONVERSATION_GAP = 600


class SQLStore(GraphReads, ConsolidationOps, ABC):
    """The row-level half of a SQL store (see the module docstring); the graph reads come from
    :class:`memlane.stores.sql_graph_io.GraphReads`."""

    # A planner hint for ``followers`` (SQLite needs one; see SQLiteStore).
    _followers_hint = ""

    # -- what a backend supplies -------------------------------------------------------------
    @abstractmethod
    def _write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one write transaction: commit its result, or roll back and raise."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        """Rows of one read (``?`` placeholders)."""

    @abstractmethod
    def _snapshot(self, fn: Callable[[Tx], T]) -> T:
        """Run the reads of ``fn`` in one consistent read transaction."""

    @abstractmethod
    def _filter_sql(self, node: Node) -> tuple[str, builtins.list[Any]]:
        """The metadata filter as this backend's SQL (over ``memories m``)."""

    def _after_write(self, tx: Tx) -> None:
        """Housekeeping at the end of an insert or import transaction."""
        return None  # nothing by default

    def _purged(self, tx: Tx) -> None:
        """Inside a purge's transaction, after the text left the rows and history."""
        return None  # nothing by default

    def _after_purge(self) -> None:
        """After a purge committed."""
        return None  # nothing by default

    # -- writes --------------------------------------------------------------------------
    def insert(self, rows: Sequence[NewMemory], now: datetime) -> builtins.list[tuple[str, AddEvent]]:
        """Insert memories in one transaction; an exact duplicate in the scope yields (its id, NONE).

        A written memory's entities and relations are resolved against its scope and written in
        the same transaction (a duplicate's are not: the memory already there keeps its own).
        """
        now_iso = to_iso(now)

        def run(tx: Tx) -> builtins.list[tuple[str, AddEvent]]:
            for scope in sorted({(r.user_id or "", r.agent_id or "", r.run_id or "") for r in rows}):
                tx.lock_scope(scope)
            out: builtins.list[tuple[str, AddEvent]] = []
            previous: int | None = None
            for i, r in enumerate(rows):
                key = (r.user_id or "", r.agent_id or "", r.run_id or "", r.actor_id or "", r.hash)
                if r.conversational and i == 0:
                    previous = self._conversation_tail(tx, key[:3], now, r.timestamp)
                existing = live_duplicate(tx, key)
                if existing and (existing[1] is None or existing[1] > now_iso):
                    out.append((existing[0], "NONE"))
                    previous = existing[2]
                    continue
                if existing:  # an expired copy: it is gone for readers, so replace it
                    delete_rows(tx, "m.id = ?", [existing[0]], now_iso)
                previous = insert_row(tx, r, previous if r.conversational else None)
                write_graph(tx, r, r.id, now_iso)
                record(tx, r.id, "ADD", None, r.memory, r.created_at, r.timestamp, key[:3])
                out.append((r.id, "ADD"))
            self._after_write(tx)
            return out

        return self._write(run)

    @staticmethod
    def _conversation_tail(tx: Tx, scope: tuple[str, str, str], now: datetime, timestamp: str) -> int | None:
        """The latest message of the same exact scope that this one continues, if any.

        A chat app adds each turn as it happens, so the user's reply in this call continues the
        assistant's message of the previous call. "Continues" means added within
        CONVERSATION_GAP seconds and happening (``timestamp``) within that gap too, so a replayed
        history with past timestamps does not link one session to the next.
        """
        since = to_iso(now - timedelta(seconds=CONVERSATION_GAP))
        happened = datetime.fromisoformat(timestamp)
        row = tx.execute(
            "SELECT rid, timestamp FROM memories WHERE user_id = ? AND agent_id = ? AND run_id = ? "
            "AND role IS NOT NULL AND version_of IS NULL AND created_at >= ? "
            "ORDER BY created_at DESC, rid DESC LIMIT 1",
            (*scope, since),
        ).fetchone()
        if row is None or abs((happened - datetime.fromisoformat(row[1])).total_seconds()) > CONVERSATION_GAP:
            return None
        return int(row[0])

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
        """Replace a memory's text and passages, metadata when given, expiry unless ``...``: (before, after).

        ``entities`` (with ``relations``) replace the memory's mentions with those of the new text,
        resolved as ``insert`` does, its new claims true from ``now``; None leaves its graph rows as they are.

        Raises:
            MemoryNotFound: no such id.
            MemoryConflict: the new text duplicates another memory of the same scope.
        """
        now_iso = to_iso(now)

        def run(tx: Tx) -> tuple[StoredMemory, StoredMemory]:
            select = f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? AND {LIVE}"
            row = tx.execute(select, (memory_id,)).fetchone()
            if row is not None and tx.lock_scope((row[2], row[3], row[4])):
                row = tx.execute(select, (memory_id,)).fetchone()  # as it is under the lock
            if row is None:
                raise MemoryNotFound(f"no memory with id {memory_id!r}")
            before = row_to_memory(row)
            clash = live_duplicate(tx, (row[2], row[3], row[4], row[5], content_hash))
            clash = clash if clash is not None and clash[0] != memory_id else None
            if clash:
                raise MemoryConflict(
                    f"the new text duplicates memory {clash[0]!r} in the same scope; delete one of them instead"
                )
            meta_json = json.dumps(metadata if metadata is not None else before.metadata, ensure_ascii=False)
            expiry = before.expires_at if expires_at is ... else (None if expires_at is None else to_iso(expires_at))
            tx.execute(
                "UPDATE memories SET memory = ?, search_text = ?, n_terms = ?, hash = ?, metadata = ?, "
                "updated_at = ?, embedding = ?, expires_at = ? WHERE id = ?",
                (
                    text,
                    search_text,
                    len(search_text.split()),
                    content_hash,
                    meta_json,
                    now_iso,
                    tx.vector(embedding),
                    expiry,
                    memory_id,
                ),
            )
            tx.execute("DELETE FROM passages WHERE rid = ?", (before.rid,))
            insert_passages(tx, before.rid, passages)
            if entities is not None:
                edit = GraphEdit(before.user_id, before.agent_id, before.run_id, now_iso, tuple(entities),
                                 tuple(relations))  # fmt: skip
                replace_graph(tx, edit, memory_id, now_iso)
            record(tx, memory_id, "UPDATE", before.memory, text, now_iso, now_iso, (row[2], row[3], row[4]))
            after = row_to_memory(
                tx.execute(f"SELECT {COLUMNS} FROM memories m WHERE m.id = ?", (memory_id,)).fetchone()
            )
            return before, after

        return self._write(run)

    def delete(self, memory_id: str, *, purge: bool, now: datetime) -> StoredMemory:
        """Delete one memory (history records it); ``purge`` also erases its text from history.

        Raises:
            MemoryNotFound: no such id.
        """

        def run(tx: Tx) -> StoredMemory:
            # The live memory, else (after reconciliation invalidated it) its newest past version.
            select = (
                f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? OR m.version_of = ? "
                "ORDER BY m.version_of IS NOT NULL, m.rid DESC LIMIT 1"
            )
            row = tx.execute(select, (memory_id, memory_id)).fetchone()
            if row is not None and tx.lock_scope((row[2], row[3], row[4])):
                row = tx.execute(select, (memory_id, memory_id)).fetchone()
            if row is None:
                raise MemoryNotFound(f"no memory with id {memory_id!r}")
            # Memories merged into it go with it (they say the same), with their past versions.
            where = (
                "(m.id = ? OR m.version_of = ? OR m.merged_into = ? "
                "OR m.version_of IN (SELECT x.id FROM memories x WHERE x.merged_into = ?))"
            )
            delete_rows(tx, where, [memory_id] * 4, to_iso(now))
            if purge:
                self._redact(tx, "memory_id = ?", [memory_id])
                self._purged(tx)
            return row_to_memory(row)

        found = self._write(run)
        if purge:
            self._after_purge()
        return found

    def delete_scope(self, scope: Scope, *, purge: bool, now: datetime) -> int:
        """Delete every memory in ``scope``; returns how many. ``purge`` redacts the scope's history.

        Every entity and relation of the scope goes too, purge or not.
        """
        where, params = scope_sql(scope)

        def run(tx: Tx) -> int:
            count = delete_rows(tx, where, params, to_iso(now))
            swhere, sparams = scope_sql(scope, alias="sources")
            tx.execute(f"DELETE FROM sources WHERE {swhere}", sparams)
            delete_scope_graph(tx, scope)
            forget_scope_profiles(tx, scope)
            if purge:
                hwhere, hparams = scope_sql(scope, alias="history")
                self._redact(tx, hwhere, hparams)
                self._purged(tx)
            return count

        count = self._write(run)
        if purge:
            self._after_purge()
        return count

    @staticmethod
    def _redact(tx: Tx, where: str, params: list[Any]) -> None:
        tx.execute(f"UPDATE history SET old_memory = NULL, new_memory = NULL, redacted = 1 WHERE {where}", params)

    # -- reads ---------------------------------------------------------------------------
    def get(self, memory_id: str) -> StoredMemory | None:
        """One memory by id, or None."""
        rows = self._read(f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? AND {LIVE}", (memory_id,))
        return row_to_memory(rows[0]) if rows else None

    def sources(self, memory_id: str) -> builtins.list[Source]:
        """The messages a memory was extracted from, oldest first ([] for verbatim memories)."""
        rows = self._read(
            "SELECT s.role, s.name, s.content, s.timestamp FROM memory_sources ms JOIN sources s ON s.sid = ms.sid "
            "WHERE ms.memory_id = ? ORDER BY s.sid",
            (memory_id,),
        )
        return [Source(role=r[0], name=r[1], content=r[2], timestamp=r[3]) for r in rows]

    def apply_facts(self, plan: FactPlan, now: datetime) -> builtins.list[FactOutcome]:
        """Write one add's extracted facts, their provenance and history in one transaction.

        Each decision is re-checked against the rows as they are now (see ``FactWriter``).
        """
        return self._write(lambda tx: FactWriter(tx, plan, to_iso(now)).run())

    # -- export and import (memlane.stores.sql_export) -------------------------------------------
    def export_page(self, scope: Scope | None, after_rid: int, limit: int) -> builtins.list[PortableMemory]:
        """Rows of ``scope`` (all when None) after ``after_rid``, by rid: see ``Store.export_page``."""
        return self._snapshot(lambda tx: sql_export.export_page(tx, scope, after_rid, limit))

    def history_page(
        self, scope: Scope | None, after: tuple[str, int] | None, limit: int
    ) -> builtins.list[PortableEvent]:
        """History events of ``scope`` after ``(memory_id, seq)``: see ``Store.history_page``."""
        return self._snapshot(lambda tx: sql_export.history_page(tx, scope, after, limit))

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
        """Write exported rows, history, entities and relations as they were, in one transaction:
        see ``Store.import_records``.

        Raises:
            MemoryConflict: a conflict, with ``on_conflict="error"``.
            InvalidRequest: an entity or relation links rows of two scopes.
            StoreError: the write failed and was rolled back.
        """

        def run(tx: Tx) -> ImportOutcome:
            outcome = sql_export.Importer(tx, to_iso(now), on_conflict).run(memories, events, entities, relations)
            self._after_write(tx)
            return outcome

        return self._write(run)

    def _where(
        self,
        scope: Scope,
        node: Node | None,
        now: datetime | None,
        as_of: datetime | None = None,
        include: Sequence[str] = (),
    ) -> tuple[str, list[Any]]:
        """The scope, validity, expiry and filter condition over ``memories m``; ``include``
        names the states (``merged``, ``archived``) shown besides active memories."""
        where, params = scope_sql(scope)
        if as_of is not None:
            # What was true at as_of: current memories and past versions alike, by validity.
            at = to_iso(as_of)
            shown = f" OR m.state IN ({states_sql(include)})" if include else ""
            where += (
                f" AND m.timestamp <= ? AND (m.valid_until IS NULL OR m.valid_until > ?{shown})"
                " AND (m.expires_at IS NULL OR m.expires_at > ?)"
            )
            params += [at, at, at]
        else:
            where += f" AND {visible_sql(include)}"
            if now is not None:
                where += " AND (m.expires_at IS NULL OR m.expires_at > ?)"
                params.append(to_iso(now))
        if node is not None:
            sql, fparams = self._filter_sql(node)
            where += f" AND ({sql})"
            params.extend(fparams)
        return where, params

    def list(
        self,
        scope: Scope,
        node: Node | None,
        *,
        limit: int,
        now: datetime | None,
        before: tuple[str, int] | None = None,
        include: Sequence[str] = (),
    ) -> builtins.list[StoredMemory]:
        """Memories in scope matching the filter, newest first; ``now=None`` includes expired ones.

        ``before`` = ``(created_at, rid)`` of the last row of the previous page: keyset pagination,
        stable while other writers add and delete. ``include``: merged / archived ones too.
        """
        where, params = self._where(scope, node, now, include=include)
        if before is not None:
            where += " AND (m.created_at < ? OR (m.created_at = ? AND m.rid < ?))"
            params += [before[0], before[0], before[1]]
        sql = f"SELECT {COLUMNS} FROM memories m WHERE {where} ORDER BY m.created_at DESC, m.rid DESC LIMIT ?"
        return [row_to_memory(r) for r in self._read(sql, [*params, limit])]

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Every event of one memory, oldest first."""
        rows = self._read(
            "SELECT id, memory_id, event, old_memory, new_memory, created_at, user_id, agent_id, run_id, redacted, "
            "effective_at FROM history WHERE memory_id = ? ORDER BY id",
            (memory_id,),
        )
        return [
            HistoryEvent(
                id=r[0],
                memory_id=r[1],
                event=r[2],
                old_memory=r[3],
                new_memory=r[4],
                created_at=r[5],
                effective_at=r[10] or r[5],
                user_id=none(r[6]),
                agent_id=none(r[7]),
                run_id=none(r[8]),
                redacted=bool(r[9]),
            )
            for r in rows
        ]

    def _read_in(self, sql: str, ids: Iterable[int], params: Sequence[Any] = ()) -> builtins.list[Any]:
        """Run ``sql``, whose ``{marks}`` is an ``IN`` list, over ``ids`` in chunks of 500."""
        ids = builtins.list(ids)
        out: builtins.list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            # replace(), not format(): the SQL may hold braces of its own.
            out += self._read(sql.replace("{marks}", ",".join("?" * len(chunk))), [*chunk, *params])
        return out

    def fetch(self, rids: Iterable[int]) -> dict[int, StoredMemory]:
        """Memories by row id (search hits)."""
        rows = self._read_in(f"SELECT {COLUMNS} FROM memories m WHERE m.rid IN ({{marks}})", rids)
        return {row[0]: row_to_memory(row) for row in rows}

    def search_rows(self, rids: Iterable[int]) -> dict[int, SearchRow]:
        """Ranking columns of search candidates, by row id, with how many passages each has."""
        sql = (
            "SELECT m.rid, m.search_text, m.timestamp, m.prev_rid, m.expires_at, "
            "(SELECT count(*) FROM passages p WHERE p.rid = m.rid), length(m.memory) "
            "FROM memories m WHERE m.rid IN ({marks})"
        )
        return {r[0]: SearchRow(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6])) for r in self._read_in(sql, rids)}

    def followers(
        self,
        rids: Iterable[int],
        scope: Scope,
        node: Node | None,
        now: datetime,
        as_of: datetime | None = None,
        include: Sequence[str] = (),
    ) -> builtins.list[int]:
        """Row ids of the messages that directly follow ``rids`` and pass scope, filter and expiry."""
        where, params = self._where(scope, node, now, as_of, include)
        sql = f"SELECT m.rid FROM memories m{self._followers_hint} WHERE m.prev_rid IN ({{marks}}) AND {where}"
        return [r[0] for r in self._read_in(sql, rids, params)]
