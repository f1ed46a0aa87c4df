"""PostgreSQL column of the scale benchmark: ``python bench/scale.py --backend postgres``.

Runs a throwaway PostgreSQL 18 + pgvector server (``memlane.testing._postgres.LocalPostgres``,
fsync on, settings in ``SETTINGS``) and, for each layout (every memory under one ``user_id``;
memories spread over 10,000 users, memory ``i`` belonging to ``user{i % 10000}``), grows one
database through the sizes asked for and measures at each size:

- ingest through ``Memory.add(infer=False)`` (the path a server uses) with the HNSW index in
  place, for the first ``--add-rows`` memories (100k): one scope with 100 messages per call and
  one writer (writers of one scope queue on its advisory lock); the users layout with each
  user's messages in one call (10 per call at 100k), in blocks of 500 users alternately written
  by 1 and by ``--writers`` processes, so both rates cover the same range of index sizes;
- bulk fill beyond that (to 1M): ``COPY`` straight into memlane's tables (not a memlane API),
  rows shaped exactly as ``add`` writes them (history ADD events, conversation links, BM25
  statistics kept by the store's own triggers), with the HNSW index dropped first, then
  ``VACUUM (ANALYZE)`` and the index rebuilt with the store's definition (each timed);
- ``Memory.search(query, user_id=..., limit=10)`` p50/p95 over the queries, query embedding by
  the real model included (the users layout searches a random user's scope);
- ``store.dense`` and ``store.keyword`` alone, and ``store.candidates`` (the one round trip that
  gathers a search's candidates: both of them and everything else) p50/p95;
- worst-case keyword queries: the corpus words found in the most memories, the commonest of all
  (they propose no keyword candidates) and the commonest still under the selective limit (the
  most matches a keyword search has to rank): ``Memory.search`` and ``store.keyword`` p50;
- one scope only (where the store's HNSW path runs): recall of ``store.dense`` at k=10 and at the
  k ``Memory.search`` asks for (``max(RankingParams.candidates, 3 * limit)`` = 100) against exact
  numpy search over the vectors inserted (tie-tolerant: a hit scores within 1e-5 of the k-th
  exact cosine), and the same SQL at several ``hnsw.ef_search`` values; what the store's
  speed settings cost in results: the share of a reference top 10 (``ef_search`` 1000, keyword
  matches uncapped) that ``Memory.search`` returns with them (``results_agreement``);
- database size (``pg_database_size``) and the main relations' sizes.

Synthesized data (MiniLM embeds ~500 sentences/s, so 1M real embeddings are out of reach): a pool
of ``--pool`` distinct sentences from ``scale.corpus`` is embedded by the real model. Memory ``i``
for ``i >= pool`` is pool sentence ``j = (i % pool + 7919 * (i // pool)) % pool`` followed by a
chat tail chosen by ``i // pool`` ("Anyway.", "Good to know. Noted.", ...), so every text is
distinct and a user's variants come from different pool sentences. Its vector is
``normalise(pool_vector[j] + sigma * N(0, I))``, with ``sigma`` calibrated so the expected cosine
to the pool vector equals the mean cosine the real model gives between 256 sampled derived
texts and their pool sentence. Defaults: pool 50k, so 100k is 2 and 1M is 20 variants per pool
sentence. Such clusters of near-duplicates are harder for HNSW than real data (measured at 20k
memories: store.dense recall@10 0.96 with every vector real, 0.82 with 20 variants per
sentence), so the recall figures at 1M are pessimistic.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import platform
import random
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from scale import PreEmbedded, corpus, pct, questions, timed

from memlane import Memory
from memlane.core.candidates import selective, selective_limit
from memlane.core.filters import to_iso
from memlane.core.ranking import RankingParams
from memlane.core.text import analyse, content_hash, index_text, query_terms
from memlane.protocols import EmbedKind, Vectors
from memlane.providers.onnx_embedder import MiniLMOnnxEmbedder
from memlane.stores.postgres import EXACT_SEARCH_ROWS, PostgresStore
from memlane.stores.postgres_search import ef_search
from memlane.types import Scope

USERS = 10_000
ONE = "everyone"
PER_CALL = 100
BLOCK_USERS = 500
COPY_CHUNK = 50_000
LIMIT = 10
SEARCH_K = max(RankingParams().candidates, 3 * LIMIT)  # what Memory.search asks store.dense for
SETTINGS = {
    "shared_buffers": "4GB",
    "maintenance_work_mem": "4GB",  # the 1M x 384 HNSW graph (~2.5 GB) is built in memory
    "max_parallel_maintenance_workers": "1",  # 2 cores: leader + 1 worker build the index
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "effective_cache_size": "12GB",
}
SHOWN = [*SETTINGS, "fsync", "synchronous_commit", "full_page_writes", "work_mem", "max_connections"]
TAILS = """Anyway.|Just saying.|Good to know.|Worth remembering.|Or so I heard.|Funny, right?|Back to work now.|
Long story.|Not a big deal.|Can't wait.|Who knew?|More on that later.|Fingers crossed.|Honestly.|
Still thinking about it.|Classic.|Noted.|Same as always.|Big news.|Whatever.""".replace("\n", "").split("|")
MEMORIES = "memlane.memories"
LAYOUTS = {"one": "one scope", "users": f"{USERS:,} users"}

log: Callable[[str], None] = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731


def tail(variant: int) -> str:
    """The suffix of derived variant ``variant`` (>= 1): one tail, or two for variants past 20."""
    first, second = (variant - 1) % len(TAILS), (variant - 1) // len(TAILS)
    return TAILS[first] if second == 0 else f"{TAILS[first]} {TAILS[second - 1]}"


class Data:
    """The ``n`` memory texts and vectors: an embedded pool plus derived variants (module docstring)."""

    def __init__(self, real: MiniLMOnnxEmbedder, n: int, pool: int, seed: int = 3) -> None:
        self.real = real
        pool = min(pool, n)
        if math.ceil(n / pool) - 1 > len(TAILS) * (len(TAILS) + 1):
            raise SystemExit(f"--pool {pool} is too small for {n} memories")
        base = corpus(pool)
        emb = PreEmbedded(real)
        log(f"embedding the pool: {pool} sentences")
        self.embed_per_s = pool / emb.preload(base)
        pool_vecs = np.stack([emb.cache[t] for t in base]).astype(np.float32)
        self.pool, self.sigma, self.calibration_cos = pool, 0.0, 1.0
        idx = np.arange(pool, n)
        variant, j = idx // pool, (idx % pool + 7919 * (idx // pool)) % pool
        derived = [f"{base[b]} {tail(v)}" for b, v in zip(j.tolist(), variant.tolist(), strict=True)]
        self.texts = base + derived
        self.vecs = np.empty((n, pool_vecs.shape[1]), dtype=np.float32)
        self.vecs[:pool] = pool_vecs
        if derived:
            rng = np.random.default_rng(seed)
            sample = rng.choice(len(derived), size=min(256, len(derived)), replace=False)
            real_vecs = real.embed([derived[s] for s in sample])
            self.calibration_cos = float(np.mean(np.sum(real_vecs * pool_vecs[j[sample]], axis=1)))
            self.sigma = math.sqrt((1 / self.calibration_cos**2 - 1) / pool_vecs.shape[1])
            for lo in range(0, len(derived), 100_000):
                rows = pool_vecs[j[lo : lo + 100_000]]
                rows = rows + self.sigma * rng.standard_normal(rows.shape, dtype=np.float32)
                self.vecs[pool + lo : pool + lo + len(rows)] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        self.index = {t: i for i, t in enumerate(self.texts)}


class Lookup:
    """Document vectors handed in with each batch; queries run the real model (when given)."""

    def __init__(self, model_id: str, dimension: int, real: MiniLMOnnxEmbedder | None = None) -> None:
        self.model_id, self.dimension, self.real = model_id, dimension, real
        self.vectors: dict[str, np.ndarray] = {}

    def load(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.vectors = dict(zip(texts, vectors, strict=True))

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        if kind == "query":
            assert self.real is not None, "this embedder only looks documents up"
            return self.real.embed(texts, kind=kind)
        return np.stack([self.vectors[t] for t in texts])


# -- writer processes (spawned: each has its own Memory and connection) --------------------------
_WRITER: dict[str, Any] = {}
Call = tuple[str, list[str], np.ndarray]


def _writer_init(url: str, model_id: str, dimension: int) -> None:
    _WRITER["emb"] = emb = Lookup(model_id, dimension)
    _WRITER["mem"] = mem = Memory(store=PostgresStore(url, max_size=1), embedder=emb)
    mem.get_all(user_id=ONE, limit=1)  # connect now, outside the timings


def _write(calls: list[Call]) -> int:
    mem, emb, added = _WRITER["mem"], _WRITER["emb"], 0
    for user, texts, vecs in calls:
        emb.load(texts, vecs)
        result = mem.add([{"role": "user", "content": t} for t in texts], user_id=user, infer=False)
        added += sum(r["event"] == "ADD" for r in result["results"])
    return added


def _run_tasks(pool: ProcessPoolExecutor, tasks: list[list[Call]]) -> tuple[int, float]:
    start = time.perf_counter()
    added = sum(f.result() for f in [pool.submit(_write, t) for t in tasks])
    return added, time.perf_counter() - start


def ingest(url: str, data: Data, layout: str, lo: int, hi: int, writers: int) -> list[dict[str, Any]]:
    """Rows [lo, hi) through Memory.add in writer processes; one record per writer count."""
    if layout == "one":
        spans = [(i, min(i + PER_CALL, hi)) for i in range(lo, hi, PER_CALL)]
        calls = [(ONE, data.texts[a:b], data.vecs[a:b]) for a, b in spans]
        blocks = [[calls[c : c + 50]] for c in range(0, len(calls), 50)]  # 5,000 memories per block
        counts = [1] * len(blocks)
    else:
        mine: dict[int, list[int]] = {}
        for i in range(lo, hi):
            mine.setdefault(i % USERS, []).append(i)
        users = sorted(mine)
        blocks, counts = [], []
        for n, b in enumerate(range(0, len(users), BLOCK_USERS)):
            calls = []
            for u in users[b : b + BLOCK_USERS]:
                for c in range(0, len(mine[u]), PER_CALL):
                    rows = mine[u][c : c + PER_CALL]
                    calls.append((f"user{u}", [data.texts[i] for i in rows], data.vecs[rows]))
            k = 1 if n % 2 == 0 else writers
            blocks.append([calls[w::k] for w in range(k)])
            counts.append(k)
    totals: dict[int, list[float]] = {}  # writers -> [memories, seconds, calls]
    ctx = multiprocessing.get_context("spawn")
    init = (url, data.real.model_id, data.real.dimension)
    with ProcessPoolExecutor(writers, mp_context=ctx, initializer=_writer_init, initargs=init) as pool:
        list(pool.map(_write, [[] for _ in range(writers)]))  # start every worker before timing
        for tasks, k in zip(blocks, counts, strict=True):
            added, secs = _run_tasks(pool, tasks)
            acc = totals.setdefault(k, [0, 0.0, 0])
            acc[0], acc[1], acc[2] = acc[0] + added, acc[1] + secs, acc[2] + sum(len(t) for t in tasks)
    return [
        {
            "layout": LAYOUTS[layout],
            "rows": f"{lo}-{hi}",
            "writers": k,
            "memories_per_s": round(added / secs, 1),
            "calls_per_s": round(calls / secs, 1),
            "memories": int(added),
            "seconds": round(secs, 1),
            "per_call": PER_CALL if layout == "one" else round(added / calls, 1),
        }
        for k, (added, secs, calls) in sorted(totals.items())
    ]


# -- bulk fill ---------------------------------------------------------------------------------
def bulk_fill(url: str, data: Data, layout: str, lo: int, hi: int) -> dict[str, Any]:
    """Rows [lo, hi) by COPY with the HNSW index dropped; then VACUUM (ANALYZE) and the rebuild."""
    step = 1 if layout == "one" else USERS
    notices: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET search_path TO memlane, public")  # the store's triggers call memlane_count unqualified
        conn.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        conn.execute(f"DROP INDEX IF EXISTS {MEMORIES}_hnsw")
        last = dict(conn.execute(f"SELECT user_id, max(rid) FROM {MEMORIES} GROUP BY user_id").fetchall())
        rid0 = int(conn.execute(f"SELECT COALESCE(max(rid), 0) + 1 FROM {MEMORIES}").fetchone()[0])  # type: ignore[index]
        now = to_iso(datetime.now(UTC))
        start = time.perf_counter()
        for c in range(lo, hi, COPY_CHUNK):
            with conn.transaction(), conn.cursor() as cur:
                rows, history = [], []
                for i in range(c, min(c + COPY_CHUNK, hi)):
                    text, user = data.texts[i], ONE if layout == "one" else f"user{i % USERS}"
                    search = analyse(index_text(text, None))
                    prev = rid0 + i - step - lo if i - step >= lo else last.get(user)
                    mid = str(uuid.uuid4())
                    rows.append((rid0 + i - lo, mid, user, "user", text, search, len(search.split()),
                                 content_hash(text), now, now, now, prev, data.vecs[i]))  # fmt: skip
                    history.append((mid, "ADD", text, now, now, user))
                cols = "rid, id, user_id, role, memory, search_text, n_terms, hash, created_at, updated_at, timestamp"
                with cur.copy(f"COPY {MEMORIES} ({cols}, prev_rid, embedding) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int8", *["text"] * 5, "int4", *["text"] * 4, "int8", "vector"])
                    for row in rows:
                        cp.write_row(row)
                hcols = "memory_id, event, new_memory, created_at, effective_at, user_id"
                with cur.copy(f"COPY memlane.history ({hcols}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["text"] * 6)
                    for row in history:
                        cp.write_row(row)
        copy_s = time.perf_counter() - start
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{MEMORIES}', 'rid'), (SELECT max(rid) FROM {MEMORIES}))")
        vacuum_s = timed(conn.execute, f"VACUUM (ANALYZE) {MEMORIES}, memlane.history") / 1000
        build_s = timed(
            conn.execute, f"CREATE INDEX memories_hnsw ON {MEMORIES} USING hnsw (embedding vector_cosine_ops)"
        )
    return {
        "layout": LAYOUTS[layout],
        "rows": f"{lo}-{hi}",
        "method": "COPY into memlane.memories + memlane.history, HNSW dropped",
        "copy_rows_per_s": round((hi - lo) / copy_s, 1),
        "copy_s": round(copy_s, 1),
        "vacuum_analyze_s": round(vacuum_s, 1),
        "hnsw_build_s": round(build_s / 1000, 1),
        "notices": notices,
    }


# -- measurements ------------------------------------------------------------------------------
def sizes_mb(url: str) -> dict[str, float]:
    sql = (
        "SELECT pg_database_size(current_database()), pg_table_size('memlane.memories'), "
        "pg_indexes_size('memlane.memories'), COALESCE(pg_relation_size(to_regclass('memlane.memories_hnsw')), 0), "
        "pg_relation_size('memlane.memories_terms'), pg_total_relation_size('memlane.history')"
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    keys = ("db_mb", "memories_table_mb", "memories_indexes_mb", "hnsw_mb", "gin_mb", "history_mb")
    return {k: round(v / 1e6, 1) for k, v in zip(keys, row, strict=True)}


def _users(layout: str, size: int, n: int) -> list[str]:
    rng = random.Random(5)
    return [ONE if layout == "one" else f"user{rng.randrange(min(USERS, size))}" for _ in range(n)]


def bench_search(mem: Memory, qs: Sequence[str], layout: str, size: int) -> dict[str, float]:
    users = _users(layout, size, len(qs))
    cold = timed(mem.search, qs[0], user_id=users[0], limit=LIMIT)
    times = [timed(mem.search, q, user_id=u, limit=LIMIT) for q, u in zip(qs, users, strict=True)]
    return {"search_p50_ms": pct(times, 0.5), "search_p95_ms": pct(times, 0.95), "first_search_ms": round(cold, 1)}


def bench_parts(mem: Memory, qs: Sequence[str], qvecs: np.ndarray, layout: str, size: int) -> dict[str, float]:
    """Parts of each search alone: store.dense, store.keyword (k=SEARCH_K) and the one-statement
    store.candidates that Memory.search sends (query embedded ahead)."""
    mem.get_all(user_id=ONE, limit=1)  # opens the store
    store, now = mem.store, datetime.now(UTC)
    dense, keyword, gather = [], [], []
    for q, qvec, user in zip(qs, qvecs, _users(layout, size, len(qs)), strict=True):
        scope, terms = Scope(user_id=user), query_terms(q)
        n_docs, _, df = store.term_stats(terms)  # type: ignore[attr-defined]
        dense.append(timed(store.dense, scope, None, qvec, SEARCH_K, now))  # type: ignore[attr-defined]
        keyword.append(timed(store.keyword, scope, None, selective(terms, df, n_docs), SEARCH_K, now))  # type: ignore[attr-defined]
        gather.append(timed(store.candidates, scope, None, qvec, terms, SEARCH_K, now))  # type: ignore[attr-defined]
    return {
        "dense_p50_ms": pct(dense, 0.5),
        "dense_p95_ms": pct(dense, 0.95),
        "keyword_p50_ms": pct(keyword, 0.5),
        "keyword_p95_ms": pct(keyword, 0.95),
        "candidates_p50_ms": pct(gather, 0.5),
        "candidates_p95_ms": pct(gather, 0.95),
    }


def worst_queries(mem: Memory, n: int = 4) -> dict[str, str]:
    """Queries of the corpus words found in the most memories: the ``n`` commonest of all (too
    common to propose keyword candidates), and the ``n`` commonest that still do (each just
    under the selective limit: the most rows a keyword search may have to rank)."""
    words = sorted({w.strip(".,?!'").lower() for text in corpus(2000) for w in text.split()} - {""})
    stems = {w: t[0] for w in words if len(t := query_terms(w)) == 1}
    n_docs, _, df = mem.store.term_stats(sorted(set(stems.values())))  # type: ignore[attr-defined]
    word: dict[str, str] = {}
    for w, stem in stems.items():
        word.setdefault(stem, w)
    ranked = sorted(word, key=lambda t: (-df.get(t, 0), t))  # commonest first
    limit = selective_limit(n_docs)
    return {
        "common": " ".join(word[t] for t in ranked[:n]),
        "selective": " ".join([word[t] for t in ranked if df.get(t, 0) <= limit][:n]),
    }


def bench_worst(mem: Memory, layout: str, size: int, repeat: int = 30) -> list[dict[str, Any]]:
    """Memory.search and store.keyword alone on the worst-case queries (``worst_queries``)."""
    store, now, out = mem.store, datetime.now(UTC), []
    for kind, q in worst_queries(mem).items():
        user = _users(layout, size, 1)[0]
        terms = query_terms(q)
        n_docs, _, df = store.term_stats(terms)  # type: ignore[attr-defined]
        proposing = selective(terms, df, n_docs)
        search = [timed(mem.search, q, user_id=user, limit=LIMIT) for _ in range(repeat)]
        keyword = [timed(store.keyword, Scope(user_id=user), None, proposing, SEARCH_K, now) for _ in range(repeat)]  # type: ignore[attr-defined]
        out.append({
            "size": size, "layout": LAYOUTS[layout], "kind": kind, "query": q,
            "df": {t: df.get(t, 0) for t in terms}, "proposing": proposing,
            "search_p50_ms": pct(search, 0.5), "keyword_p50_ms": pct(keyword, 0.5),
        })  # fmt: skip
    return out


class Exact:
    """Exact top-k thresholds over the one-scope rows, by numpy, and tie-tolerant recall."""

    def __init__(self, url: str, data: Data, size: int, qvecs: np.ndarray) -> None:
        with psycopg.connect(url) as conn:
            rows = conn.execute(f"SELECT rid, memory FROM {MEMORIES} WHERE user_id = %s", (ONE,)).fetchall()
        self.rid_index = {int(rid): data.index[text] for rid, text in rows}
        self.vecs, self.qvecs = data.vecs[:size], qvecs
        self.kth: dict[int, np.ndarray] = {k: np.empty(len(qvecs), dtype=np.float32) for k in (LIMIT, SEARCH_K)}
        for n, q in enumerate(qvecs):
            scores = self.vecs @ q
            for k, kth in self.kth.items():
                kth[n] = np.partition(scores, -k)[-k]

    def recall(self, found: Sequence[Sequence[int]], k: int) -> float:
        hits = 0
        for n, rids in enumerate(found):
            idx = [self.rid_index[r] for r in rids[:k]]
            hits += int(np.sum(self.vecs[idx] @ self.qvecs[n] >= self.kth[k][n] - 1e-5)) if idx else 0
        return round(hits / (k * len(found)), 4)


def _hnsw_sql(conn: Any, ef: int, q: np.ndarray, k: int, now: str, explain: bool = False) -> list[Any]:
    """The store's HNSW query (``PostgresStore.dense``, large scopes) at ``ef``, in its own transaction
    (iterative scan on, as the store runs it)."""
    sql = (
        f"SELECT m.rid FROM {MEMORIES} m WHERE m.user_id = %s AND m.version_of IS NULL "
        "AND (m.expires_at IS NULL OR m.expires_at > %s) ORDER BY m.embedding <=> %s LIMIT %s"
    )
    with conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        return [r[0] for r in conn.execute(("EXPLAIN " if explain else "") + sql, (ONE, now, q, k))]


def recall_rows(mem: Memory, url: str, exact: Exact, size: int, efs: Sequence[int]) -> tuple[dict[str, Any], list]:
    """Recall of store.dense (the path Memory.search uses) and of its HNSW SQL at each ef_search.

    Each figure notes whether the planner used the HNSW index (``index_at_k``): with ef_search
    large next to the table it may prefer an exact scan, and recall is then trivially 1.
    """
    mem.get_all(user_id=ONE, limit=1)  # opens the store
    store, now = mem.store, datetime.now(UTC)
    scope, ks = Scope(user_id=ONE), (LIMIT, SEARCH_K)
    dense = {k: [[r for r, _ in store.dense(scope, None, q, k, now)] for q in exact.qvecs] for k in ks}  # type: ignore[attr-defined]
    row: dict[str, Any] = {f"recall_at_{k}": exact.recall(found, k) for k, found in dense.items()}
    sweep = []
    with psycopg.connect(url) as conn:
        register_vector(conn)
        for k in ks:  # the ef_search store.dense sets for k
            plan = _hnsw_sql(conn, ef_search(k), exact.qvecs[0], k, to_iso(now), explain=True)
            row[f"index_at_{k}"] = any("memories_hnsw" in line for line in plan)
        for ef in efs:
            entry: dict[str, Any] = {"size": size, "ef_search": ef}
            for k in ks:
                found, times = [], []
                for q in exact.qvecs:
                    start = time.perf_counter()
                    found.append(_hnsw_sql(conn, ef, q, k, to_iso(now)))
                    times.append((time.perf_counter() - start) * 1000)
                plan = _hnsw_sql(conn, ef, exact.qvecs[0], k, to_iso(now), explain=True)
                entry[f"index_at_{k}"] = any("memories_hnsw" in line for line in plan)
                entry[f"recall_at_{k}"] = exact.recall(found, k)
                entry[f"p50_ms_at_{k}"] = pct(times, 0.5)
            sweep.append(entry)
    return row, sweep


def results_agreement(mem: Memory, qs: Sequence[str], n: int = 100) -> dict[str, float]:
    """What the two speed knobs cost in results: the share of a reference top 10 (``ef_search``
    1000, keyword matches uncapped) that ``Memory.search`` returns with the store's settings."""
    from memlane.stores import postgres_search

    def top(queries: Sequence[str]) -> list[list[str]]:
        return [[r["id"] for r in mem.search(q, user_id=ONE, limit=LIMIT)["results"]] for q in queries]

    mine = top(qs[:n])
    saved = postgres_search.EF_SEARCH, postgres_search.KEYWORD_SCAN_ROWS
    postgres_search.EF_SEARCH, postgres_search.KEYWORD_SCAN_ROWS = 1000, 10**9
    try:
        reference = top(qs[:n])
    finally:
        postgres_search.EF_SEARCH, postgres_search.KEYWORD_SCAN_ROWS = saved
    found = sum(len(set(a) & set(b)) for a, b in zip(mine, reference, strict=True))
    return {"top10_vs_reference": round(found / max(1, sum(len(b) for b in reference)), 4)}


# -- the run -----------------------------------------------------------------------------------
def _server_info(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]  # type: ignore[index]
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SHOWN}  # type: ignore[index]
    return {"postgres": version, "pgvector": vector, "settings": shown}


def run_layout(pg: Any, data: Data, layout: str, sizes: list[int], args: Any, qs: list[str], out: dict) -> None:
    url = pg.create_database(f"scale_{layout}")
    real = data.real
    lookup = Lookup(real.model_id, real.dimension, real)
    with Memory(store=PostgresStore(url), embedder=lookup) as mem:
        mem.get_all(user_id=ONE, limit=1)  # migrate and create the HNSW index before the writers start
    out.setdefault("server", _server_info(url))
    done = 0
    for size in sizes:
        added = min(size, args.add_rows)
        if added > done:
            log(f"{LAYOUTS[layout]}: Memory.add {done} -> {added}")
            out["ingest"] += ingest(url, data, layout, done, added, args.writers)
            done = added
        if size > done:
            log(f"{LAYOUTS[layout]}: bulk fill {done} -> {size}")
            out["bulk_fill"].append(bulk_fill(url, data, layout, done, size))
            done = size
        out["load"].append({"at": f"{LAYOUTS[layout]} {size}", "loadavg": [round(x, 2) for x in os.getloadavg()]})
        log(f"{LAYOUTS[layout]}: searching {size}")
        row: dict[str, Any] = {"size": size, "layout": LAYOUTS[layout], **sizes_mb(url)}
        with Memory(store=PostgresStore(url), embedder=lookup) as mem:
            row.update(bench_search(mem, qs, layout, size))
            row.update(bench_parts(mem, qs, out["_qvecs"], layout, size))
            out["worst"] += bench_worst(mem, layout, size)
            if layout == "one" and size >= EXACT_SEARCH_ROWS:
                log(f"{LAYOUTS[layout]}: recall at {size}")
                exact = Exact(url, data, size, out["_qvecs"])
                recall, sweep = recall_rows(mem, url, exact, size, args.ef_search)
                row.update(recall)
                row.update(results_agreement(mem, qs))
                out["ef_sweep"] += sweep
        out["search"].append(row)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE scale_{layout}")


def run_postgres(sizes: list[int], args: Any) -> dict[str, Any]:
    """Every PostgreSQL measurement; returns the JSON summary."""
    from memlane.testing._postgres import LocalPostgres

    wall = time.perf_counter()
    real = MiniLMOnnxEmbedder()
    real.embed(["warm up"])
    data = Data(real, max(sizes), args.pool)
    qs = questions(args.queries + 1)[1:]
    qtimes = [timed(real.embed, [q], kind="query") for q in qs]
    out: dict[str, Any] = {
        "backend": "postgres",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "embedder": real.model_id,
        "sizes": sizes,
        "queries": len(qs),
        "limit": LIMIT,
        "search_k": SEARCH_K,
        "exact_search_rows": EXACT_SEARCH_ROWS,
        "writers": args.writers,
        "query_embed_p50_ms": pct(qtimes, 0.5),
        "synthesis": {
            "pool_embedded": data.pool,
            "derived": max(sizes) - data.pool,
            "embed_sentences_per_s": round(data.embed_per_s, 1),
            "calibration_cos": round(data.calibration_cos, 4),
            "noise_sigma": round(data.sigma, 5),
        },
        "ingest": [],
        "bulk_fill": [],
        "search": [],
        "ef_sweep": [],
        "worst": [],
        "load": [{"at": "start", "loadavg": [round(x, 2) for x in os.getloadavg()]}],
        "_qvecs": real.embed(qs, kind="query"),
    }
    with LocalPostgres(durable=True, settings=SETTINGS) as pg:
        for layout in args.layouts:
            run_layout(pg, data, layout, sizes, args, qs, out)
    del out["_qvecs"]
    out["load"].append({"at": "end", "loadavg": [round(x, 2) for x in os.getloadavg()]})
    out["wall_s"] = round(time.perf_counter() - wall, 1)
    return out


def table(s: dict[str, Any]) -> str:
    srv, syn = s["server"], s["synthesis"]
    lines = [
        f"PostgreSQL {srv['postgres']} + pgvector {srv['pgvector']} (fsync on), {s['machine']['cpus']} CPUs, "
        f"{s['queries']} queries per row, embedder {s['embedder']}",
        f"data: {syn['pool_embedded']:,} sentences embedded by the model, {max(syn['derived'], 0):,} derived "
        f"(tail + noise sigma={syn['noise_sigma']}, calibrated cosine {syn['calibration_cos']})",
        "",
        f"{'memories':>9}  {'layout':<12} {'search p50':>10} {'p95':>8} {'first':>7} "
        f"{'recall@' + str(s['limit']):>9} {'recall@' + str(s['search_k']):>10} {'db size':>9} {'hnsw':>8} "
        f"{'dense p50':>10} {'keyword p50':>12} {'gather p50':>11} {'top10 vs ref':>13}",
    ]
    for r in s["search"]:
        rec = [
            (f"{r[f'recall_at_{k}']:.3f}" + ("" if r[f"index_at_{k}"] else "*")) if f"recall_at_{k}" in r else "exact"
            for k in (s["limit"], s["search_k"])
        ]
        lines.append(
            f"{r['size']:>9,}  {r['layout']:<12} {r['search_p50_ms']:>8.1f}ms {r['search_p95_ms']:>6.1f}ms "
            f"{r['first_search_ms']:>5.0f}ms {rec[0]:>9} {rec[1]:>10} {r['db_mb'] / 1000:>7.2f}GB "
            f"{r['hnsw_mb'] / 1000:>6.2f}GB {r['dense_p50_ms']:>8.1f}ms {r['keyword_p50_ms']:>10.1f}ms "
            f"{r['candidates_p50_ms']:>9.1f}ms {r.get('top10_vs_reference', '-'):>13}"
        )
    lines += [
        f"(exact: scopes under {s['exact_search_rows']:,} rows are searched exactly, no ANN; "
        "*: the planner scanned exactly instead of using the HNSW index; dense / keyword: store.dense and "
        f"store.keyword alone at k={s['search_k']}; gather: store.candidates, the one round trip of a search; "
        "query embedded ahead; top10 vs ref: share of Memory.search's top 10 with ef_search 1000 and no keyword "
        "cap that the store's settings return, 100 queries)",
        "",
        "worst-case keyword queries (the corpus words in the most memories; see worst_queries):",
    ]
    for r in s["worst"]:
        lines.append(
            f"  {r['size']:>9,} {r['layout']:<12} {r['kind']:<9} {r['query']!r:<40} search p50 "
            f"{r['search_p50_ms']:>6.1f}ms, keyword alone {r['keyword_p50_ms']:>6.1f}ms; "
            f"df {r['df']}, proposing {r['proposing']}"
        )
    lines += [
        "",
        "ingest through Memory.add(infer=False), HNSW index in place:",
    ]
    for r in s["ingest"]:
        lines.append(
            f"  {r['layout']:<12} rows {r['rows']:<13} {r['per_call']:>5} per call, {r['writers']} writer(s): "
            f"{r['memories_per_s']:>7,.0f} memories/s ({r['calls_per_s']:,.0f} calls/s)"
        )
    if s["bulk_fill"]:
        lines += ["", "bulk fill (COPY into memlane's tables, not a memlane API; HNSW dropped, then rebuilt):"]
    for r in s["bulk_fill"]:
        lines.append(
            f"  {r['layout']:<12} rows {r['rows']:<15} COPY {r['copy_rows_per_s']:>7,.0f} rows/s "
            f"({r['copy_s']:.0f} s), VACUUM ANALYZE {r['vacuum_analyze_s']:.0f} s, HNSW build {r['hnsw_build_s']:.0f} s"
        )
    if s["ef_sweep"]:
        k = s["search_k"]
        lines += [
            "",
            "one scope, the store's HNSW SQL (iterative scan) per hnsw.ef_search (the store uses max(200, k)):",
            f"  {'memories':>9} {'ef':>5} {'recall@10':>10} {'p50':>8} {f'recall@{k}':>11} {'p50':>8}",
        ]
    for r in s["ef_sweep"]:
        lines.append(
            f"  {r['size']:>9,} {r['ef_search']:>5} {r['recall_at_10']:>9.3f}{' *'[not r['index_at_10']]} "
            f"{r['p50_ms_at_10']:>6.1f}ms {r[f'recall_at_{k}']:>10.3f}{' *'[not r[f'index_at_{k}']]} "
            f"{r[f'p50_ms_at_{k}']:>6.1f}ms"
        )
    lines += ["", "settings: " + ", ".join(f"{k}={v}" for k, v in srv["settings"].items())]
    lines.append("load average: " + "; ".join(f"{x['at']}: {x['loadavg']}" for x in s["load"]))
    lines.append(f"query embedding alone p50: {s['query_embed_p50_ms']:.1f} ms; wall time {s['wall_s'] / 60:.1f} min")
    return "\n".join(lines)
