"""PostgreSQL search in one round trip (``memlane.stores.postgres_search``).

``Memory.search`` on PostgreSQL sends its whole candidate gathering as one pipeline (the HNSW
settings, the embedder record, one statement) and reads the returned memories in a second round
trip. These tests count the round trips on the wire (libpq's protocol trace), check that the one
statement gathers exactly what the store's single-purpose calls gather, and check the keyword cap.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from memlane import Memory
from memlane._search import candidates_of, compose_pool
from memlane.core.filters import parse_filter
from memlane.core.text import query_terms
from memlane.stores import postgres_search
from memlane.stores.postgres import PostgresStore
from memlane.testing import FrozenClock, HashEmbedder
from memlane.types import Scope

LONG = " ".join(f"Paragraph {i} is about quarterly budgets, invoices and the supplier contract." for i in range(400))
NEEDLE = "The spare key of the boathouse is under the blue stone."


@dataclass
class Wire:
    """What one connection sent while traced: round trips, statements run, and the text of
    those parsed (psycopg prepares a statement it has run five times: it is not parsed again)."""

    trips: int = 0
    executed: int = 0
    parsed: list[str] = field(default_factory=list)


@contextmanager
def wire(store: PostgresStore) -> Iterator[Wire]:
    """Trace the protocol of the store's one pooled connection (``max_size=1``) during the block.

    A round trip is a run of client messages that the client then waits on (``F`` lines
    followed by ``B`` lines in libpq's trace), however many statements it carries.
    """
    from psycopg import pq

    seen = Wire()
    with store.pool.connection() as conn:
        pgconn = conn.pgconn
    with tempfile.TemporaryFile("w+") as log:
        pgconn.trace(log.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield seen
        finally:
            pgconn.untrace()  # flushes the trace
        log.seek(0)
        previous = ""
        for line in log:
            direction, _, message, *rest = line.rstrip("\n").split("\t")
            if direction == "B" and previous == "F":
                seen.trips += 1
            previous = direction
            if direction == "F" and message in ("Parse", "Query"):
                seen.parsed.append(rest[0].split('"')[3 if message == "Parse" else 1])
            seen.executed += direction == "F" and message in ("Execute", "Query")


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    """A PostgreSQL store with one connection, filled through ``Memory`` (see ``fill``)."""
    yield PostgresStore(postgres_url, min_size=1, max_size=1, timeout=10.0)


def fill(memory: Memory, clock: FrozenClock) -> None:
    """Conversations (replies follow what they answer), a long document with passages, an
    expired message in a conversation, metadata, and another user's memories."""
    chat = [
        ("user", "What did you research last week?"),
        ("assistant", "Adoption agencies."),
        ("user", "Which ones did you like?"),
        ("assistant", "Mostly the ones in Lisbon near the river, they answer quickly."),
    ]
    memory.add([{"role": r, "content": c} for r, c in chat], user_id="u", infer=False, metadata={"kind": "chat"})
    memory.add(f"{LONG} {NEEDLE} {LONG}", user_id="u", infer=False, metadata={"kind": "doc"})
    memory.add([{"role": "user", "content": "Where is the spare key?"}], user_id="u", infer=False)
    clock.advance(seconds=30)
    memory.add("Remember the boathouse key, until tomorrow.", user_id="u", infer=False, ttl=3600)
    for i in range(12):
        memory.add(f"note {i}: the supplier invoice {i} is due on Friday", user_id="u", infer=False)
        memory.add(f"note {i}: someone else's boathouse", user_id="other", infer=False)
    clock.advance(hours=2)  # the ttl memory has expired


def test_a_search_is_one_round_trip_for_its_candidates_and_one_for_its_hits(
    store: PostgresStore, clock: FrozenClock
) -> None:
    with Memory(store=store, embedder=HashEmbedder(), clock=clock) as memory:
        fill(memory, clock)
        memory.search("warm up", user_id="u")
        with wire(store) as seen:
            results = memory.search("Where is the spare key of the boathouse?", user_id="u", limit=5)["results"]
        assert any(NEEDLE in r["passage"]["text"] for r in results if "passage" in r)
        # The HNSW settings, the embedder check and the one statement; then the hits.
        assert (seen.trips, seen.executed) == (2, 4), seen.parsed
        assert sum(p.startswith("WITH st AS") for p in seen.parsed) == 1, seen.parsed
        with wire(store) as seen:
            memory.search("budgets", user_id="u", filters={"kind": "doc"}, as_of=clock())
        assert (seen.trips, seen.executed) == (2, 4), seen.parsed


QUERIES = [
    ("Where is the spare key of the boathouse?", {}),
    ("which agencies did you research", {}),
    ("supplier invoice due Friday", {"filters": {"kind": "chat"}}),
    ("boathouse key", {"as_of": "now"}),
    ("the of and", {}),
]


@pytest.mark.parametrize("k", [3, 100])
@pytest.mark.parametrize(("query", "options"), QUERIES)
def test_the_statement_gathers_what_the_single_calls_gather(
    store: PostgresStore, clock: FrozenClock, query: str, options: dict[str, Any], k: int
) -> None:
    embedder = HashEmbedder()
    with Memory(store=store, embedder=embedder, clock=clock) as memory:
        fill(memory, clock)
        now: datetime = clock()
        node = parse_filter(options["filters"]) if "filters" in options else None
        as_of = now - timedelta(minutes=1) if "as_of" in options else None
        qvec = embedder.embed([query], kind="query")[0]
        args = (Scope(user_id="u"), node, qvec, query_terms(query), k, now, as_of)
        pool = store.candidates(*args)
        composed = compose_pool(store, *args)
    assert (pool.n_docs, pool.avg_len, pool.df) == (composed.n_docs, composed.avg_len, composed.df)
    assert pool.sources == composed.sources and pool.rows.keys() == composed.rows.keys()
    assert candidates_of(pool, now) == candidates_of(composed, now)


def test_keyword_ranks_at_most_the_cap_holding_every_term_then_the_rarest_first(
    store: PostgresStore, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memlane.stores import postgres

    with Memory(store=store, embedder=HashEmbedder(), clock=clock) as memory:
        common = [memory.add(f"alpha fact number {i}", user_id="u", infer=False) for i in range(20)]
        rarer = [memory.add(f"beta fact number {i}", user_id="u", infer=False) for i in range(5)]
        both = [memory.add(f"alpha beta fact {i}", user_id="u", infer=False) for i in range(2)]
        rid = {m.id: m.rid for m in store.fetch(range(1, 100)).values()}

        def keyword() -> list[int]:
            return store.keyword(Scope(user_id="u"), None, ["alpha", "beta"], 10, clock())

        def rids(added: list[Any]) -> set[int]:
            return {rid[a["results"][0]["id"]] for a in added}

        monkeypatch.setattr(postgres_search, "KEYWORD_SCAN_ROWS", 8)
        # A small scope (under EXACT_SEARCH_ROWS) has every match ranked, whatever the cap.
        assert set(keyword()) >= rids(both) | rids(rarer)
        assert len(keyword()) == 10  # the alpha-only matches fill the rest
        monkeypatch.setattr(postgres, "EXACT_SEARCH_ROWS", 20)  # now a large scope: through the GIN index
        found = keyword()
        # Both terms first (2 rows), then beta (7 rows, 6 fetched): the cap is reached before alpha.
        assert set(found[:2]) == rids(both) and set(found) <= rids(both) | rids(rarer)
        assert not set(found) & rids(common)


def test_the_hnsw_settings_hold_for_the_statement_only(store: PostgresStore, clock: FrozenClock) -> None:
    with Memory(store=store, embedder=HashEmbedder(), clock=clock) as memory:
        memory.add("hello", user_id="u", infer=False)
        read = (
            "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan'), current_setting('jit')"
        )
        with store.pool.connection() as conn:
            _, rows = postgres_search.run_search(conn, read, [], 100)
            assert rows == [(str(postgres_search.EF_SEARCH), "relaxed_order", "off")]
            _, rows = postgres_search.run_search(conn, read, [], 300)
            assert rows == [("300", "relaxed_order", "off")]
            after = conn.execute("SELECT current_setting('hnsw.ef_search', true)").fetchone()
            assert after is not None and after[0] != "300"


def test_a_large_scope_is_counted_once_and_still_searched_whole_after_it_shrinks(
    store: PostgresStore, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memlane.stores import postgres

    monkeypatch.setattr(postgres, "EXACT_SEARCH_ROWS", 8)  # every scope of 8 memories or more is "large"
    with Memory(store=store, embedder=HashEmbedder(), clock=clock) as memory:
        added = [memory.add(f"note {i} about the garden", user_id="u", infer=False) for i in range(12)]
        ids = [a["results"][0]["id"] for a in added]
        memory.add("note about the garden", user_id="small", infer=False)
        assert len(memory.search("garden", user_id="u", limit=20)["results"]) == 12
        memory.search("garden", user_id="small")
        assert list(store._large) == [("u", None, None)]  # counted: 12 >= 8; "small" was not large
        with wire(store) as seen:
            memory.search("garden", user_id="u")
        (statement,) = [p for p in seen.parsed if p.startswith("WITH st AS")]
        assert "md_n AS (SELECT 8::bigint AS n)" in statement
        for memory_id in ids[3:]:
            memory.delete(memory_id)
        # Within the minute the count is trusted, the shrunken scope is searched through HNSW: whole.
        assert {r["id"] for r in memory.search("garden", user_id="u", limit=20)["results"]} == set(ids[:3])
        filtered = memory.search("garden", user_id="u", filters={"kind": "x"})["results"]
        assert filtered == []


def test_vectors_stay_in_their_rows(store: PostgresStore, clock: FrozenClock) -> None:
    # A 384-dimension vector with a message would be moved out of line past the default ~2 kB
    # (migration 5): every cosine computed from the table would then read it through TOAST.
    with Memory(store=store, embedder=HashEmbedder(dimension=384), clock=clock) as memory:
        memory.add([{"role": "user", "content": f"message {i} " + "word " * 60} for i in range(50)], user_id="u",
                   infer=False, metadata={"source": "chat", "tags": ["a", "b"]})  # fmt: skip
        memory.add(f"{LONG} {NEEDLE}", user_id="u", infer=False)
        # (The long memory's own text is moved out of line: it is read for hits only.)
        out_of_line = store._read(
            "SELECT (SELECT count(*) FROM memories WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL), "
            "(SELECT count(*) FROM passages WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL), "
            "(SELECT count(*) FROM passages)"
        )
    assert out_of_line[0][:2] == (0, 0) and out_of_line[0][2] > 10
