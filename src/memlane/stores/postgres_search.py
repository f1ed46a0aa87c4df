"""PostgreSQL search as single statements: ``Memory.search``'s whole candidate pool in one round trip.

The embedded store answers ``term_stats``, ``dense``, ``keyword``, ``followers``, ``search_rows``,
``cosines`` and ``best_passages`` in process; over a network each would be a round trip (and a
transaction), so :func:`candidates_sql` writes them as the CTEs of one statement:

- ``st``/``tf``: the BM25 statistics and, per query term, its document frequency, IDF and whether
  it is selective enough to propose keyword candidates (``memlane.core.candidates.selective``);
- ``md_n``..``dn``: the ``k`` nearest memories, a memory's cosine being the best of its own
  vector's and its passages'. Each of ``memories`` and ``passages`` is ranked exactly when the
  scope holds fewer than ``exact_rows`` of them (HNSW with a selective filter would return too
  few) and through the HNSW index otherwise; both plans are in the statement, and a one-time
  filter on the count runs only one of them (a scope known to be large is not counted);
- ``kq``..``kw``: the ``k`` best BM25 matches of the selective terms, the rows a term may bring
  capped (:data:`KEYWORD_SCAN_ROWS`, below);
- ``hits``..``bp``: the hits' followers (``fo``), every candidate's row (``rw``), the rows they
  follow (``cx``), which of them have passages (``pn``) and each long candidate's best passage
  (``bp``). The final ``SELECT`` adds cosines and returns one row per candidate, one per context
  row and one of statistics (:func:`read_pool`).

The HNSW settings are transaction-local (``set_config(..., true)``) and travel in the same
pipeline as the statement (:func:`run_search`): gathering a search's candidates is one network
round trip (reading the memories it returns is the second).

Keyword cost is bounded: a selective term may be in up to 5% of the memories (50,000 of a
million), and ranking a match costs a few us (it is a heap row). A scope under ``exact_rows``
memories has every match ranked, from its own rows (the GIN index would visit every tenant's
matches of a common term). In a larger scope at most :data:`KEYWORD_SCAN_ROWS` matching rows (and
as many passages) are fetched and ranked: first those holding every selective term, then those of
each term from the rarest up (a GIN scan for "any two terms" cost more than the rows it saved).
While the matches fit under the cap every one is ranked, as ``keyword`` always did; above it, the
rows left out hold a commoner term and not every term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memlane.core.candidates import SELECTIVE_MIN_DOCS, SELECTIVE_SHARE, CandidatePool
from memlane.core.passages import PassageHit
from memlane.core.records import SearchRow
from memlane.protocols import Vector
from memlane.stores.sql_tx import pg_sql

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "EF_SEARCH",
    "KEYWORD_SCAN_ROWS",
    "SearchQuery",
    "candidates_sql",
    "dense_sql",
    "ef_search",
    "keyword_sql",
    "read_pool",
    "run_search",
    "tsquery_lexeme",
]

# Rows (and passages) a keyword search fetches and ranks at most (module docstring).
KEYWORD_SCAN_ROWS = 1000
# hnsw.ef_search for k = 100 nearest (docs/postgres.md: the sweep it was chosen by).
EF_SEARCH = 200
_BM25_K1 = 1.2
_BM25_B = 0.75
# One candidate row per memory, one per context row, one row of statistics.
_CANDIDATE, _CONTEXT, _STATS = 0, 1, 2


def tsquery_lexeme(term: str) -> str:
    """One term as a quoted tsquery lexeme (bound as a parameter, never pasted into SQL)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def ef_search(k: int) -> int:
    """``hnsw.ef_search`` for ``k`` nearest: :data:`EF_SEARCH` at the default k, growing with k."""
    return min(1000, max(EF_SEARCH, k))


@dataclass(frozen=True)
class SearchQuery:
    """What one search asks: ``where`` (over ``memories m``, ``?`` placeholders) with its values,
    the query vector and terms, ``k``, and below how many rows a scope is ranked exactly;
    ``large``: the scope is known to hold more, so its memories are not counted again."""

    where: str
    params: list[Any]
    vector: Vector | None
    terms: Sequence[str]
    k: int
    exact_rows: int
    large: bool = False


@dataclass
class _Sql:
    """SQL text with ``?`` placeholders and their values, appended in step."""

    text: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, sql: str, *params: Any) -> None:
        self.text.append(sql)
        self.params.extend(params)

    def where(self, q: SearchQuery) -> None:
        """The scope, expiry and filter condition, with its values."""
        self.add(q.where, *q.params)

    def body(self, sql: str, *params: Any) -> None:
        """Start the statement's body after its CTEs (each of which ends in ", ")."""
        self.text[-1] = self.text[-1].removesuffix(", ") + " "
        self.add(sql, *params)

    def done(self) -> tuple[str, list[Any]]:
        """The statement (psycopg placeholders) and its values."""
        return pg_sql("".join(self.text)), self.params


def _stats(s: _Sql, q: SearchQuery) -> None:
    """``st``: documents and terms; ``sa``: mean length; ``tf``: each query term's frequency,
    IDF (as ``keyword`` has always computed it) and whether it proposes candidates."""
    terms = list(q.terms)
    s.add(
        "st AS (SELECT COALESCE(sum(docs), 0)::bigint AS n, COALESCE(sum(terms), 0)::bigint AS total "
        "FROM doc_stats), "
        "sa AS (SELECT GREATEST(st.total::float8 / GREATEST(st.n, 1), 1) AS avg FROM st), "
        "tf AS MATERIALIZED (SELECT t.i, t.term, t.lex::tsquery AS lex, COALESCE(x.df, 0) AS df, "
        "ln(1 + (GREATEST(st.n::float8 - COALESCE(x.df, 0)::float8, 0) + 0.5) / (COALESCE(x.df, 0)::float8 + 0.5)) "
        "AS idf, COALESCE(x.df, 0) <= GREATEST(?::bigint, st.n / ?::bigint) AS sel "
        "FROM st CROSS JOIN unnest(?::text[], ?::text[]) WITH ORDINALITY AS t (term, lex, i) "
        "LEFT JOIN (SELECT term, sum(docs)::bigint AS df FROM term_stats WHERE term = ANY(?) GROUP BY term) AS x "
        "ON x.term = t.term), ",
        SELECTIVE_MIN_DOCS,
        SELECTIVE_SHARE,
        terms,
        [tsquery_lexeme(t) for t in terms],
        terms,
    )


def _weight(s: _Sql, q: SearchQuery, alias: str) -> None:
    """The summed IDF of the selective terms ``alias.terms`` holds (in query order, as before)."""
    if not q.terms:
        s.add("0")
        return
    for i, term in enumerate(q.terms, start=1):
        s.add(
            f"{' + ' if i > 1 else ''}CASE WHEN {alias}.terms @@ ?::tsquery "
            "THEN COALESCE((SELECT idf FROM tf WHERE tf.i = ? AND tf.sel), 0) ELSE 0 END",
            tsquery_lexeme(term),
            i,
        )


# The two sources searched: a memory's own text and vector, and its passages'.
_MEMORIES = ("md", "memories m", "m", "m.rid AS key, m.rid, m.embedding, m.terms, m.n_terms")
_PASSAGES = ("pd", "passages p JOIN memories m ON m.rid = p.rid", "p", "p.pid AS key, p.rid, p.embedding, p.terms")


def _scope_rows(s: _Sql, q: SearchQuery) -> None:
    """``md_n``/``pd_n``: how many memories / passages the scope holds, counted up to
    ``exact_rows``; ``md_x``/``pd_x``: a small scope's rows themselves, which dense and keyword
    search then rank directly (an index over the whole table would visit every tenant's rows)."""
    n = int(q.exact_rows)
    for name, source, _, columns in (_MEMORIES, _PASSAGES):
        if q.large and name == "md":
            s.add(f"{name}_n AS (SELECT {n}::bigint AS n), ")
        else:
            s.add(f"{name}_n AS (SELECT count(*) AS n FROM (SELECT 1 FROM {source} WHERE ")
            s.where(q)
            s.add(f" LIMIT {n}) AS c), ")
        # MATERIALIZED keeps the planner off the indexes: these rows are ranked as they are.
        s.add(f"{name}_x AS MATERIALIZED (SELECT {columns} FROM {source} WHERE ")
        s.where(q)
        s.add(f" AND (SELECT n FROM {name}_n) < {n}), ")


def _matches(s: _Sql, q: SearchQuery, name: str, source: tuple[str, str, str, str]) -> None:
    """``name``: the keyword matches to rank of ``source`` in scope. In a small scope, every match
    among its rows; in a large one, up to KEYWORD_SCAN_ROWS rows through the GIN index: those
    holding every selective term first, then each term's from the rarest up (the executor stops
    pulling once the cap is reached)."""
    cap, n = int(KEYWORD_SCAN_ROWS), int(q.exact_rows)
    prefix, table, alias, columns = source
    columns = columns.replace(f"{alias}.embedding, ", "")
    kept = ", ".join("x." + c.split()[-1].split(".")[-1] for c in columns.split(", "))  # the same, from {prefix}_x
    s.add(
        f"{name} AS MATERIALIZED (SELECT {kept} FROM {prefix}_x x WHERE x.terms @@ (SELECT any_term FROM kq) UNION ALL "
        f"SELECT * FROM (SELECT DISTINCT ON (h.key) h.* FROM ((SELECT {columns} FROM {table} "
        f"WHERE {alias}.terms @@ (SELECT all_terms FROM kq) AND "
    )
    s.where(q)
    s.add(f" LIMIT {cap}) UNION ALL (SELECT x.* FROM (SELECT lex FROM tf WHERE sel ORDER BY df, i) AS t ")
    s.add(f"CROSS JOIN LATERAL (SELECT {columns} FROM {table} WHERE {alias}.terms @@ t.lex AND ")
    s.where(q)
    s.add(f" LIMIT {cap}) AS x) LIMIT {cap}) AS h) AS g WHERE (SELECT n FROM {prefix}_n) >= {n}), ")


def _keyword(s: _Sql, q: SearchQuery) -> None:
    """``kw``: the ``k`` best BM25 matches (own text or a passage), as ``PostgresStore.keyword``."""
    k = int(q.k)
    s.add(
        "kq AS MATERIALIZED (SELECT CASE WHEN count(*) > 1 THEN string_agg(lex::text, ' & ' ORDER BY i)::tsquery "
        "END AS all_terms, string_agg(lex::text, ' | ' ORDER BY i)::tsquery AS any_term FROM tf WHERE sel), "
    )
    _matches(s, q, "kr", _MEMORIES)
    _matches(s, q, "kp", _PASSAGES)
    # A memory's own match is normalised by its length; a passage scores as a text of mean length.
    s.add("kw AS MATERIALIZED (SELECT rid, max(score) AS score FROM ((SELECT r.rid, (")
    _weight(s, q, "r")
    s.add(
        f") / (1 + {_BM25_K1} * (1 - {_BM25_B} + {_BM25_B} * r.n_terms / (SELECT avg FROM sa))) AS score "
        f"FROM kr r ORDER BY score DESC, r.rid DESC LIMIT {k}) UNION ALL (SELECT p.rid, max("
    )
    _weight(s, q, "p")
    s.add(
        f") / {1 + _BM25_K1} AS score FROM kp p GROUP BY p.rid ORDER BY score DESC, p.rid DESC LIMIT {k})) AS u "
        f"GROUP BY rid ORDER BY score DESC, rid DESC LIMIT {k}), "
    )


def _nearest(s: _Sql, q: SearchQuery, source: tuple[str, str, str, str], k: int) -> None:
    """``md``/``pd``: (rid, cos) of the ``k`` nearest vectors of ``source`` in scope: a small
    scope's rows ranked exactly (``_scope_rows``), a large one's through HNSW."""
    name, table, alias, _ = source
    n, k = int(q.exact_rows), int(k)
    s.add(
        f"{name} AS MATERIALIZED ((SELECT rid, 1 - (embedding <=> ?) AS cos FROM {name}_x "
        f"ORDER BY cos DESC, rid LIMIT {k}) UNION ALL (SELECT {alias}.rid, 1 - ({alias}.embedding <=> ?) "
        f"FROM {table} WHERE ",
        q.vector,
        q.vector,
    )
    s.where(q)
    s.add(f" AND (SELECT n FROM {name}_n) >= {n} ORDER BY {alias}.embedding <=> ? LIMIT {k})), ", q.vector)


def _best_cosine(s: _Sql, q: SearchQuery, alias: str) -> None:
    """A memory's cosine: the best of its own vector's and its passages'."""
    s.add(
        f"GREATEST(1 - ({alias}.embedding <=> ?), (SELECT max(1 - (p.embedding <=> ?)) FROM passages p "
        f"WHERE p.rid = {alias}.rid))",
        q.vector,
        q.vector,
    )


def _dense(s: _Sql, q: SearchQuery) -> None:
    """``dn``: (rid, cos) of the ``k`` nearest memories, as ``PostgresStore.dense``."""
    _nearest(s, q, _MEMORIES, q.k)
    _nearest(s, q, _PASSAGES, 4 * q.k)
    # The best passages may belong to few memories: their memories' best cosines compete too.
    s.add("dn AS MATERIALIZED ((SELECT rid, cos FROM md WHERE NOT EXISTS (SELECT 1 FROM pd)) UNION ALL (SELECT m.rid, ")
    _best_cosine(s, q, "m")
    k = int(q.k)
    s.add(
        " AS cos FROM memories m WHERE m.rid = ANY(ARRAY(SELECT rid FROM md UNION (SELECT rid FROM pd GROUP BY rid "
        f"ORDER BY max(cos) DESC, rid LIMIT {k}))) AND EXISTS (SELECT 1 FROM pd) ORDER BY cos DESC, m.rid LIMIT {k})), "
    )


def keyword_sql(q: SearchQuery) -> tuple[str, list[Any]]:
    """Row ids of the ``k`` best keyword matches, best first."""
    s = _Sql()
    s.add("WITH ")
    _stats(s, q)
    _scope_rows(s, q)
    _keyword(s, q)
    s.body("SELECT rid FROM kw ORDER BY score DESC, rid DESC")
    return s.done()


def dense_sql(q: SearchQuery) -> tuple[str, list[Any]]:
    """(rid, cosine) of the ``k`` nearest memories."""
    s = _Sql()
    s.add("WITH ")
    _scope_rows(s, q)
    _dense(s, q)
    s.body("SELECT rid, cos FROM dn ORDER BY cos DESC, rid")
    return s.done()


def candidates_sql(q: SearchQuery, now_iso: str) -> tuple[str, list[Any]]:
    """The whole candidate pool (module docstring); rows as :func:`read_pool` reads them."""
    s = _Sql()
    s.add("WITH ")
    _stats(s, q)
    _scope_rows(s, q)
    _keyword(s, q)
    _dense(s, q)
    # Row ids are looked up as arrays (= ANY(ARRAY(...))): one index probe each, whatever the
    # planner would estimate for a join with a CTE.
    s.add(
        "hits AS (SELECT rid FROM dn UNION SELECT rid FROM kw), fo AS MATERIALIZED (SELECT m.rid FROM memories m "
        "WHERE m.prev_rid = ANY(ARRAY(SELECT rid FROM hits)) AND "
    )
    s.where(q)
    row = "m.rid, m.search_text, m.timestamp, m.prev_rid, m.expires_at, m.memory, m.embedding"
    s.add(
        f"), rw AS MATERIALIZED (SELECT {row} FROM memories m "
        "WHERE m.rid = ANY(ARRAY(SELECT rid FROM hits UNION SELECT rid FROM fo))), "
        f"cx AS MATERIALIZED (SELECT {row} FROM memories m WHERE m.rid = ANY(ARRAY(SELECT prev_rid FROM rw "
        "WHERE prev_rid IS NOT NULL EXCEPT SELECT rid FROM rw))), "
        "pn AS MATERIALIZED (SELECT p.rid, count(*) AS np FROM passages p "
        "WHERE p.rid = ANY(ARRAY(SELECT rid FROM rw UNION ALL SELECT rid FROM cx)) GROUP BY p.rid), "
    )
    _best_passages(s, q)
    # A long memory's text is read only when a candidate follows it (ranking reads its passage).
    s.body(
        f"SELECT {_CANDIDATE}, r.rid, (d.rid IS NOT NULL)::int + 2 * (k.rid IS NOT NULL)::int "
        "+ 4 * (f.rid IS NOT NULL)::int, COALESCE(d.cos, CASE WHEN n.np IS NULL THEN 1 - (r.embedding <=> ?) ELSE ",
        q.vector,
    )
    _best_cosine(s, q, "r")
    s.add(
        " END), CASE WHEN n.np IS NULL OR r.rid IN (SELECT prev_rid FROM rw) THEN r.search_text END, r.timestamp, "
        "r.prev_rid, r.expires_at, COALESCE(n.np, 0), CASE WHEN n.np IS NULL THEN length(r.memory) ELSE 0 END, "
        "b.seq, b.char_start, b.char_end, b.cos, b.search_text, NULL::bigint[] "
        "FROM rw r LEFT JOIN dn d ON d.rid = r.rid LEFT JOIN kw k ON k.rid = r.rid LEFT JOIN fo f ON f.rid = r.rid "
        "LEFT JOIN pn n ON n.rid = r.rid LEFT JOIN bp b ON b.rid = r.rid "
        f"UNION ALL SELECT {_CONTEXT}, c.rid, 0, CASE WHEN c.expires_at IS NULL OR c.expires_at > ? THEN "
        "CASE WHEN n.np IS NULL THEN 1 - (c.embedding <=> ?) ELSE ",
        now_iso,
        q.vector,
    )
    _best_cosine(s, q, "c")
    s.add(
        " END END, c.search_text, c.timestamp, c.prev_rid, c.expires_at, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL "
        "FROM cx c LEFT JOIN pn n ON n.rid = c.rid "
        f"UNION ALL SELECT {_STATS}, st.n, 0, NULL, NULL, NULL, NULL, NULL, st.total, (SELECT n FROM md_n), "
        "NULL, NULL, NULL, NULL, NULL, (SELECT array_agg(df ORDER BY i) FROM tf) FROM st"
    )
    return s.done()


def _best_passages(s: _Sql, q: SearchQuery) -> None:
    """``bp``: each long candidate's passage holding the most distinct selective terms, then the
    nearest, then the first (as ``PostgresStore.best_passages``)."""
    s.add(
        "bp AS (SELECT DISTINCT ON (p.rid) p.rid, p.seq, p.char_start, p.char_end, 1 - (p.embedding <=> ?) AS cos, "
        "p.search_text FROM passages p WHERE p.rid = ANY(ARRAY(SELECT rid FROM pn)) ORDER BY p.rid, ",
        q.vector,
    )
    for i, term in enumerate(q.terms, start=1):
        s.add(
            f"{' + ' if i > 1 else ''}(p.terms @@ ?::tsquery AND (SELECT sel FROM tf WHERE tf.i = ?))::int",
            tsquery_lexeme(term),
            i,
        )
    s.add(f"{' DESC, ' if q.terms else ''}cos DESC, p.seq), ")


def read_pool(rows: Sequence[Sequence[Any]], terms: Sequence[str]) -> tuple[CandidatePool, int]:
    """The pool from :func:`candidates_sql`'s rows, and how many memories the scope holds
    (counted up to ``exact_rows``)."""
    pool = CandidatePool()
    names = ("dense", "keyword", "context")
    counted = 0
    for r in rows:
        kind, rid = r[0], int(r[1])
        if kind == _STATS:
            counted = int(r[9])
            pool.n_docs, total = rid, int(r[8])
            pool.avg_len = total / rid if rid else 0.0
            pool.df = {t: int(d) for t, d in zip(terms, r[15] or (), strict=True) if d > 0}
            continue
        row = SearchRow(rid, r[4] or "", r[5], r[6], r[7], int(r[8]), int(r[9]))
        if r[3] is not None:
            pool.cosine[rid] = float(r[3])
        if kind == _CONTEXT:
            pool.context[rid] = row
            continue
        pool.rows[rid] = row
        pool.sources[rid] = [name for bit, name in enumerate(names) if r[2] >> bit & 1]
        if r[10] is not None:
            pool.passages[rid] = PassageHit(int(r[10]), int(r[11]), int(r[12]), float(r[13]), r[14])
    return pool, counted


def run_search(
    conn: psycopg.Connection[Any], sql: str, params: Sequence[Any], k: int
) -> tuple[tuple[str | None, str | None], list[Any]]:
    """Run one search statement with its HNSW settings in one round trip.

    The connection is in autocommit mode: the settings, a read of the embedder the store records
    and the statement go out as one pipeline, which PostgreSQL runs as one implicit transaction,
    so ``set_config(..., true)`` holds for the statement and no longer. Iterative scans
    (pgvector 0.8) let a filtered HNSW scan go on past ``ef_search`` rows until ``k`` pass; JIT
    is off for it.

    Returns:
        ((embedder id, dimension) the store records, the statement's rows).
    """
    with conn.pipeline():
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            # The planner's cost for a scope of a million rows passes jit_above_cost: compiling the
            # statement would take longer than running it.
            "set_config('jit', 'off', true)",
            (str(ef_search(k)),),
        )
        meta = conn.execute("SELECT key, value FROM meta WHERE key IN ('embedder_id', 'embedder_dimension')")
        cur = conn.execute(sql, params, prepare=False, binary=True)
    recorded = dict(meta.fetchall())
    return (recorded.get("embedder_id"), recorded.get("embedder_dimension")), cur.fetchall()
