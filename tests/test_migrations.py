"""A database written by an older schema version opens, migrates once, and keeps its data."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memlane import Memory
from memlane.core.filters import to_iso
from memlane.core.graph import EntityMention, RelationClaim
from memlane.core.records import NewMemory
from memlane.core.text import analyse, content_hash
from memlane.protocols import Store
from memlane.stores import postgres_schema, sqlite_schema
from memlane.stores.postgres import PostgresStore
from memlane.stores.sql_rows import insert_row, record
from memlane.stores.sql_tx import Tx
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import FakeLLM, HashEmbedder
from memlane.testing._contract_base import ContractHelpers
from memlane.types import Scope

T = "2026-01-01T00:00:00.000000+00:00"


def _version_1_file(path: Path, monkeypatch: pytest.MonkeyPatch, embedder: HashEmbedder) -> None:
    """A file exactly as the first release left it: schema 1 and one memory with an update."""
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:1])
    conn = sqlite_schema.connect(str(path), busy_timeout=5, durability="normal")
    sqlite_schema.migrate(conn)
    text = "I keep bees and goats"
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("embedder_id", embedder.model_id), ("embedder_dimension", str(embedder.dimension))],
    )
    conn.execute(
        "INSERT INTO memories (id, user_id, role, memory, search_text, n_terms, hash, created_at, updated_at, "
        "timestamp, embedding) VALUES ('m1', 'u', 'user', ?, ?, 5, ?, ?, ?, ?, ?)",
        (text, analyse(text), content_hash(text), T, T, T, embedder.embed([text])[0].astype("<f4").tobytes()),
    )
    conn.execute(
        "INSERT INTO history (memory_id, event, old_memory, new_memory, created_at, user_id) "
        "VALUES ('m1', 'ADD', NULL, 'I keep bees', ?, 'u'), ('m1', 'UPDATE', 'I keep bees', ?, ?, 'u')",
        (T, text, T),
    )
    conn.close()
    monkeypatch.undo()


def test_version_1_file_migrates_and_keeps_memories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    embedder = HashEmbedder()
    _version_1_file(path, monkeypatch, embedder)
    llm = FakeLLM(FakeLLM.facts("The user keeps bees and goats."), default=FakeLLM.decisions())
    new = Memory(path, embedder=embedder, llm=llm)
    assert new.get("m1")["memory"] == "I keep bees and goats"
    events = new.history("m1")
    assert [e["event"] for e in events] == ["ADD", "UPDATE"]
    assert all(e["effective_at"] == e["created_at"] == T for e in events)
    assert new.search("bees goats", user_id="u")["results"][0]["id"] == "m1"
    assert new.add("bees and goats", user_id="u", infer=False)["results"][0]["event"] == "ADD"
    assert new.add("bees and goats", user_id="u")["mode"] == "extracted"
    new.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [v for v, _, _ in sqlite_schema.MIGRATIONS]


def store_maker(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], Store]:
    """``make()``: a new handle on one store of ``backend`` (a file, or a fresh PostgreSQL database)."""
    if backend == "sqlite":
        return lambda: SQLiteStore(tmp_path / "old.db", busy_timeout=5.0, durability="normal")
    url: str = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url, min_size=1, max_size=2, timeout=10.0)


def write_old(store: Store, rows: list[NewMemory], now: datetime) -> None:
    """Write rows and their ADD events as a store of an older schema holds them: with the SQL
    every schema since 2 shares (today's ``insert`` reads columns an old schema lacks)."""

    def run(tx: Tx) -> None:
        for row in rows:
            insert_row(tx, row, None)
            record(tx, row.id, "ADD", None, row.memory, to_iso(now), row.timestamp, ("alice", "", ""))

    store._write(run)  # type: ignore[attr-defined]


# -- 6: graph memory (entities, mentions, relations) ---------------------------------------------
GRAPH = 6


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_of_the_previous_version_gains_the_graph_tables(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A store written at schema 5 migrates to 6 once, keeps its memories, and then stores a graph."""
    schema = sqlite_schema if backend == "sqlite" else postgres_schema
    later = [v for v, _, _ in schema.MIGRATIONS if v >= GRAPH]
    make = store_maker(backend, tmp_path, request)
    helpers = ContractHelpers()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[: GRAPH - 1])
    old = make()
    old.open(helpers.embedder_id, helpers.dimension)
    before = helpers.row("Ida works with Jo")
    write_old(old, [before], now)
    old.close()
    monkeypatch.undo()

    store = make()
    assert store.migrate() == later and store.migrate() == []
    store.open(helpers.embedder_id, helpers.dimension)
    try:
        kept = store.get(before.id)
        assert kept is not None and kept.memory == "Ida works with Jo"
        assert store.entities(Scope(user_id="alice")) == [] and store.memory_entities([before.id]) == {before.id: []}
        row = helpers.row("Ida manages Jo")
        row.entities = (EntityMention("Ida", "person"),)
        row.relations = (RelationClaim("Ida", "manages", "Jo"),)
        store.insert([row], now)
        assert [e.name for e in store.entities(Scope(user_id="alice"))] == ["Ida", "Jo"]
        assert [r.predicate for r in store.relations(Scope(user_id="alice"))] == ["manages"]
        store.delete(before.id, purge=True, now=now)  # deleting a memory from before the graph works too
    finally:
        store.close()


# -- 7: consolidation (merged / archived states, links, access, profiles, leases) -------------------
CONSOLIDATION = 7


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_of_the_previous_version_gains_consolidation(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """A store at schema 6 migrates to 7 once: memories and history (ids included) stay, history
    then takes MERGE and ARCHIVE events, and a merged memory leaves the uniqueness of its text."""
    schema = sqlite_schema if backend == "sqlite" else postgres_schema
    assert schema.MIGRATIONS[-1][0] == CONSOLIDATION  # this test is about the newest migration
    make = store_maker(backend, tmp_path, request)
    helpers = ContractHelpers()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[: CONSOLIDATION - 1])
    old = make()
    old.open(helpers.embedder_id, helpers.dimension)
    first, second = helpers.row("I love sushi"), helpers.row("i love sushi!")
    write_old(old, [first, second], now)
    events_before = old.history(first.id) + old.history(second.id)
    old.close()
    monkeypatch.undo()

    store = make()
    assert store.migrate() == [CONSOLIDATION] and store.migrate() == []
    store.open(helpers.embedder_id, helpers.dimension)
    try:
        assert store.history(first.id) + store.history(second.id) == events_before
        out = store.merge(Scope(user_id="alice"), (first.id, first.hash), [(second.id, second.hash)], now)
        assert out is not None and out.merged == (second.id,)
        assert [e["event"] for e in store.history(second.id)] == ["ADD", "MERGE"]
        merged = store.get(second.id)
        assert merged is not None and merged.state == "merged" and merged.merged_into == first.id
        assert store.archive(Scope(user_id="alice"), [(first.id, first.hash)], now) == [first.id]
        assert store.history(first.id)[-1]["event"] == "ARCHIVE"
        again = helpers.row("I love sushi")  # the archived text is no longer taken
        assert store.insert([again], now) == [(again.id, "ADD")]
    finally:
        store.close()
