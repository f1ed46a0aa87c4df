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
- ``Memory.search`` gathers its candidates in one round trip: one statement
  (:mod:`memlane.stores.postgres_search`) in a pipeline with its HNSW settings. A read of one
  statement runs without BEGIN/COMMIT (the pool's connections are in autocommit mode and ``_run``
  opens a transaction where one is needed), so it too is one round trip.

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

from memlane.core.candidates import CandidatePool
from memlane.core.filters import Node, to_iso
from memlane.core.passages import PassageHit
from memlane.errors import ConfigError, EmbedderMismatch, InvalidRequest, StoreBusy, StoreError
from memlane.protocols import Vector
from memlane.stores.postgres_search import (
    SearchQuery,
    candidates_sql,
    dense_sql,
    keyword_sql,
    read_pool,
    run_search,
    tsquery_lexeme,
)
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
# A scope found that large is searched through HNSW without counting it again for this long.
LARGE_SCOPE_SECONDS = 60.0
_RETRIES = 5


def _scope_key(scope: Scope) -> tuple[str | None, str | None, str | None]:
    return (scope.user_id, scope.agent_id, scope.run_id)


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
        # Scopes (no filter) counted at EXACT_SEARCH_ROWS or more -> until when that is trusted.
        self._large: dict[tuple[str | None, str | None, str | None], float] = {}

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
                # BEGIN/COMMIT only where memlane asks (_run): a one-statement read is one round trip.
                kwargs={"autocommit": True},
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

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T], what: str, *, retry: bool, tx: bool = True) -> T:
        """``fn`` on a pooled connection inside a transaction; with ``tx=False`` without one: a read
        of one statement (or one pipeline) is its own implicit transaction, and one round trip."""
        import psycopg
        from psycopg_pool import PoolTimeout

        for attempt in range(_RETRIES):
            committing = False
            try:
                with self.pool.connection() as conn:
                    if not tx:
                        return fn(conn)
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
        return self._run(lambda conn: conn.execute(pg_sql(sql), params).fetchall(), "a read", retry=True, tx=False)

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
        """Delete every memory, history event, entity, relation, statistic and the embedder record: an empty store."""

        def run(tx: Tx) -> None:
            tx.execute(
                "TRUNCATE passages, memories, history, memory_sources, sources, doc_stats, term_stats, "
                "relations, entity_mentions, entity_keys, entities"
            )
            tx.execute("TRUNCATE reembed_vectors")
            tx.execute("TRUNCATE memory_links, memory_access, profiles, leases")
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

    # -- search (memlane.stores.postgres_search) ---------------------------------------------
    def _query(
        self, scope: Scope, node: Node | None, now: datetime, as_of: datetime | None, vector: Vector | None,
        terms: Sequence[str], k: int, include: Sequence[str] = (),
    ) -> SearchQuery:  # fmt: skip
        where, params = self._where(scope, node, now, as_of, include)
        plain = node is None and as_of is None and not include
        large = plain and self._large.get(_scope_key(scope), 0.0) > time.monotonic()
        return SearchQuery(where, params, vector, builtins.list(terms), k, EXACT_SEARCH_ROWS, large)

    def _search(self, statement: tuple[str, builtins.list[Any]], k: int) -> builtins.list[Any]:
        """Rows of one search statement, in one round trip (``postgres_search.run_search``).

        Raises:
            EmbedderMismatch: the store was re-embedded since it was opened (a query vector of
                another dimension fails the statement; one of the same dimension is caught after).
        """
        sql, params = statement
        try:
            recorded, rows = self._run(lambda conn: run_search(conn, sql, params, k), "a search", retry=True, tx=False)
        except StoreError:
            self._check_opened()
            raise
        if self._opened is not None and recorded != (self._opened[0], str(self._opened[1])):
            self._check_opened()
        return rows

    def _check_opened(self) -> None:
        """Raise EmbedderMismatch if the store now records another embedder than it was opened with."""
        opened = self._opened
        if opened is not None:
            self._run(lambda conn: check_recorded(PostgresTx(conn, self.schema), opened), "a read", retry=True)

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
        """A search's whole candidate pool in one statement (see ``CandidateStore.candidates``).

        Raises:
            EmbedderMismatch: the store was re-embedded since it was opened.
        """
        q = self._query(scope, node, now, as_of, query, terms, k, include)
        pool, counted = read_pool(self._search(candidates_sql(q, to_iso(now)), k), terms)
        if not q.large and node is None and as_of is None and not include and counted >= q.exact_rows:
            # Counting a large scope's first rows costs ~1 ms a search: trust the count a while.
            # A scope that shrinks meanwhile is still searched completely (iterative scans).
            self._large[_scope_key(scope)] = time.monotonic() + LARGE_SCOPE_SECONDS
        return pool

    def term_stats(self, terms: Sequence[str]) -> tuple[int, float, dict[str, int]]:
        """(number of rows, mean analysed length, document frequency of each term)."""
        sql = (
            "SELECT COALESCE(sum(docs), 0)::bigint, COALESCE(sum(terms), 0)::bigint, (SELECT array_agg(ARRAY[term, "
            "total::text]) FROM (SELECT term, sum(docs)::bigint AS total FROM term_stats WHERE term = ANY(?) "
            "GROUP BY term) AS t WHERE total > 0) FROM doc_stats"
        )
        docs, total, counts = self._read(sql, [builtins.list(terms)])[0]
        df = {term: int(count) for term, count in counts or ()}
        return int(docs), (float(total) / docs if docs else 0.0), df

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

        BM25 over the GIN index's matches, each term weighted by its IDF and the row's length
        normalised against the mean; term frequency inside one memory counts once (memories are
        short facts and messages). ``Memory`` scores the candidates again with full BM25. A long
        memory matches through its passages too, scored by its best passage (as a text of mean
        length). At most ``postgres_search.KEYWORD_SCAN_ROWS`` matches are ranked: those holding
        every term first, then each term's from the rarest.
        """
        if not terms:
            return []
        q = self._query(scope, node, now, as_of, None, terms, k, include)
        return [int(r[0]) for r in self._search(keyword_sql(q), k)]

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
        """(row id, cosine) of the ``k`` nearest memories in scope that pass the filter (true at ``as_of``).

        A memory's cosine is the best of its own vector's and its passages'.
        """
        q = self._query(scope, node, now, as_of, query, (), k, include)
        return [(int(r[0]), float(r[1])) for r in self._search(dense_sql(q), k)]

    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]:
        """Cosine of the query to each row, the best of its own and its passages' (for keyword-only candidates)."""
        wanted = builtins.list(rids)
        if not wanted:
            return {}
        sql = (
            "SELECT m.rid, GREATEST(1 - (m.embedding <=> ?), (SELECT max(1 - (p.embedding <=> ?)) FROM passages p "
            "WHERE p.rid = m.rid)) FROM memories m WHERE m.rid = ANY(?)"
        )
        return {int(r[0]): float(r[1]) for r in self._read(sql, [query, query, wanted])}

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
        rows = self._read(sql, [query, wanted, *(tsquery_lexeme(t) for t in terms)])
        return {int(r[0]): PassageHit(int(r[1]), int(r[2]), int(r[3]), float(r[4]), r[5]) for r in rows}
