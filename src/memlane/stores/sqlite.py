"""The embedded store: one SQLite file (WAL) holding memories, vectors, keyword index and history.

The row-level operations are shared with PostgreSQL (:class:`memlane.stores.sql_store.SQLStore`);
this module holds the connection, the transactions and SQLite's own search indexes.

Every public write is one ``BEGIN IMMEDIATE`` transaction: the memory row, its vector, its
full-text row (by trigger), its change-log entry (by trigger) and its history event commit
together or not at all. ``BEGIN IMMEDIATE`` takes the write lock up front, so two writers never
deadlock on a lock upgrade, and the busy timeout makes a writer wait for another process instead
of failing with "database is locked".
"""

from __future__ import annotations

import builtins
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from memlane.core.filters import Node, compile_sqlite
from memlane.core.passages import PassageHit
from memlane.errors import EmbedderMismatch, InvalidRequest, StoreBusy, StoreError
from memlane.protocols import Vector
from memlane.stores.ann_index import AnnSettings
from memlane.stores.sql_reembed import Reembedding, VectorTable
from memlane.stores.sql_store import FILTER_COLUMNS, SQLStore
from memlane.stores.sql_tx import Recorded, SQLiteTx, Tx
from memlane.stores.sqlite_schema import connect, migrate
from memlane.stores.vector_cache import ANY_VALIDITY, CachedRow, VectorCache
from memlane.types import Scope

__all__ = ["SQLiteStore"]

T = TypeVar("T")
_CACHE_COLUMNS = "rid, user_id, agent_id, run_id, expires_at, embedding, timestamp, valid_until"
_CHANGES_KEPT = 200_000
# Two subqueries: each is one index probe, where "SELECT min(seq), max(seq)" scans the whole log.
_SEQ_RANGE = "SELECT (SELECT min(seq) FROM changes), (SELECT max(seq) FROM changes)"
# The same, and the embedder the store records (a re-embedding may have switched it meanwhile).
_SYNC_STATE = (
    "SELECT (SELECT min(seq) FROM changes), (SELECT max(seq) FROM changes), "
    "(SELECT value FROM meta WHERE key = 'embedder_id'), (SELECT value FROM meta WHERE key = 'embedder_dimension')"
)


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else math.inf


def _cached(row: Sequence[Any], passages: list[Any]) -> CachedRow:
    """A ``SELECT {_CACHE_COLUMNS}`` row and its ``(rid, seq, embedding)`` passage rows, for the cache."""
    return CachedRow(
        row[0],
        row[1],
        row[2],
        row[3],
        _epoch(row[4]),
        np.frombuffer(row[5], dtype="<f4"),
        start=_epoch(row[6]),
        until=_epoch(row[7]),
        passage_seqs=[p[1] for p in passages],
        passage_vecs=np.stack([np.frombuffer(p[2], dtype="<f4") for p in passages]) if passages else None,
    )


class SQLiteStore(SQLStore, Reembedding):
    """Memories in one SQLite file. Nothing touches the disk until the first operation.

    Args:
        path: the database file; its directory is created on first use.
        busy_timeout: seconds a writer waits for another writer before ``StoreBusy``.
        durability: ``"full"`` fsyncs every commit (no acknowledged write is lost on power
            failure); ``"normal"`` is faster and survives process crashes but not power loss.
        approximate: when a scope is searched through an approximate index and how
            (:class:`memlane.stores.ann_index.AnnSettings`; the default: scopes of 20,000 memories
            and more, the index built in a background thread). ``AnnSettings(min_rows=None)``
            keeps every search exact.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 30.0,
        durability: str = "full",
        approximate: AnnSettings | None = None,
    ) -> None:
        if durability not in ("full", "normal"):
            raise InvalidRequest(f"durability must be 'full' or 'normal', got {durability!r}")
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.durability = durability
        self.approximate = approximate or AnnSettings()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._cache: VectorCache | None = None
        self._opened: Recorded | None = None

    # -- connection and transactions ------------------------------------------------------
    def open(self, embedder_id: str, dimension: int) -> None:
        """Create or open the file, migrate it, and check it was written by this embedder.

        Raises:
            EmbedderMismatch: the store records a different embedder id or dimension.
            StoreError: the file cannot be opened or migrated (nothing of a failed migration stays).
        """
        with self._lock:
            if self._conn is not None and self._opened is not None:
                return
            self._attach()
            try:
                self._check_embedder(embedder_id, dimension)
            except BaseException:
                self.close()
                raise
            self._opened = (embedder_id, dimension)
            self._cache = VectorCache(dimension, self.approximate)

    def _attach(self) -> None:
        """Create or open the file and migrate it, without checking the embedder (``reembed`` needs that)."""
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
            except BaseException as exc:
                conn.close()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"could not migrate {self.path} (rolled back): {exc}") from exc
                raise
            self._conn = conn

    def describe(self) -> str:
        """The database file, for messages."""
        return str(self.path)

    def migrate(self) -> builtins.list[int]:
        """Create the file if needed and apply pending migrations (no embedder needed).

        Returns:
            The migration versions applied now ([] when the file was current).
        Raises:
            StoreError: the file cannot be opened or a migration failed (it rolled back).
        """
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = connect(str(self.path), busy_timeout=self.busy_timeout, durability=self.durability)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"could not open {self.path}: {exc}") from exc
            try:
                return migrate(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"could not migrate {self.path} (rolled back): {exc}") from exc
            finally:
                conn.close()

    def _check_embedder(self, embedder_id: str, dimension: int) -> None:
        def check(tx: Tx) -> None:
            meta = dict(tx.execute("SELECT key, value FROM meta WHERE key LIKE 'embedder_%'").fetchall())
            if not meta:
                tx.executemany(
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
                self._opened = None

    def _write(self, fn: Callable[[Tx], T]) -> T:
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
                result = fn(SQLiteTx(conn, self._opened))
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

    def _snapshot(self, fn: Callable[[Tx], T]) -> T:
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN")
                try:
                    return fn(SQLiteTx(conn))
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"reading {self.path} failed: {exc}") from exc

    def _filter_sql(self, node: Node) -> tuple[str, list[Any]]:
        return compile_sqlite(node, metadata_column="m.metadata", columns=FILTER_COLUMNS)

    # Without it the planner walks the whole scope by its index (85 ms at 100k rows).
    _followers_hint = " INDEXED BY memories_prev"

    # -- re-embedding (memlane.stores.sql_reembed) -------------------------------------------
    def _lock_for_switch(self, tx: Tx) -> None:
        return None  # BEGIN IMMEDIATE already holds off every other writer

    def _swap_vectors(self, tx: Tx, table: VectorTable, dimension: int) -> None:
        # The update trigger logs every row in `changes`: vector caches of every process reload them.
        tx.execute(
            f"UPDATE {table.name} SET embedding = (SELECT s.embedding FROM reembed_vectors s "
            f"WHERE s.tbl = ? AND s.k = {table.name}.{table.key})",
            (table.name,),
        )

    # -- purges, reset, housekeeping ---------------------------------------------------------
    def _purged(self, tx: Tx) -> None:
        # A deleted row's terms stay in older keyword-index segments (FTS5 only records the
        # deletion) until the segments merge: merge them all, inside the purge's transaction.
        tx.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
        tx.execute("INSERT INTO passages_fts (passages_fts) VALUES ('optimize')")

    def _after_purge(self) -> None:
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
        """Delete every memory, history event, entity, relation and the embedder record: an empty store."""

        def run(tx: Tx) -> None:
            tx.execute("DELETE FROM passages")
            tx.execute("DELETE FROM relations")
            tx.execute("DELETE FROM entity_mentions")
            tx.execute("DELETE FROM entity_keys")
            tx.execute("DELETE FROM entities")
            tx.execute("DELETE FROM memories")
            tx.execute("DELETE FROM history")
            tx.execute("DELETE FROM memory_sources")
            tx.execute("DELETE FROM sources")
            for table in ("memory_links", "memory_access", "profiles", "leases"):
                tx.execute(f"DELETE FROM {table}")
            tx.execute("DELETE FROM meta WHERE key LIKE 'embedder_%'")
            self._purged(tx)

        self._write(run)
        try:
            self._after_purge()
        finally:
            with self._lock:
                self.conn.close()
                self._conn = None
                self._cache = None
                self._opened = None

    def _after_write(self, tx: Tx) -> None:
        # Prune the change log; caches that fall behind the pruned log reload in full (see _sync).
        low, top = tx.execute(_SEQ_RANGE).fetchone()
        if top is not None and top - low > 2 * _CHANGES_KEPT:
            tx.execute("DELETE FROM changes WHERE seq <= ?", (top - _CHANGES_KEPT,))

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
        include: Sequence[str] = (),
    ) -> builtins.list[int]:
        """Row ids of the best ``k`` BM25 matches (any query term) in scope (true at ``as_of`` if given).

        A long memory matches through its passages too (scored by its best passage).
        """
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        where, params = self._where(scope, node, now, as_of, include)
        best: dict[int, float] = dict(self._keyword_own(scope, node, match, where, params, k))
        # MATERIALIZED: bm25() only runs in the full-text query itself, not in a flattened GROUP BY.
        by_passage = (
            "WITH hits AS MATERIALIZED (SELECT p.rid AS rid, bm25(passages_fts) AS score "
            "FROM passages_fts f CROSS JOIN passages p ON p.pid = f.rowid JOIN memories m ON m.rid = p.rid "
            f"WHERE passages_fts MATCH ? AND {where}) SELECT rid, min(score) AS best FROM hits "
            "GROUP BY rid ORDER BY best LIMIT ?"
        )
        for rid, score in self._read(by_passage, [match, *params, k]):
            best[rid] = min(score, best.get(rid, math.inf))
        return [rid for rid, _ in sorted(best.items(), key=lambda x: (x[1], x[0]))[:k]]

    def _keyword_own(
        self, scope: Scope, node: Node | None, match: str, where: str, params: builtins.list[Any], k: int
    ) -> builtins.list[tuple[int, float]]:
        """(row id, bm25) of the best ``k`` matches of the memories' own text in scope, best first."""
        if node is None and self._sync().scope_share(scope) >= 0.5:
            # FTS5 scores every match before the LIMIT (thousands in a large scope), and joining
            # each to its row for the scope test costs half as much again. When the scope is most
            # of the store, rank the matches alone, then test only the best: enough of them pass
            # unless the scope's matches are much rarer than its share of the store.
            fetch = 2 * k
            ranked = self._read(
                "SELECT rowid, bm25(memories_fts) FROM memories_fts WHERE memories_fts MATCH ? "
                "ORDER BY bm25(memories_fts) LIMIT ?",
                [match, fetch],
            )
            # NOT INDEXED: look each row up by rowid (the planner would walk the scope's index).
            sql = f"SELECT m.rid FROM memories m NOT INDEXED WHERE m.rid IN ({{marks}}) AND {where}"
            kept = {r[0] for r in self._read_in(sql, [r[0] for r in ranked], params)}
            hits = [(rid, score) for rid, score in ranked if rid in kept]
            if len(hits) >= k or len(ranked) < fetch:
                return hits[:k]
        own = (
            "SELECT m.rid, bm25(memories_fts) FROM memories_fts f JOIN memories m ON m.rid = f.rowid "
            f"WHERE memories_fts MATCH ? AND {where} ORDER BY bm25(memories_fts) LIMIT ?"
        )
        return [(r[0], r[1]) for r in self._read(own, [match, *params, k])]

    def dense(
        self,
        scope: Scope,
        node: Node | None,
        query: Vector,
        k: int,
        now: datetime,
        as_of: datetime | None = None,
        include: Sequence[str] = (),
    ) -> builtins.list[tuple[int, float]]:
        """(row id, cosine) of the ``k`` nearest memories in scope that pass the filter (true at
        ``as_of``); ``include``: also merged / archived memories."""
        cache = self._sync()
        allowed: set[int] | None = None
        if node is not None or include:
            # Filters run in SQL first, so the top-k is taken among matching rows only.
            where, params = self._where(scope, node, now, as_of, include)
            allowed = {r[0] for r in self._read(f"SELECT m.rid FROM memories m WHERE {where}", params)}
        at = as_of.timestamp() if as_of is not None else (ANY_VALIDITY if include else None)
        return cache.search(query, scope, k, now.timestamp(), allowed, as_of=at)

    def index_stats(self) -> dict[str, Any]:
        """The in-process vector cache: rows, passages, bytes held and its approximate indexes.

        Raises:
            StoreError: the store is not open.
        """
        return self._sync().stats()

    def wait_for_indexes(self, timeout: float | None = None) -> bool:
        """Wait for approximate indexes building in the background.

        Returns:
            True when none is left building (False: ``timeout`` seconds passed first).
        Raises:
            StoreError: the store is not open.
        """
        with self._lock:
            cache = self._cache
        if cache is None:
            raise StoreError("the store is not open")
        return cache.wait_for_graphs(timeout)

    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]:
        """Cosine of the query to each row, the best of its own and its passages' (for keyword-only candidates)."""
        return self._sync().cosines(query, rids)

    def best_passages(self, query: Vector, terms: Sequence[str], rids: Iterable[int]) -> dict[int, PassageHit]:
        """Each given row's passage that best answers the query (rows without passages are left out).

        Best: the passage holding the most distinct ``terms``, then the highest cosine.
        """
        cosines = self._sync().passage_cosines(query, rids)
        if not cosines:
            return {}
        wanted = builtins.list(cosines)
        matched: dict[tuple[int, int], int] = {}
        for term in terms:
            # CROSS JOIN: the full-text match runs once, then its rows are looked up. The planner
            # would otherwise walk the memory's passages and run the match once per passage.
            sql = (
                "SELECT p.rid, p.seq FROM passages_fts f CROSS JOIN passages p ON p.pid = f.rowid "
                "WHERE p.rid IN ({marks}) AND passages_fts MATCH ?"
            )
            for key in self._read_in(sql, wanted, ['"' + term.replace('"', '""') + '"']):
                matched[(key[0], key[1])] = matched.get((key[0], key[1]), 0) + 1
        chosen = {
            rid: max(pairs, key=lambda sc: (matched.get((rid, sc[0]), 0), sc[1], -sc[0]))
            for rid, pairs in cosines.items()
        }
        out: dict[int, PassageHit] = {}
        for rid, (seq, cos) in chosen.items():
            rows = self._read(
                "SELECT char_start, char_end, search_text FROM passages WHERE rid = ? AND seq = ?", (rid, seq)
            )
            if rows:
                out[rid] = PassageHit(seq, rows[0][0], rows[0][1], cos, rows[0][2])
        return out

    def _sync(self) -> VectorCache:
        """Bring the in-process vector cache up to the database's change log."""
        with self._lock:
            cache = self._cache
            if cache is None:
                raise StoreError("the store is not open")
            low, top, embedder_id, dimension = self._read(_SYNC_STATE)[0]
            if self._opened is not None and (embedder_id, dimension) != (self._opened[0], str(self._opened[1])):
                raise EmbedderMismatch(
                    f"{self.path} now records embedder {embedder_id!r} ({dimension} dimensions), not "
                    f"{self._opened[0]!r} that it was opened with: it was re-embedded (memlane reembed); "
                    "configure the new embedder and reopen it"
                )
            top = top or 0
            if top == cache.seq:
                return cache
            if cache.seq < 0 or (low is not None and cache.seq < low - 1):
                cache.clear()
                rows = self._read(f"SELECT {_CACHE_COLUMNS} FROM memories")
                passages = self._read("SELECT rid, seq, embedding FROM passages ORDER BY rid, seq")
                deleted: list[int] = []
            else:
                changed = [r[0] for r in self._read("SELECT DISTINCT rid FROM changes WHERE seq > ?", (cache.seq,))]
                rows = self._read_in(
                    f"SELECT {_CACHE_COLUMNS} FROM memories WHERE rid IN ({{marks}})",
                    changed,
                )
                passages = self._read_in("SELECT rid, seq, embedding FROM passages WHERE rid IN ({marks})", changed)
                passages.sort(key=lambda p: (p[0], p[1]))
                deleted = sorted(set(changed) - {r[0] for r in rows})
            by_row: dict[int, list[Any]] = {}
            for p in passages:
                by_row.setdefault(p[0], []).append(p)
            upserts = [_cached(r, by_row.get(r[0], [])) for r in rows]
            cache.apply(upserts, deleted)
            cache.seq = top
            return cache
