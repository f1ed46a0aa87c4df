"""The approximate (HNSW) path of the embedded store's vector cache.

Large scopes are searched through a graph that proposes candidates, which are then masked and
scored exactly; small scopes stay exact. These tests shrink "large" to a few hundred vectors
(``AnnSettings(min_rows=...)``) and check the graph path against the exact one: after inserts,
updates, deletes, scope moves and compaction, with expiry, ``as_of``, filters and passages, and
across processes through the change log.
"""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from memlane import Memory, Scope
from memlane.stores import ann_index
from memlane.stores.ann_index import AnnSettings
from memlane.stores.sqlite import SQLiteStore
from memlane.stores.vector_cache import CachedRow, VectorCache
from memlane.testing import FrozenClock, HashEmbedder

DIM = 32
NOW = 1_000_000.0
GRAPH = AnnSettings(min_rows=300, background=False)
EXACT = AnnSettings(min_rows=None)
EVERYONE = Scope(user_id="everyone")


def unit(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def row(rid: int, vec: npt.NDArray[np.float32], user: str = "everyone", **fields: float) -> CachedRow:
    return CachedRow(rid, user, "", "", fields.pop("expires", math.inf), vec, **fields)  # type: ignore[arg-type]


def caches(rows: list[CachedRow]) -> tuple[VectorCache, VectorCache]:
    """The same rows in a cache that uses graphs and in one that never does."""
    fast, exact = VectorCache(DIM, GRAPH), VectorCache(DIM, EXACT)
    for cache in (fast, exact):
        cache.apply(rows, [])
    return fast, exact


def graphs(cache: VectorCache, kind: str = "row_graphs") -> list[dict[str, object]]:
    graph_stats = cache.stats()[kind]
    assert isinstance(graph_stats, list)
    return graph_stats


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def big(rng: np.random.Generator) -> list[CachedRow]:
    return [row(rid, vec) for rid, vec in enumerate(unit(rng, 2000), start=1)]


def test_a_large_scope_is_searched_through_a_graph_with_exact_recall(
    big: list[CachedRow], rng: np.random.Generator
) -> None:
    fast, exact = caches(big)
    hits = 0
    for query in unit(rng, 50):
        got = fast.search(query, EVERYONE, 10, NOW)
        want = exact.search(query, EVERYONE, 10, NOW)
        hits += len({r for r, _ in got} & {r for r, _ in want})
        # Candidates are scored exactly: every cosine returned is the true one.
        for rid, cos in got:
            assert cos == pytest.approx(float(big[rid - 1].embedding @ query), abs=1e-5)
    assert hits / 500 >= 0.95
    (graph,) = graphs(fast)
    assert graph["built"] and graph["size"] == 2000
    assert graphs(exact) == []


def test_small_scopes_stay_exact(rng: np.random.Generator) -> None:
    rows = [row(rid, vec, user=f"u{rid % 20}") for rid, vec in enumerate(unit(rng, 2000), start=1)]
    fast, exact = caches(rows)
    for i, query in enumerate(unit(rng, 20)):
        scope = Scope(user_id=f"u{i % 20}")
        assert fast.search(query, scope, 10, NOW) == exact.search(query, scope, 10, NOW)
    assert graphs(fast) == []  # 100 rows per user: under min_rows


def test_inserts_updates_and_deletes_after_the_build_reach_the_graph(
    big: list[CachedRow], rng: np.random.Generator
) -> None:
    fast, _ = caches(big)
    probe = unit(rng, 3)
    fast.search(probe[0], EVERYONE, 10, NOW)  # builds the graph
    assert graphs(fast)[0]["built"]

    fast.apply([row(5000, probe[0])], [])  # insert
    assert fast.search(probe[0], EVERYONE, 1, NOW) == [(5000, pytest.approx(1.0))]

    fast.apply([row(17, probe[1])], [])  # update: row 17 moves to a new vector
    assert fast.search(probe[1], EVERYONE, 1, NOW) == [(17, pytest.approx(1.0))]
    old = big[16].embedding
    assert 17 not in {r for r, _ in fast.search(old, EVERYONE, 5, NOW)}

    fast.apply([], [5000, 17])  # delete
    found = {r for r, _ in fast.search(probe[0], EVERYONE, 50, NOW)}
    found |= {r for r, _ in fast.search(probe[1], EVERYONE, 50, NOW)}
    assert not found & {5000, 17}
    assert graphs(fast)[0]["size"] == 1999


def test_a_row_that_moves_to_another_scope_leaves_the_graph(big: list[CachedRow]) -> None:
    fast, _ = caches(big)
    target = big[99].embedding
    assert fast.search(target, EVERYONE, 1, NOW)[0][0] == 100
    fast.apply([row(100, target, user="someone else")], [])
    assert 100 not in {r for r, _ in fast.search(target, EVERYONE, 20, NOW)}
    assert fast.search(target, Scope(user_id="someone else"), 1, NOW) == [(100, pytest.approx(1.0))]


def test_expiry_and_validity_are_masked_exactly(big: list[CachedRow], rng: np.random.Generator) -> None:
    fast, exact = caches(big)
    query = unit(rng, 1)[0]
    fast.search(query, EVERYONE, 10, NOW)  # builds the graph
    nearest = [r for r, _ in exact.search(query, EVERYONE, 30, NOW)]
    # The nearest expire, or stop being true (superseded): same vectors, new expiry or validity.
    changes = [row(r, big[r - 1].embedding, expires=NOW - 1) for r in nearest[:10]]
    changes += [row(r, big[r - 1].embedding, start=NOW - 100, until=NOW - 10) for r in nearest[10:20]]
    for cache in (fast, exact):
        cache.apply(changes, [])
    got = fast.search(query, EVERYONE, 10, NOW)
    assert got == exact.search(query, EVERYONE, 10, NOW)
    assert not {r for r, _ in got} & set(nearest[:20])
    # as_of before they expired: the superseded ones were true then, the expired ones too.
    then = NOW - 50
    past = fast.search(query, EVERYONE, 20, NOW, as_of=then)
    assert past == exact.search(query, EVERYONE, 20, NOW, as_of=then)
    assert set(nearest[10:20]) <= {r for r, _ in past}


def test_a_narrow_filter_falls_back_to_exact(big: list[CachedRow], rng: np.random.Generator) -> None:
    fast, exact = caches(big)
    query = unit(rng, 1)[0]
    fast.search(query, EVERYONE, 10, NOW)
    # The rows farthest from the query: a graph's candidates would never reach them.
    farthest = {r for r, _ in exact.search(-query, EVERYONE, 15, NOW)}
    got = fast.search(query, EVERYONE, 10, NOW, allowed=farthest)
    assert got == exact.search(query, EVERYONE, 10, NOW, allowed=farthest)
    assert len(got) == 10 and {r for r, _ in got} <= farthest


def test_a_wide_filter_still_returns_k_allowed_rows(big: list[CachedRow], rng: np.random.Generator) -> None:
    fast, exact = caches(big)
    allowed = {r.rid for r in big if r.rid % 3}  # two thirds of the scope
    for query in unit(rng, 10):
        got = fast.search(query, EVERYONE, 10, NOW, allowed=allowed)
        assert len(got) == 10 and {r for r, _ in got} <= allowed
        want = exact.search(query, EVERYONE, 10, NOW, allowed=allowed)
        assert len({r for r, _ in got} & {r for r, _ in want}) >= 8


def test_compaction_drops_the_graph_and_the_next_search_rebuilds_it(
    big: list[CachedRow], rng: np.random.Generator
) -> None:
    rows = big + [row(rid, vec) for rid, vec in enumerate(unit(rng, 3000), start=3001)]
    fast, exact = caches(rows)
    query = unit(rng, 1)[0]
    fast.search(query, EVERYONE, 10, NOW)
    gone = list(range(3001, 6001))  # more than a quarter and over 1,024 dead slots: the block compacts
    for cache in (fast, exact):
        cache.apply([], gone)
    assert graphs(fast) == []  # slots moved: the graph went with them
    got = fast.search(query, EVERYONE, 10, NOW)
    assert {r for r, _ in got} == {r for r, _ in exact.search(query, EVERYONE, 10, NOW)}
    (graph,) = graphs(fast)
    assert graph["size"] == 2000


def test_a_graph_worn_by_updates_is_rebuilt(big: list[CachedRow], rng: np.random.Generator) -> None:
    fast, exact = caches(big)
    query = unit(rng, 1)[0]
    fast.search(query, EVERYONE, 10, NOW)
    moved = [row(r.rid, vec) for r, vec in zip(big[:800], unit(rng, 800), strict=True)]  # 40% new vectors
    for cache in (fast, exact):
        cache.apply(moved, [])
    assert graphs(fast) == []  # more than a quarter of its nodes went stale: dropped
    got = fast.search(query, EVERYONE, 10, NOW)
    assert {r for r, _ in got} == {r for r, _ in exact.search(query, EVERYONE, 10, NOW)}
    (graph,) = graphs(fast)
    assert graph["built"] and graph["size"] == 2000


def test_passages_of_a_large_scope_go_through_their_own_graph(rng: np.random.Generator) -> None:
    passages = unit(rng, 200 * 5).reshape(200, 5, DIM)
    rows = [
        row(rid, vec, passage_seqs=list(range(5)), passage_vecs=passages[rid - 1])  # type: ignore[arg-type]
        for rid, vec in enumerate(unit(rng, 200), start=1)
    ]
    fast, exact = caches(rows)
    hits = 0
    for query in unit(rng, 20):
        got = fast.search(query, EVERYONE, 10, NOW)
        want = exact.search(query, EVERYONE, 10, NOW)
        hits += len({r for r, _ in got} & {r for r, _ in want})
        for rid, cos in got:  # the best of its own and all its passages', scored exactly
            assert cos == pytest.approx(exact.cosines(query, [rid])[rid], abs=1e-5)
    assert hits / 200 >= 0.95
    (graph,) = graphs(fast, "passage_graphs")
    assert graph["built"] and graph["size"] == 1000
    assert graphs(fast) == []  # 200 rows: their own vectors stay exact
    needle = passages[41, 3]
    assert fast.search(needle, EVERYONE, 1, NOW) == [(42, pytest.approx(1.0))]
    fast.apply([row(42, rows[41].embedding)], [])  # the memory was shortened: no passages now
    assert dict(fast.search(needle, EVERYONE, 200, NOW)).get(42, -1.0) < 0.99
    assert graphs(fast, "passage_graphs")[0]["size"] == 995


class GatedGraph(ann_index._Graph):
    """The real graph, whose first (bulk) add waits for a signal: writes land while it builds."""

    gate = threading.Event()
    started = threading.Event()

    def add(self, slots: npt.NDArray[np.int64], vecs: npt.NDArray[np.float32]) -> None:
        if not GatedGraph.started.is_set():
            GatedGraph.started.set()
            assert GatedGraph.gate.wait(10)
        super().add(slots, vecs)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[GatedGraph]]:
    GatedGraph.gate.clear()
    GatedGraph.started.clear()
    monkeypatch.setattr(ann_index, "_Graph", GatedGraph)
    yield GatedGraph
    GatedGraph.gate.set()


def test_writes_during_a_background_build_reach_the_graph(
    big: list[CachedRow], rng: np.random.Generator, gated: type[GatedGraph]
) -> None:
    cache = VectorCache(DIM, AnnSettings(min_rows=300, background=True))
    cache.apply(big, [])
    probe = unit(rng, 2)
    first = cache.search(probe[0], EVERYONE, 10, NOW)  # exact, while the graph builds
    assert gated.started.wait(10)
    assert len(first) == 10 and not graphs(cache)[0]["built"]
    cache.apply([row(9000, probe[0]), row(3, probe[1])], [7])  # insert, update, delete mid-build
    gated.gate.set()
    assert cache.wait_for_graphs(30)
    (graph,) = graphs(cache)
    assert graph["built"] and graph["size"] == 2000  # +9000, -7
    assert cache.search(probe[0], EVERYONE, 1, NOW) == [(9000, pytest.approx(1.0))]
    assert cache.search(probe[1], EVERYONE, 1, NOW) == [(3, pytest.approx(1.0))]
    assert 7 not in {r for r, _ in cache.search(big[6].embedding, EVERYONE, 10, NOW)}


# -- through the store and Memory --------------------------------------------------------------

TEXTS = [f"note {i}: {w} {v} in the {p}" for i, (w, v, p) in enumerate(
    (w, v, p)
    for w in ("Alice", "Bob", "Chen", "Dana", "Eve", "Femi")
    for v in ("hikes", "paints", "cooks", "sings", "reads", "swims", "codes", "rows")
    for p in ("park", "city", "hills", "lake", "studio", "garden", "office", "harbour", "library")
)]  # fmt: skip


def store(path: Path) -> SQLiteStore:
    return SQLiteStore(path, durability="normal", approximate=AnnSettings(min_rows=200, background=False))


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    db = tmp_path / "m.db"
    with Memory(store=store(db), embedder=HashEmbedder(), clock=FrozenClock()) as mem:
        for i in range(0, len(TEXTS), 50):
            batch = [{"role": "user", "content": t} for t in TEXTS[i : i + 50]]
            mem.add(batch, user_id="everyone", metadata={"half": "odd" if i // 50 % 2 else "even"})
    return db


def dense_ids(st: SQLiteStore, text: str, k: int = 10) -> list[int]:
    vec = HashEmbedder().embed([text])[0]
    return [r for r, _ in st.dense(EVERYONE, None, vec, k, datetime(2026, 1, 2, tzinfo=UTC))]


def test_another_process_writes_reach_a_readers_graph(filled: Path, tmp_path: Path) -> None:
    reader = store(filled)
    with Memory(store=reader, embedder=HashEmbedder(), clock=FrozenClock()) as mem:
        assert mem.search("Chen paints in the lake", user_id="everyone")["results"]
        cache = reader._sync()
        assert graphs(cache)[0]["built"]
        target = mem.search("note 5: Alice hikes in the garden", user_id="everyone", limit=1)["results"][0]
        script = textwrap.dedent(
            f"""
            from memlane import Memory
            from memlane.testing import HashEmbedder
            m = Memory({str(filled)!r}, embedder=HashEmbedder())
            m.add("a zebra xylophone quartet", user_id="everyone")
            m.update({target["id"]!r}, "the walrus juggles quinces")
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        hits = mem.search("zebra xylophone quartet", user_id="everyone", limit=1)["results"]
        assert hits[0]["memory"] == "a zebra xylophone quartet"
        hits = mem.search("walrus juggles quinces", user_id="everyone", limit=1)["results"]
        assert hits[0]["id"] == target["id"]
        assert graphs(cache)[0]["size"] == len(TEXTS) + 1  # the update re-indexed in place


def test_filters_and_as_of_through_memory_match_an_exact_store(filled: Path, tmp_path: Path) -> None:
    exact_db = tmp_path / "exact.db"
    exact_db.write_bytes(filled.read_bytes())
    clock = FrozenClock(datetime(2026, 1, 2, tzinfo=UTC))
    fast = Memory(store=store(filled), embedder=HashEmbedder(), clock=clock)
    exact = Memory(
        store=SQLiteStore(exact_db, durability="normal", approximate=EXACT), embedder=HashEmbedder(), clock=clock
    )
    with fast, exact:
        for query in ("Dana sings in the harbour", "who swims in the lake", "Femi codes"):
            for kwargs in ({}, {"filters": {"half": "odd"}}):
                got = fast.search(query, user_id="everyone", **kwargs)["results"]  # type: ignore[arg-type]
                want = exact.search(query, user_id="everyone", **kwargs)["results"]  # type: ignore[arg-type]
                assert [h["id"] for h in got] == [h["id"] for h in want]
        before = clock.now
        clock.advance(hours=1)
        for mem in (fast, exact):
            mem.add("the quokka smiles at dawn", user_id="everyone")
        for at in (before, None):
            got = fast.search("quokka smiles at dawn", user_id="everyone", as_of=at)["results"]
            want = exact.search("quokka smiles at dawn", user_id="everyone", as_of=at)["results"]
            assert [h["memory"] for h in got] == [h["memory"] for h in want]
            assert (got[0]["memory"] == "the quokka smiles at dawn") == (at is None)
        assert graphs(fast.store._sync())[0]["built"]  # type: ignore[attr-defined]


def test_a_memory_expiring_is_not_found_through_the_graph(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2026, 1, 2, tzinfo=UTC))
    with Memory(store=store(tmp_path / "m.db"), embedder=HashEmbedder(), clock=clock) as mem:
        mem.add([{"role": "user", "content": t} for t in TEXTS[:300]], user_id="everyone")
        mem.add("the quokka smiles at dawn", user_id="everyone", ttl=60)
        assert mem.search("quokka smiles", user_id="everyone", limit=1)["results"][0]["memory"].startswith("the quokka")
        clock.advance(seconds=120)
        hits = mem.search("quokka smiles", user_id="everyone", limit=5)["results"]
        assert "the quokka smiles at dawn" not in {h["memory"] for h in hits}
        assert graphs(mem.store._sync())[0]["built"]  # type: ignore[attr-defined]


# -- keyword search of a scope that is most of the store ------------------------------------------


def join_keyword(db: Path, user: str, term: str, k: int) -> list[int]:
    """The best ``k`` full-text matches in the user's scope, by the plain join (no shortcut)."""
    sql = (
        "SELECT m.rid FROM memories_fts f JOIN memories m ON m.rid = f.rowid WHERE memories_fts MATCH ? "
        "AND m.user_id = ? ORDER BY bm25(memories_fts), m.rid LIMIT ?"
    )
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(sql, (f'"{term}"', user, k))]


def test_keyword_search_of_a_large_scope_ranks_the_matches_then_tests_the_scope(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Memory(store=store(db), embedder=HashEmbedder(), clock=FrozenClock()) as mem:
        # "big" holds 80% of the rows, but most "zebra" matches, and all the short (best-scoring)
        # ones, are in "small": the best 2k matches of the whole store hold none of big's.
        big = [
            f"row {i} about a long walk near the quiet river zebra" if i % 40 == 0 else f"row {i}" for i in range(800)
        ]
        small = [f"zebra {i}" for i in range(200)]
        for user, texts in (("big", big), ("small", small)):
            for i in range(0, len(texts), 100):
                mem.add([{"role": "user", "content": t} for t in texts[i : i + 100]], user_id=user)
        st = mem.store
        assert isinstance(st, SQLiteStore)
        now = datetime(2026, 1, 2, tzinfo=UTC)
        assert st._sync().scope_share(Scope(user_id="big")) == pytest.approx(0.8)
        got = st.keyword(Scope(user_id="big"), None, ["zebra"], 10, now)
        assert got == join_keyword(db, "big", "zebra", 10) and len(got) == 10  # 20 matches in big
        got = st.keyword(Scope(user_id="big"), None, ["row"], 10, now)
        assert got == join_keyword(db, "big", "row", 10)
        # An expired row in scope is still ranked by the full-text index, then dropped by the test.
        first = got[0]
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE memories SET expires_at = '2026-01-01T12:00:00.000000+00:00' WHERE rid = ?", (first,))
        again = st.keyword(Scope(user_id="big"), None, ["row"], 10, now)
        assert first not in again and again[:9] == got[1:]
