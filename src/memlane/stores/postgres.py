"""The PostgreSQL store: the embedded store's schema and semantics on PostgreSQL + pgvector.

Row-level operations are shared with SQLite (:class:`memlane.stores.sql_store.SQLStore`); this
module holds the connection pool, transactions and PostgreSQL's own search: an HNSW cosine index
(pgvector) for meaning, a GIN-indexed ``tsvector`` for keywords, and trigger-kept BM25 statistics.

- Every public operation is one transaction. Writes that can create or change a memory of an
  exact scope take that scope's advisory lock first (:meth:`PostgresTx.lock_scope`), so many
  processes and machines can write one database: concurrent adds of one fact end as one memory,
  and the unique index ``memories_dedupe`` stands behind it. A write that loses a deadlock or a
  serialization race is retried whole (it is deterministic: ids are chosen before it starts).
- Filters and scopes are compiled to SQL with bound parameters only (``core.filters_pg``).
- Dense search is exact inside small scopes (the rows are few; HNSW with a selective filter
  would return too few) and uses the HNSW index with pgvector's iterative scan in large ones.

``AsyncMemory`` drives this store from worker threads, like the embedded one: the pool is
thread-safe and psycopg releases the GIL while it waits on the network, so one implementation
serves both drivers (an asyncio copy of every query would be a second store to keep in step).
"""

from __future__ import annotations

import builtins
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from memlane.core.filters import Node
from memlane.core.passages import PassageHit
from memlane.errors import ConfigError, EmbedderMismatch, InvalidRequest, StoreBusy, StoreError
from memlane.protocols import Vector
from memlane.stores.sql_reembed import VECTOR_TABLES, Reembedding, VectorTable
from memlane.stores.sql_store import FILTER_COLUMNS, SQLStore
from memlane.stores.sql_tx import PostgresTx, Recorded, Tx, check_recorded, pg_sql
from memlane.types import Scope

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresStore"]

T = TypeVar("T")
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Scopes with fewer matching rows than this are searched exactly (a few ms at 384 dimensions).
EXACT_SEARCH_ROWS = 4000
_RETRIES = 5
_BM25_K1 = 1.2
_BM25_B = 0.75


def _tsquery_lexeme(term: str) -> str:
    """One term as a quoted tsquery lexeme (bound as a parameter, never pasted into SQL)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresStore(SQLStore, Reembedding):
    """Memories in PostgreSQL with pgvector. Nothing connects until ``open`` (or ``migrate``).

    Args:
        url: a libpq URL or DSN, e.g. ``postgresql://memlane:secret@db:5432/memlane``.
        schema: the PostgreSQL schema holding memlane's tables (several stores can share a database).
        min_size, max_size: connections the pool keeps open / may open.
        timeout: seconds to wait for a connection from the pool (then ``StoreBusy``).

    Raises:
        InvalidRequest: a bad schema name or pool size.
    """

    def __init__(
        self, url: str, *, schema: str = "memlane", min_size: int = 1, max_size: int = 10, timeout: float = 30.0
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidRequest("url must be a PostgreSQL URL, e.g. postgresql://user:password@host:5432/dbname")
        if not _SCHEMA.fullmatch(schema):
            raise InvalidRequest(f"schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*), got {schema!r}")
        if min_size < 1 or max_size < min_size:
            raise InvalidRequest(f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        self.url = url
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.RLock()
        self._opened: Recorded | None = None
        self._search_path = f'"{schema}", public'

    def describe(self) -> str:
        """The URL (password masked) and schema, for messages."""
        from memlane._store_config import mask_url

        return f"{mask_url(self.url)} (schema {self.schema})"

    # -- connections and transactions ------------------------------------------------------
    @staticmethod
    def _driver() -> Any:
        """psycopg, or a ConfigError naming the extra to install."""
        try:
            import pgvector.psycopg  # noqa: F401
            import psycopg
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs psycopg, psycopg_pool and pgvector ({exc.name} is missing): "
                "pip install 'memlane[postgres]'"
            ) from exc
        return psycopg

    def _connect(self) -> psycopg.Connection[Any]:
        self._driver()
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=max(1, int(self.timeout)))
        except psycopg.Error as exc:
            raise StoreError(f"could not connect to {self.describe()}: {exc}") from exc

    def migrate(self) -> builtins.list[int]:
        """Install pgvector if needed, create the schema and apply pending migrations.

        Returns:
            The migration versions applied now ([] when the schema was current).
        Raises:
            StoreError: the database is unreachable, pgvector cannot be installed, or a migration
                failed (it rolled back whole).
        """
        self._driver()
        import psycopg

        from memlane.stores.postgres_schema import ensure_extension, migrate

        with self._connect() as conn:
            try:
                vector_schema = ensure_extension(conn)
                if vector_schema not in ("public", self.schema):
                    self._search_path = f'"{self.schema}", "{vector_schema}", public'
                conn.execute(f"SET search_path TO {self._search_path}")
                return migrate(conn, self.schema)
            except psycopg.Error as exc:
                raise StoreError(f"could not migrate {self.describe()} (rolled back): {exc}") from exc

    def open(self, embedder_id: str, dimension: int) -> None:
        """Migrate, check the embedder (recording it on first use) and open the connection pool.

        Raises:
            ConfigError: psycopg, psycopg_pool or pgvector are not installed.
            EmbedderMismatch: the store records a different embedder id or dimension.
            StoreError: the database is unreachable or cannot be migrated.
        """
        with self._lock:
            if self._pool is not None and self._opened is not None:
                return
            self._driver()
            if self._pool is None:
                self.migrate()
            self._check_embedder(embedder_id, dimension)
            if self._pool is None:
                self._open_pool()
            self._opened = (embedder_id, dimension)

    def _attach(self) -> None:
        """Migrate and open the connection pool, without checking the embedder (``reembed`` needs that)."""
        with self._lock:
            if self._pool is None:
                self.migrate()
                self._open_pool()

    def _open_pool(self) -> None:
        with self._lock:
            from psycopg_pool import ConnectionPool

            pool: ConnectionPool[Any] = ConnectionPool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.timeout,
                configure=self._configure,
                open=False,
                name=f"memlane-{self.schema}",
            )
            try:
                pool.open(wait=True, timeout=self.timeout)
            except Exception as exc:
                pool.close()
                raise StoreError(f"could not open a connection pool to {self.describe()}: {exc}") from exc
            self._pool = pool

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        from pgvector.psycopg import register_vector

        conn.execute(f"SET search_path TO {self._search_path}")
        register_vector(conn)
        conn.commit()

    def _check_embedder(self, embedder_id: str, dimension: int) -> None:
        import psycopg

        from memlane.stores.postgres_schema import register_embedder

        with self._connect() as conn:
            try:
                conn.execute(f"SET search_path TO {self._search_path}")
                recorded = register_embedder(conn, self.schema, embedder_id, dimension)
            except psycopg.Error as exc:
                raise StoreError(f"could not register the embedder in {self.describe()}: {exc}") from exc
        if recorded is not None:
            raise EmbedderMismatch(
                f"{self.describe()} was written with embedder {recorded} but this Memory uses {embedder_id!r} "
                f"({dimension}); configure the original embedder, or use another schema for the new one"
            )

    @property
    def pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            raise StoreError("the store is not open; call open() first (Memory does this for you)")
        return self._pool

    def close(self) -> None:
        """Close the pool (the store reopens on the next ``open``)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            self._opened = None

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T], what: str, *, retry: bool) -> T:
        import psycopg
        from psycopg_pool import PoolTimeout

        for attempt in range(_RETRIES):
            committing = False
            try:
                with self.pool.connection() as conn:
                    with conn.transaction():
                        result = fn(conn)
                        committing = True
                    return result
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                if not retry or attempt == _RETRIES - 1:
                    raise StoreBusy(f"{what} on {self.describe()} kept conflicting with other writers: {exc}") from exc
                time.sleep(0.01 * 2**attempt)
            except PoolTimeout as exc:
                raise StoreBusy(
                    f"no free connection to {self.describe()} within {self.timeout}s; raise max_connections "
                    "or timeout, or add capacity"
                ) from exc
            except psycopg.Error as exc:
                if committing and isinstance(exc, psycopg.OperationalError):
                    # The connection died during COMMIT: the server may have applied it or not.
                    raise StoreError(
                        f"{what} on {self.describe()} lost its connection while committing, so it may or may "
                        f"not have been applied; check before retrying it: {exc}"
                    ) from exc
                raise StoreError(f"{what} on {self.describe()} failed and was rolled back: {exc}") from exc
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[Tx], T]) -> T:
        return self._run(lambda conn: fn(PostgresTx(conn, self.schema, self._opened)), "a write", retry=True)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]:
        return self._run(lambda conn: conn.execute(pg_sql(sql), params).fetchall(), "a read", retry=True)

    def _snapshot(self, fn: Callable[[Tx], T]) -> T:
        def run(conn: psycopg.Connection[Any]) -> T:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return fn(PostgresTx(conn, self.schema))

        return self._run(run, "an export read", retry=True)

    def _filter_sql(self, node: Node) -> tuple[str, builtins.list[Any]]:
        from memlane.core.filters_pg import compile_postgres

        sql, params = compile_postgres(node, metadata_column="m.metadata", columns=FILTER_COLUMNS)
        # The shared SQL speaks "?": compile_postgres speaks psycopg's "%s" (and "%%").
        return sql.replace("%s", "?").replace("%%", "%"), params

    def reset(self) -> None:
        """Delete every memory, history event, statistic and the embedder record: an empty store."""

        def run(tx: Tx) -> None:
            tx.execute("TRUNCATE passages, memories, history, memory_sources, sources, doc_stats, term_stats")
            tx.execute("TRUNCATE reembed_vectors")
            tx.execute("DELETE FROM meta WHERE key IN ('embedder_id', 'embedder_dimension', 'embedder_next')")

        self._write(run)
        self.close()

    # -- re-embedding (memlane.stores.sql_reembed) -------------------------------------------
    def _lock_for_switch(self, tx: Tx) -> None:
        # Writers and readers wait for the switch (its column swap and index build need this lock
        # anyway); taking it first means no lock upgrade, so no deadlock with a writer.
        tables = ", ".join(t.name for t in VECTOR_TABLES)
        tx.execute(f"LOCK TABLE {tables}, reembed_vectors IN ACCESS EXCLUSIVE MODE")

    def _swap_vectors(self, tx: Tx, table: VectorTable, dimension: int) -> None:
        # A new column of the new dimension, filled from the staging table in one pass, replaces
        # the old one; the HNSW index is built again over it. Triggers are off for the fill: they
        # count keyword statistics and watch texts, and neither changes.
        name = table.name
        tx.execute(f"DROP INDEX IF EXISTS {name}_hnsw")
        tx.execute(f"ALTER TABLE {name} ADD COLUMN embedding_next vector({int(dimension)})")
        tx.execute(f"ALTER TABLE {name} DISABLE TRIGGER USER")
        tx.execute(
            f"UPDATE {name} t SET embedding_next = s.embedding FROM reembed_vectors s "
            f"WHERE s.tbl = ? AND s.k = t.{table.key}",
            (name,),
        )
        tx.execute(f"ALTER TABLE {name} ENABLE TRIGGER USER")
        tx.execute(f"ALTER TABLE {name} DROP COLUMN embedding")
        tx.execute(f"ALTER TABLE {name} RENAME COLUMN embedding_next TO embedding")
        tx.execute(f"ALTER TABLE {name} ALTER COLUMN embedding SET NOT NULL")
        tx.execute(f"CREATE INDEX {name}_hnsw ON {name} USING hnsw (embedding vector_cosine_ops)")

    # -- search ----------------------------------------------------------------------------
    def term_stats(self, terms: Sequence[str]) -> tuple[int, float, dict[str, int]]:
        """(number of rows, mean analysed length, document frequency of each term)."""

        def run(conn: psycopg.Connection[Any]) -> tuple[int, float, dict[str, int]]:
            sql = "SELECT COALESCE(sum(docs), 0)::bigint, COALESCE(sum(terms), 0)::bigint FROM doc_stats"
            docs, total = conn.execute(sql).fetchone()  # type: ignore[misc]
            df: dict[str, int] = {}
            if terms:
                rows = conn.execute(
                    "SELECT term, sum(docs)::bigint FROM term_stats WHERE term = ANY(%s) GROUP BY term",
                    (builtins.list(terms),),
                ).fetchall()
                df = {term: int(count) for term, count in rows if count > 0}
            return int(docs), (float(total) / docs if docs else 0.0), df

        return self._run(run, "a read", retry=True)

    def keyword(
        self,
        scope: Scope,
        node: Node | None,
        terms: Sequence[str],
        k: int,
        now: datetime,
        as_of: datetime | None = None,
    ) -> builtins.list[int]:
        """Row ids of the best ``k`` BM25 matches (any query term) in scope (true at ``as_of`` if given).

        BM25 over the GIN index's matches, each term weighted by its IDF and the row's length
        normalised against the mean; term frequency inside one memory counts once (memories are
        short facts and messages). ``Memory`` scores the candidates again with full BM25. A long
        memory matches through its passages too, scored by its best passage (as a text of mean length).
        """
        if not terms:
            return []
        where, params = self._where(scope, node, now, as_of)
        query = " | ".join(_tsquery_lexeme(t) for t in terms)
        # The collection statistics are read inside this query (each uncorrelated subquery runs
        # once), not by a second round trip: Memory.search has just read them through term_stats.
        stats = (
            "WITH s AS (SELECT COALESCE(sum(docs), 0)::float8 AS n, "
            "GREATEST(COALESCE(sum(terms), 0)::float8 / GREATEST(COALESCE(sum(docs), 0), 1), 1) AS avg "
            "FROM doc_stats), "
            "w AS (SELECT t.term, ln(1 + (GREATEST(s.n - COALESCE(x.df, 0), 0) + 0.5) / (COALESCE(x.df, 0) + 0.5)) "
            "AS idf FROM s CROSS JOIN unnest(?::text[]) AS t (term) LEFT JOIN (SELECT term, sum(docs)::float8 AS df "
            "FROM term_stats WHERE term = ANY(?) GROUP BY term) AS x ON x.term = t.term) "
        )

        def weight(alias: str) -> tuple[str, builtins.list[Any]]:
            parts: builtins.list[str] = []
            values: builtins.list[Any] = []
            for term in terms:
                parts.append(
                    f"CASE WHEN {alias}.terms @@ ?::tsquery THEN (SELECT idf FROM w WHERE w.term = ?) ELSE 0 END"
                )
                values += [_tsquery_lexeme(term), term]
            return f"({' + '.join(parts)})", values

        own, own_values = weight("m")
        norm = f"(1 + {_BM25_K1} * (1 - {_BM25_B} + {_BM25_B} * m.n_terms / (SELECT avg FROM s)))"
        by_passage, passage_values = weight("p")
        sql = (
            f"{stats}SELECT * FROM (SELECT m.rid, {own} / {norm} AS score FROM memories m "
            f"WHERE m.terms @@ ?::tsquery AND {where} ORDER BY score DESC, m.rid DESC LIMIT ?) AS own "
            f"UNION ALL SELECT * FROM (SELECT p.rid, max({by_passage}) / {1 + _BM25_K1} AS score "
            f"FROM passages p JOIN memories m ON m.rid = p.rid WHERE p.terms @@ ?::tsquery AND {where} "
            "GROUP BY p.rid ORDER BY score DESC, p.rid DESC LIMIT ?) AS by_passage"
        )
        wanted = builtins.list(terms)
        values = [wanted, wanted, *own_values, query, *params, k, *passage_values, query, *params, k]
        best: dict[int, float] = {}
        for rid, score in self._read(sql, values):
            best[int(rid)] = max(float(score), best.get(int(rid), 0.0))
        return [rid for rid, _ in sorted(best.items(), key=lambda x: (-x[1], -x[0]))[:k]]

    def dense(
        self,
        scope: Scope,
        node: Node | None,
        query: Vector,
        k: int,
        now: datetime,
        as_of: datetime | None = None,
    ) -> builtins.list[tuple[int, float]]:
        """(row id, cosine) of the ``k`` nearest memories in scope that pass the filter (true at ``as_of``).

        A memory's cosine is the best of its own vector's and its passages'.
        """
        where, params = self._where(scope, node, now, as_of)

        def run(conn: psycopg.Connection[Any]) -> builtins.list[tuple[int, float]]:
            if self._opened is not None:  # a re-embedding may have switched the store's embedder
                check_recorded(PostgresTx(conn, self.schema), self._opened)
            rows = self._nearest(conn, "memories m", "m", where, params, query, k)
            near = self._nearest(conn, "passages p JOIN memories m ON m.rid = p.rid", "p", where, params, query, 4 * k)
            if not near:
                return rows
            # The best passages may belong to few memories: take their memories' best cosines.
            owners: dict[int, float] = {}
            for rid, cos in near:
                owners[rid] = max(cos, owners.get(rid, -2.0))
            wanted = {rid for rid, _ in rows} | set(sorted(owners, key=lambda r: (-owners[r], r))[:k])
            best = self._best_cosines(conn, query, wanted)
            return sorted(best.items(), key=lambda x: (-x[1], x[0]))[:k]

        return self._run(run, "a search", retry=True)

    @staticmethod
    def _nearest(
        conn: psycopg.Connection[Any],
        source: str,
        alias: str,
        where: str,
        params: builtins.list[Any],
        query: Vector,
        k: int,
    ) -> builtins.list[tuple[int, float]]:
        """(rid, cosine) of the ``k`` nearest vectors of ``source`` (memories, or passages with their
        memory) whose memory ``m`` passes ``where``: exact over few rows, else by the HNSW index."""
        limit = EXACT_SEARCH_ROWS
        count_sql = f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {where} LIMIT {limit}) AS s"
        (count,) = conn.execute(pg_sql(count_sql), params).fetchone()  # type: ignore[misc]
        if count == 0:
            return []
        if count < limit:
            # Few rows: rank them all. MATERIALIZED keeps the planner off the HNSW index.
            sql = (
                f"WITH c AS MATERIALIZED (SELECT {alias}.rid, {alias}.embedding FROM {source} WHERE {where}) "
                "SELECT rid, 1 - (embedding <=> ?) AS cosine FROM c ORDER BY cosine DESC, rid LIMIT ?"
            )
            rows = conn.execute(pg_sql(sql), [*params, query, k]).fetchall()
        else:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(1000, max(100, 2 * k))),))
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            sql = (
                f"SELECT {alias}.rid, 1 - ({alias}.embedding <=> ?) FROM {source} "
                f"WHERE {where} ORDER BY {alias}.embedding <=> ? LIMIT ?"
            )
            rows = conn.execute(pg_sql(sql), [query, *params, query, k]).fetchall()
        return sorted(((int(r[0]), float(r[1])) for r in rows), key=lambda x: (-x[1], x[0]))

    @staticmethod
    def _best_cosines(conn: psycopg.Connection[Any], query: Vector, rids: Iterable[int]) -> dict[int, float]:
        """Each row's cosine: the best of its own vector's and its passages'."""
        sql = (
            "SELECT m.rid, GREATEST(1 - (m.embedding <=> ?), (SELECT max(1 - (p.embedding <=> ?)) FROM passages p "
            "WHERE p.rid = m.rid)) FROM memories m WHERE m.rid = ANY(?)"
        )
        rows = conn.execute(pg_sql(sql), [query, query, builtins.list(rids)]).fetchall()
        return {int(r[0]): float(r[1]) for r in rows}

    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]:
        """Cosine of the query to each row, the best of its own and its passages' (for keyword-only candidates)."""
        wanted = builtins.list(rids)
        if not wanted:
            return {}
        return self._run(lambda conn: self._best_cosines(conn, query, wanted), "a read", retry=True)

    def best_passages(self, query: Vector, terms: Sequence[str], rids: Iterable[int]) -> dict[int, PassageHit]:
        """Each given row's passage that best answers the query (rows without passages are left out).

        Best: the passage holding the most distinct ``terms``, then the highest cosine.
        """
        wanted = builtins.list(rids)
        if not wanted:
            return {}
        matched = "".join(f"{' + ' if i else ''}(p.terms @@ ?::tsquery)::int" for i in range(len(terms)))
        sql = (
            "SELECT DISTINCT ON (p.rid) p.rid, p.seq, p.char_start, p.char_end, 1 - (p.embedding <=> ?) AS cosine, "
            f"p.search_text FROM passages p WHERE p.rid = ANY(?) "
            f"ORDER BY p.rid, {f'{matched} DESC, ' if terms else ''}cosine DESC, p.seq"
        )
        rows = self._read(sql, [query, wanted, *(_tsquery_lexeme(t) for t in terms)])
        return {int(r[0]): PassageHit(int(r[1]), int(r[2]), int(r[3]), float(r[4]), r[5]) for r in rows}
