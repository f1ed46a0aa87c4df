"""The embedded store: one SQLite file (WAL) holding memories, vectors, keyword index and history.

Every public write is one ``BEGIN IMMEDIATE`` transaction: the memory row, its vector, its
full-text row (by trigger), its change-log entry (by trigger) and its history event commit
together or not at all. ``BEGIN IMMEDIATE`` takes the write lock up front, so two writers never
deadlock on a lock upgrade, and the busy timeout makes a writer wait for another process instead
of failing with "database is locked".
"""

from __future__ import annotations

import builtins
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from memlane.core.filters import Node, compile_sqlite, to_iso
from memlane.core.records import (
    FactOutcome,
    FactPlan,
    ImportOutcome,
    NewMemory,
    PortableEvent,
    PortableMemory,
    SearchRow,
    StoredMemory,
)
from memlane.errors import EmbedderMismatch, InvalidRequest, MemoryConflict, MemoryNotFound, StoreBusy, StoreError
from memlane.protocols import Vector
from memlane.stores import sqlite_export
from memlane.stores.sqlite_rows import (
    COLUMNS,
    LIVE,
    FactWriter,
    delete_rows,
    insert_row,
    live_duplicate,
    none,
    record,
    row_to_memory,
    scope_sql,
)
from memlane.stores.sqlite_schema import connect, migrate
from memlane.stores.vector_cache import CachedRow, VectorCache
from memlane.types import AddEvent, HistoryEvent, Scope, Source

__all__ = ["SQLiteStore"]

T = TypeVar("T")
_FILTER_COLUMNS = {
    "id": "m.id",
    "memory": "m.memory",
    "role": "m.role",
    "actor_id": "NULLIF(m.actor_id, '')",
    "created_at": "m.created_at",
    "updated_at": "m.updated_at",
    "timestamp": "m.timestamp",
    "expires_at": "m.expires_at",
}
_CACHE_COLUMNS = "rid, user_id, agent_id, run_id, expires_at, embedding, timestamp, valid_until"
_CHANGES_KEPT = 200_000
# Two subqueries: each is one index probe, where "SELECT min(seq), max(seq)" scans the whole log.
_SEQ_RANGE = "SELECT (SELECT min(seq) FROM changes), (SELECT max(seq) FROM changes)"
# Messages added within this many seconds of the previous one in the same scope continue its conversation.
CONVERSATION_GAP = 600


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else math.inf


class SQLiteStore:
    """Memories in one SQLite file. Nothing touches the disk until the first operation.

    Args:
        path: the database file; its directory is created on first use.
        busy_timeout: seconds a writer waits for another writer before ``StoreBusy``.
        durability: ``"full"`` fsyncs every commit (no acknowledged write is lost on power
            failure); ``"normal"`` is faster and survives process crashes but not power loss.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0, durability: str = "full") -> None:
        if durability not in ("full", "normal"):
            raise InvalidRequest(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.durability = durability
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._cache: VectorCache | None = None

    # -- connection and transactions ------------------------------------------------------
    def open(self, embedder_id: str, dimension: int) -> None:
        """Create or open the file, migrate it, and check it was written by this embedder.

        Raises:
            EmbedderMismatch: the store records a different embedder id or dimension.
            StoreError: the file cannot be opened or migrated (nothing of a failed migration stays).
        """
        with self._lock:
            if self._conn is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = connect(str(self.path), busy_timeout=self.busy_timeout, durability=self.durability)
            except sqlite3.Error as exc:
                raise StoreError(f"could not open {self.path}: {exc}") from exc
            try:
                migrate(conn)
                self._conn = conn
                self._check_embedder(embedder_id, dimension)
            except BaseException as exc:
                self._conn = None
                conn.close()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"could not migrate {self.path} (rolled back): {exc}") from exc
                raise
            self._cache = VectorCache(dimension)

    def _check_embedder(self, embedder_id: str, dimension: int) -> None:
        def check(conn: sqlite3.Connection) -> None:
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'embedder_%'").fetchall())
            if not meta:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("embedder_id", embedder_id), ("embedder_dimension", str(dimension))],
                )
            elif meta.get("embedder_id") != embedder_id or meta.get("embedder_dimension") != str(dimension):
                raise EmbedderMismatch(
                    f"{self.path} was written with embedder {meta.get('embedder_id')!r} "
                    f"({meta.get('embedder_dimension')} dimensions) but this Memory uses {embedder_id!r} "
                    f"({dimension}); configure the original embedder, or use a new path for the new one"
                )

        self._write(check)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open; call open() first (Memory does this for you)")
        return self._conn

    def close(self) -> None:
        """Close the connection (the store reopens on the next ``open``)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._cache = None

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout
        with self._lock:
            conn = self.conn
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise StoreError(f"could not start a write on {self.path}: {exc}") from exc
                    if time.monotonic() > deadline:
                        raise StoreBusy(
                            f"{self.path} stayed locked by other writers for {self.busy_timeout}s; "
                            "retry, or raise busy_timeout"
                        ) from exc
                    time.sleep(0.01)
            try:
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"write to {self.path} failed and was rolled back: {exc}") from exc
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"read from {self.path} failed: {exc}") from exc

    # -- writes --------------------------------------------------------------------------
    def insert(self, rows: Sequence[NewMemory], now: datetime) -> list[tuple[str, AddEvent]]:
        """Insert memories in one transaction; an exact duplicate in the scope yields (its id, NONE)."""
        now_iso = to_iso(now)

        def run(conn: sqlite3.Connection) -> list[tuple[str, AddEvent]]:
            out: list[tuple[str, AddEvent]] = []
            previous: int | None = None
            for i, r in enumerate(rows):
                key = (r.user_id or "", r.agent_id or "", r.run_id or "", r.actor_id or "", r.hash)
                if r.conversational and i == 0:
                    previous = self._conversation_tail(conn, key[:3], now, r.timestamp)
                existing = live_duplicate(conn, key)
                if existing and (existing[1] is None or existing[1] > now_iso):
                    out.append((existing[0], "NONE"))
                    previous = existing[2]
                    continue
                if existing:  # an expired copy: it is gone for readers, so replace it
                    delete_rows(conn, "m.id = ?", [existing[0]], now_iso)
                cur = insert_row(conn, r, previous if r.conversational else None)
                previous = cur.lastrowid
                record(conn, r.id, "ADD", None, r.memory, r.created_at, r.timestamp, key[:3])
                out.append((r.id, "ADD"))
            self._prune_changes(conn)
            return out

        return self._write(run)

    @staticmethod
    def _conversation_tail(
        conn: sqlite3.Connection, scope: tuple[str, str, str], now: datetime, timestamp: str
    ) -> int | None:
        """The latest message of the same exact scope that this one continues, if any.

        A chat app adds each turn as it happens, so the user's reply in this call continues the
        assistant's message of the previous call. "Continues" means added within
        CONVERSATION_GAP seconds and happening (``timestamp``) within that gap too, so a replayed
        history with past timestamps does not link one session to the next.
        """
        since = to_iso(now - timedelta(seconds=CONVERSATION_GAP))
        happened = datetime.fromisoformat(timestamp)
        row = conn.execute(
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
    ) -> tuple[StoredMemory, StoredMemory]:
        """Replace a memory's text (and metadata when given); returns (before, after).

        Raises:
            MemoryNotFound: no such id.
            MemoryConflict: the new text duplicates another memory of the same scope.
        """
        now_iso = to_iso(now)

        def run(conn: sqlite3.Connection) -> tuple[StoredMemory, StoredMemory]:
            row = conn.execute(f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? AND {LIVE}", (memory_id,)).fetchone()
            if row is None:
                raise MemoryNotFound(f"no memory with id {memory_id!r}")
            before = row_to_memory(row)
            clash = live_duplicate(conn, (row[2], row[3], row[4], row[5], content_hash))
            clash = clash if clash is not None and clash[0] != memory_id else None
            if clash:
                raise MemoryConflict(
                    f"the new text duplicates memory {clash[0]!r} in the same scope; delete one of them instead"
                )
            meta_json = json.dumps(metadata if metadata is not None else before.metadata, ensure_ascii=False)
            conn.execute(
                "UPDATE memories SET memory = ?, search_text = ?, n_terms = ?, hash = ?, metadata = ?, "
                "updated_at = ?, embedding = ? WHERE id = ?",
                (
                    text,
                    search_text,
                    len(search_text.split()),
                    content_hash,
                    meta_json,
                    now_iso,
                    embedding.astype("<f4").tobytes(),
                    memory_id,
                ),
            )
            record(conn, memory_id, "UPDATE", before.memory, text, now_iso, now_iso, (row[2], row[3], row[4]))
            after = row_to_memory(
                conn.execute(f"SELECT {COLUMNS} FROM memories m WHERE m.id = ?", (memory_id,)).fetchone()
            )
            return before, after

        return self._write(run)

    def delete(self, memory_id: str, *, purge: bool, now: datetime) -> StoredMemory:
        """Delete one memory (history records it); ``purge`` also erases its text from history.

        Raises:
            MemoryNotFound: no such id.
        """

        def run(conn: sqlite3.Connection) -> StoredMemory:
            # The live memory, else (after reconciliation invalidated it) its newest past version.
            row = conn.execute(
                f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? OR m.version_of = ? "
                "ORDER BY m.version_of IS NOT NULL, m.rid DESC LIMIT 1",
                (memory_id, memory_id),
            ).fetchone()
            if row is None:
                raise MemoryNotFound(f"no memory with id {memory_id!r}")
            delete_rows(conn, "(m.id = ? OR m.version_of = ?)", [memory_id, memory_id], to_iso(now))
            if purge:
                self._redact(conn, "memory_id = ?", [memory_id])
                self._merge_index(conn)
            return row_to_memory(row)

        found = self._write(run)
        if purge:
            self._scrub()
        return found

    def delete_scope(self, scope: Scope, *, purge: bool, now: datetime) -> int:
        """Delete every memory in ``scope``; returns how many. ``purge`` redacts the scope's history."""
        where, params = scope_sql(scope)

        def run(conn: sqlite3.Connection) -> int:
            count = delete_rows(conn, where, params, to_iso(now))
            swhere, sparams = scope_sql(scope, alias="sources")
            conn.execute(f"DELETE FROM sources WHERE {swhere}", sparams)
            if purge:
                hwhere, hparams = scope_sql(scope, alias="history")
                self._redact(conn, hwhere, hparams)
                self._merge_index(conn)
            return count

        count = self._write(run)
        if purge:
            self._scrub()
        return count

    @staticmethod
    def _redact(conn: sqlite3.Connection, where: str, params: list[Any]) -> None:
        conn.execute(f"UPDATE history SET old_memory = NULL, new_memory = NULL, redacted = 1 WHERE {where}", params)

    @staticmethod
    def _merge_index(conn: sqlite3.Connection) -> None:
        # A deleted row's terms stay in older keyword-index segments (FTS5 only records the
        # deletion) until the segments merge: merge them all, inside the purge's transaction.
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")

    def _scrub(self) -> None:
        """After a purge: copy the write-ahead log into the file and empty it (old page images
        in the log still hold the purged text; secure_delete already zeroed it in the file).

        Raises:
            StoreBusy: another connection kept reading an older snapshot for ``busy_timeout``,
                so the log could not be emptied. The purge itself committed; repeat it later.
        """
        with self._lock:
            busy, log, done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy or log != done:
            raise StoreBusy(
                f"the purge committed, but another connection to {self.path} is still reading an older "
                "snapshot, so the purged text remains in the write-ahead log; repeat the purge "
                "(it is idempotent) once other readers finish, or raise busy_timeout"
            )

    def reset(self) -> None:
        """Delete every memory, history event and the embedder record: an empty store."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM memories")
            conn.execute("DELETE FROM history")
            conn.execute("DELETE FROM memory_sources")
            conn.execute("DELETE FROM sources")
            conn.execute("DELETE FROM meta WHERE key LIKE 'embedder_%'")
            self._merge_index(conn)

        self._write(run)
        try:
            self._scrub()
        finally:
            with self._lock:
                self.conn.close()
                self._conn = None
                self._cache = None

    def _prune_changes(self, conn: sqlite3.Connection) -> None:
        # Caches that fall behind the pruned log reload in full (see _sync).
        low, top = conn.execute(_SEQ_RANGE).fetchone()
        if top is not None and top - low > 2 * _CHANGES_KEPT:
            conn.execute("DELETE FROM changes WHERE seq <= ?", (top - _CHANGES_KEPT,))

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
        return self._write(lambda conn: FactWriter(conn, plan, to_iso(now)).run())

    # -- export and import (memlane.stores.sqlite_export) ----------------------------------------
    def export_page(self, scope: Scope | None, after_rid: int, limit: int) -> builtins.list[PortableMemory]:
        """Rows of ``scope`` (all when None) after ``after_rid``, by rid: see ``Store.export_page``."""
        with self._lock:
            return sqlite_export.snapshot(
                self.conn, str(self.path), lambda c: sqlite_export.export_page(c, scope, after_rid, limit)
            )

    def history_page(
        self, scope: Scope | None, after: tuple[str, int] | None, limit: int
    ) -> builtins.list[PortableEvent]:
        """History events of ``scope`` after ``(memory_id, seq)``: see ``Store.history_page``."""
        with self._lock:
            return sqlite_export.snapshot(
                self.conn, str(self.path), lambda c: sqlite_export.history_page(c, scope, after, limit)
            )

    def import_records(
        self,
        memories: Sequence[PortableMemory],
        events: Sequence[PortableEvent],
        *,
        on_conflict: Literal["error", "skip"],
        now: datetime,
    ) -> ImportOutcome:
        """Write exported rows and history as they were, in one transaction: see ``Store.import_records``.

        Raises:
            MemoryConflict: a conflict, with ``on_conflict="error"``.
            StoreError: the write failed and was rolled back.
        """

        def run(conn: sqlite3.Connection) -> ImportOutcome:
            outcome = sqlite_export.Importer(conn, to_iso(now), on_conflict).run(memories, events)
            self._prune_changes(conn)
            return outcome

        return self._write(run)

    def _where(
        self, scope: Scope, node: Node | None, now: datetime | None, as_of: datetime | None = None
    ) -> tuple[str, list[Any]]:
        where, params = scope_sql(scope)
        if as_of is not None:
            # What was true at as_of: current memories and past versions alike, by validity.
            at = to_iso(as_of)
            where += (
                " AND m.timestamp <= ? AND (m.valid_until IS NULL OR m.valid_until > ?)"
                " AND (m.expires_at IS NULL OR m.expires_at > ?)"
            )
            params += [at, at, at]
        else:
            where += f" AND {LIVE}"
            if now is not None:
                where += " AND (m.expires_at IS NULL OR m.expires_at > ?)"
                params.append(to_iso(now))
        if node is not None:
            sql, fparams = compile_sqlite(node, metadata_column="m.metadata", columns=_FILTER_COLUMNS)
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
    ) -> builtins.list[StoredMemory]:
        """Memories in scope matching the filter, newest first; ``now=None`` includes expired ones.

        ``before`` = ``(created_at, rid)`` of the last row of the previous page: keyset pagination,
        stable while other writers add and delete.
        """
        where, params = self._where(scope, node, now)
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
        """Ranking columns of search candidates, by row id."""
        sql = "SELECT rid, search_text, timestamp, prev_rid, expires_at FROM memories WHERE rid IN ({marks})"
        return {row[0]: SearchRow(*row) for row in self._read_in(sql, rids)}

    def followers(
        self, rids: Iterable[int], scope: Scope, node: Node | None, now: datetime, as_of: datetime | None = None
    ) -> builtins.list[int]:
        """Row ids of the messages that directly follow ``rids`` and pass scope, filter and expiry."""
        where, params = self._where(scope, node, now, as_of)
        # Without the hint the planner walks the whole scope by its index (85 ms at 100k rows).
        sql = f"SELECT m.rid FROM memories m INDEXED BY memories_prev WHERE m.prev_rid IN ({{marks}}) AND {where}"
        return [r[0] for r in self._read_in(sql, rids, params)]

    def term_stats(self, terms: Sequence[str]) -> tuple[int, float, dict[str, int]]:
        """(number of memories, mean analysed length, document frequency of each term)."""
        docs, total = self._read("SELECT docs, terms FROM stats WHERE id = 1")[0]
        df: dict[str, int] = {}
        if terms:
            marks = ",".join("?" * len(terms))
            df = dict(self._read(f"SELECT term, doc FROM memories_vocab WHERE term IN ({marks})", list(terms)))
        return int(docs), (total / docs if docs else 0.0), df

    def keyword(
        self,
        scope: Scope,
        node: Node | None,
        terms: Sequence[str],
        k: int,
        now: datetime,
        as_of: datetime | None = None,
    ) -> builtins.list[int]:
        """Row ids of the best ``k`` BM25 matches (any query term) in scope (true at ``as_of`` if given)."""
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        where, params = self._where(scope, node, now, as_of)
        sql = (
            "SELECT m.rid FROM memories_fts f JOIN memories m ON m.rid = f.rowid "
            f"WHERE memories_fts MATCH ? AND {where} ORDER BY bm25(memories_fts) LIMIT ?"
        )
        return [r[0] for r in self._read(sql, [match, *params, k])]

    def dense(
        self,
        scope: Scope,
        node: Node | None,
        query: Vector,
        k: int,
        now: datetime,
        as_of: datetime | None = None,
    ) -> builtins.list[tuple[int, float]]:
        """(row id, cosine) of the ``k`` nearest memories in scope that pass the filter (true at ``as_of``)."""
        cache = self._sync()
        allowed: set[int] | None = None
        if node is not None:
            # Filters run in SQL first, so the top-k is taken among matching rows only.
            where, params = self._where(scope, node, now, as_of)
            allowed = {r[0] for r in self._read(f"SELECT m.rid FROM memories m WHERE {where}", params)}
        at = as_of.timestamp() if as_of is not None else None
        return cache.search(query, scope, k, now.timestamp(), allowed, as_of=at)

    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]:
        """Cosine of the query to each row (for keyword-only candidates)."""
        return self._sync().cosines(query, rids)

    def _sync(self) -> VectorCache:
        """Bring the in-process vector cache up to the database's change log."""
        with self._lock:
            cache = self._cache
            if cache is None:
                raise StoreError("the store is not open")
            low, top = self._read(_SEQ_RANGE)[0]
            top = top or 0
            if top == cache.seq:
                return cache
            if cache.seq < 0 or (low is not None and cache.seq < low - 1):
                cache.clear()
                rows = self._read(f"SELECT {_CACHE_COLUMNS} FROM memories")
                deleted: list[int] = []
            else:
                changed = [r[0] for r in self._read("SELECT DISTINCT rid FROM changes WHERE seq > ?", (cache.seq,))]
                rows = self._read_in(
                    f"SELECT {_CACHE_COLUMNS} FROM memories WHERE rid IN ({{marks}})",
                    changed,
                )
                deleted = sorted(set(changed) - {r[0] for r in rows})
            upserts = [
                CachedRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    _epoch(r[4]),
                    np.frombuffer(r[5], dtype="<f4"),
                    start=_epoch(r[6]),
                    until=_epoch(r[7]),
                )
                for r in rows
            ]
            cache.apply(upserts, deleted)
            cache.seq = top
            return cache
