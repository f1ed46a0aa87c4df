"""A database written by an older schema version opens, migrates once, and keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memlane import Memory
from memlane.core.text import analyse, content_hash
from memlane.stores import sqlite_schema
from memlane.testing import FakeLLM, HashEmbedder

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
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3, 4, 5]
