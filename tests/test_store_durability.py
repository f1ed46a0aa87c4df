"""Durability of the SQLite store, with real failures on real files (no mocks).

- transactions: a failure injected inside SQLite (a trigger that RAISEs) or inside the embedder
  leaves memories, keyword index, vector cache and history exactly as they were;
- crashes: a writer SIGKILLed mid-loop leaves a consistent, openable file holding every
  acknowledged write;
- the embedder record, recorded migrations, and purge (no deleted text left in the file bytes).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlane import EmbedderMismatch, Memory, ProviderError, Scope, StoreBusy, StoreError
from memlane.protocols import EmbedKind, Vectors
from memlane.stores import sqlite_schema
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import FrozenClock, HashEmbedder

T0 = FrozenClock().now
PROBES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def msgs(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in texts]


def open_memory(path: Path, embedder: Any = None, clock: FrozenClock | None = None, **store_kw: Any) -> Memory:
    store = SQLiteStore(path, **{"busy_timeout": 5.0, "durability": "normal", **store_kw})
    return Memory(store=store, embedder=embedder or HashEmbedder(), clock=clock or FrozenClock())


@pytest.fixture
def wclock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def mem(tmp_path: Path, wclock: FrozenClock) -> Iterator[Memory]:
    with open_memory(tmp_path / "m.db", clock=wclock) as m:
        m.add(msgs("alpha bravo one", "charlie delta two"), user_id="u1")
        m.add(msgs(*(f"{w} in scope two" for w in PROBES[:3])), user_id="u2")
        m.add("echo foxtrot three", user_id="u1", agent_id="bot")
        yield m


def state(m: Memory, now: datetime = T0) -> dict[str, Any]:
    """Everything a write could touch, read through the store's own connection (which would
    also see a transaction left open), plus what keyword and dense search return."""
    conn = m.store.conn
    assert not conn.in_transaction, "a failed write left its transaction open"
    dump = {
        table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        for table in ("memories", "history", "changes", "stats", "meta", "memories_vocab")
    }
    store = m.store
    for scope in (Scope(user_id="u1"), Scope(user_id="u2")):
        for probe in PROBES:
            dump[f"fts {scope.user_id} {probe}"] = store.keyword(scope, None, [probe], 50, now)
            vec = m.embedder.embed([probe])[0]
            dump[f"dense {scope.user_id} {probe}"] = [
                (r, round(s, 6)) for r, s in store.dense(scope, None, vec, 50, now)
            ]
    return dump


def inject(db: Path, when: str) -> Callable[[], None]:
    """Create a trigger that aborts the statement ``when`` describes; returns its remover."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"CREATE TRIGGER injected_failure {when} BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    conn.close()

    def remove() -> None:
        with sqlite3.connect(db, isolation_level=None) as c:
            c.execute("DROP TRIGGER injected_failure")

    return remove


def _ids(m: Memory, user_id: str) -> list[str]:
    return [r["id"] for r in m.get_all(user_id=user_id)["results"]]


# Each case: (trigger timing, operation). The trigger fires after part of the write is done.
CASES: dict[str, tuple[str, Callable[[Memory], Any]]] = {
    "add one": ("BEFORE INSERT ON history", lambda m: m.add("golf hotel new", user_id="u1")),
    "add batch, third fails": (
        "BEFORE INSERT ON history WHEN NEW.new_memory = 'india three'",
        lambda m: m.add(msgs("golf one", "hotel two", "india three"), user_id="u1"),
    ),
    "add replacing an expired copy": (
        "BEFORE INSERT ON history WHEN NEW.event = 'ADD'",
        lambda m: m.add("kilo expiring", user_id="u1"),
    ),
    "update": ("BEFORE INSERT ON history", lambda m: m.update(_ids(m, "u1")[0], "lima mike rewritten")),
    "delete": ("BEFORE DELETE ON memories", lambda m: m.delete(_ids(m, "u1")[0])),
    "delete purge, at redaction": (
        "BEFORE UPDATE ON history",
        lambda m: m.delete(_ids(m, "u1")[0], purge=True),
    ),
    "delete_all, third row fails": (
        "BEFORE DELETE ON memories WHEN OLD.memory LIKE 'charlie%'",
        lambda m: m.delete_all(user_id="u2"),
    ),
    "delete_all purge, at redaction": (
        "BEFORE UPDATE ON history",
        lambda m: m.delete_all(user_id="u1", purge=True),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failure_mid_write_changes_nothing(mem: Memory, wclock: FrozenClock, case: str) -> None:
    when, operation = CASES[case]
    if case == "add replacing an expired copy":
        mem.add("kilo expiring", user_id="u1", ttl=3600)
        wclock.advance(days=2)
    before = state(mem, wclock.now)
    remove = inject(mem.store.path, when)
    with pytest.raises(StoreError, match="injected failure") as info:
        operation(mem)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert state(mem, wclock.now) == before
    remove()
    operation(mem)  # the same write now goes through: nothing was left half-done or locked
    assert state(mem, wclock.now) != before


def test_a_failure_mid_write_leaves_the_vector_cache_in_step(mem: Memory) -> None:
    # Fill the cache, fail a write, then succeed: the cache must show the successful write only.
    state(mem)
    remove = inject(mem.store.path, "BEFORE INSERT ON history")
    with pytest.raises(StoreError):
        mem.add("november oscar", user_id="u1")
    remove()
    added = mem.add("papa quebec", user_id="u1")["results"][0]["id"]
    hits = mem.search("papa quebec", user_id="u1", limit=10)["results"]
    assert hits[0]["id"] == added and not any(h["memory"] == "november oscar" for h in hits)
    vec = mem.embedder.embed(["november oscar"])[0]
    rows = mem.store.fetch(r for r, _ in mem.store.dense(Scope(user_id="u1"), None, vec, 50, T0))
    assert sorted(r.memory for r in rows.values()) == sorted(r["memory"] for r in mem.get_all(user_id="u1")["results"])


class ExplodingEmbedder(HashEmbedder):
    """A real embedder that fails on texts containing 'boom', as a model or API would."""

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        if any("boom" in t for t in texts):
            raise ProviderError("the model crashed", provider="exploding")
        return super().embed(texts, kind=kind)


def test_an_embedder_failure_writes_nothing(tmp_path: Path) -> None:
    with open_memory(tmp_path / "m.db", embedder=ExplodingEmbedder()) as m:
        mid = m.add(msgs("alpha one", "bravo two"), user_id="u1")["results"][0]["id"]
        before = state(m)
        with pytest.raises(ProviderError):
            m.add(msgs("charlie fine", "delta boom"), user_id="u1")
        with pytest.raises(ProviderError):
            m.update(mid, "echo boom")
        with pytest.raises(ProviderError):
            m.search("foxtrot boom", user_id="u1")
        assert state(m) == before


# -- crash ------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from memlane import Memory
    from memlane.testing import HashEmbedder

    m = Memory(sys.argv[1], embedder=HashEmbedder())
    start = int(sys.argv[2])
    for i in range(start, start + 100_000):
        names = ("Alice Chen", "Bob", "Project Atlas", f"Dana {i % 4}", "Oslo")  # graph rows too
        batch = [f"crash memory {i} {j} about topic{i % 7} and word{j} with {names[j]}" for j in range(5)]
        result = m.add([{"role": "user", "content": t} for t in batch], user_id=f"u{i % 3}")
        ids = [r["id"] for r in result["results"]]
        print("added", *ids, flush=True)
        if i % 4 == 3:
            m.update(ids[0], f"rewritten memory {i} about topic{i % 5}")
            print("updated", ids[0], flush=True)
        if i % 5 == 4:
            m.delete(ids[1])
            print("deleted", ids[1], flush=True)
        if i % 11 == 10:
            m.delete_all(run_id=None, user_id=f"u{i % 3}", purge=i % 2 == 0)
            print("cleared", f"u{i % 3}", flush=True)
    """
)


def _run_and_kill(script: Path, db: Path, start: int, lines: int) -> list[list[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acked: list[list[str]] = []
    deadline = time.monotonic() + 30
    while len(acked) < lines and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.split())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) >= lines, proc.stderr.read() if proc.stderr else ""
    return acked


def check_consistent(db: Path) -> sqlite3.Connection:
    """The file is sound and memories, keyword index, stats and history agree row by row."""
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.execute("INSERT INTO memories_fts(memories_fts) VALUES('integrity-check')")
    conn.execute("CREATE VIRTUAL TABLE temp.fts_terms USING fts5vocab(main, memories_fts, instance)")
    indexed: dict[int, list[str]] = {}
    for term, rid in conn.execute("SELECT term, doc FROM temp.fts_terms"):
        indexed.setdefault(rid, []).append(term)
    rows = conn.execute("SELECT rid, id, search_text, n_terms FROM memories").fetchall()
    assert {rid: sorted(terms) for rid, terms in indexed.items()} == {
        rid: sorted(text.split()) for rid, _, text, _ in rows
    }
    assert conn.execute("SELECT docs, terms FROM stats").fetchone() == (len(rows), sum(r[3] for r in rows))
    added = {m for (m,) in conn.execute("SELECT memory_id FROM history WHERE event = 'ADD'")}
    deleted = {m for (m,) in conn.execute("SELECT memory_id FROM history WHERE event = 'DELETE'")}
    live = {r[1] for r in rows}
    assert live <= added and not live & deleted and added - deleted == live
    check_graph(conn, {m for (m,) in conn.execute("SELECT id FROM memories")})
    return conn


def check_graph(conn: sqlite3.Connection, memory_ids: set[str]) -> None:
    """Entities, their keys, mentions and relations agree with each other and with the memories."""
    entities = {e for (e,) in conn.execute("SELECT id FROM entities")}
    mentions = conn.execute("SELECT entity_id, memory_id FROM entity_mentions").fetchall()
    assert {m for _, m in mentions} <= memory_ids, "a mention of a memory that is gone"
    assert {e for e, _ in mentions} <= entities
    linked = {e for e, _ in mentions}
    for subject, obj, memory in conn.execute("SELECT subject_id, object_id, memory_id FROM relations"):
        assert {subject, obj} <= entities and (memory is None or memory in memory_ids)
        linked |= {subject, obj}
    assert entities == linked, "an entity nothing names"
    assert {e for (e,) in conn.execute("SELECT entity_id FROM entity_keys")} <= entities


def test_a_killed_writer_leaves_a_consistent_file_with_every_acknowledged_write(tmp_path: Path) -> None:
    script, db = tmp_path / "writer.py", tmp_path / "crash.db"
    script.write_text(WRITER)
    acked: list[list[str]] = []
    for round_, lines in enumerate((40, 57, 73)):  # kill at different points of the loop
        acked += _run_and_kill(script, db, start=round_ * 1000, lines=lines)
        check_consistent(db).close()
    added = {i for op, *ids in acked if op == "added" for i in ids}
    gone = {i for op, *ids in acked if op == "deleted" for i in ids}
    conn = sqlite3.connect(db)
    live = {m for (m,) in conn.execute("SELECT id FROM memories")}
    deleted = {m for (m,) in conn.execute("SELECT memory_id FROM history WHERE event = 'DELETE'")}
    assert len(added) > 500 and gone and gone <= deleted and not live & gone
    assert conn.execute("SELECT count(*) FROM entity_mentions").fetchone()[0] > 0  # the graph was written
    assert added - live <= deleted  # every acknowledged add is there, unless something deleted it
    for op, mid in ((op, ids[0]) for op, *ids in acked if op == "updated"):
        events = [e for (e,) in conn.execute("SELECT event FROM history WHERE memory_id = ? ORDER BY id", (mid,))]
        assert events[:2] == ["ADD", "UPDATE"], (op, mid, events)
    conn.close()
    with open_memory(db) as m:  # and memlane itself opens it and searches every scope
        for user in ("u0", "u1", "u2"):
            listed = {r["id"] for r in m.get_all(user_id=user, limit=10_000)["results"]}
            vec = m.embedder.embed(["crash memory about topic3"])[0]
            dense = m.store.dense(Scope(user_id=user), None, vec, 100_000, datetime.now(UTC))
            assert {r.id for r in m.store.fetch(r for r, _ in dense).values()} == listed


# -- the embedder record and migrations ---------------------------------------------------------


def test_reopening_with_another_embedder_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open_memory(db) as m:
        m.add("I like tea", user_id="u1")
    for other in (HashEmbedder(model_id="another-model"), HashEmbedder(dimension=32)):
        with open_memory(db, embedder=other) as m, pytest.raises(EmbedderMismatch, match="hash-embedder-v1"):
            m.add("I like coffee", user_id="u1")
        with open_memory(db, embedder=other) as m, pytest.raises(EmbedderMismatch):
            m.search("tea", user_id="u1")
    with open_memory(db) as m:
        assert [r["memory"] for r in m.get_all(user_id="u1")["results"]] == ["I like tea"]


def _migrations(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version").fetchall()


def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open_memory(db) as m:
        m.add("first", user_id="u1")
    first = _migrations(db)
    assert [(v, n) for v, n, _ in first] == [(v, n) for v, n, _ in sqlite_schema.MIGRATIONS]
    assert first[-1][0] == sqlite_schema.SCHEMA_VERSION
    with open_memory(db) as m:
        m.add("second", user_id="u1")
        assert sqlite_schema.migrate(m.store.conn) == []
    assert _migrations(db) == first


def test_a_new_migration_runs_once_and_a_failing_one_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "m.db"
    with open_memory(db) as m:
        m.add("first", user_id="u1")
    base = list(sqlite_schema.MIGRATIONS)
    known, new = [(v, n) for v, n, _ in base], sqlite_schema.SCHEMA_VERSION + 1
    broken = "CREATE TABLE extra (x INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*base, (new, "broken", broken)])
    with open_memory(db) as m, pytest.raises(StoreError, match="no_such_table"):
        m.add("second", user_id="u1")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone() == (0,)
    assert [(v, n) for v, n, _ in _migrations(db)] == known
    good = "CREATE TABLE extra (x INTEGER);\nINSERT INTO extra VALUES (1);"
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", [*base, (new, "extra table", good)])
    for _ in range(2):
        with open_memory(db) as m:
            m.add("third", user_id="u1")
    assert [(v, n) for v, n, _ in _migrations(db)] == [*known, (new, "extra table")]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM extra").fetchone() == (1,)


# -- purge --------------------------------------------------------------------------------------

SECRET, KEPT = "zebra-violet-7781 secret", "okapi-amber-4411 secret"


def file_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def _fill(m: Memory, start: int, n: int) -> None:
    for i in range(start, start + n):
        m.add(f"filler {i} about gardening and the weather", user_id=f"f{i % 4}")


def test_purge_leaves_no_trace_in_the_file(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open_memory(db) as m:
        _fill(m, 0, 150)  # many small transactions: several keyword-index segments
        secret = m.add(msgs(SECRET, "alice's other note"), user_id="alice")["results"][0]["id"]
        m.add(KEPT, user_id="bob")
        _fill(m, 150, 150)
        m.update(secret, SECRET + " again")  # the text now also sits in history
        assert SECRET.encode() in file_bytes(db)  # the scan can see it before the purge
        assert m.delete_all(user_id="alice", purge=True)["deleted"] == 2
        m.delete_all(user_id="bob")  # not purged: history keeps bob's text
        data = file_bytes(db)
        # The keyword index holds the stems one by one ("zebra", "violet"): look for those too.
        for needle in (SECRET, "zebra", "violet", "alice's other note"):
            assert needle.encode() not in data, needle
        assert KEPT.encode() in data
        vocab = {t for (t,) in m.store.conn.execute("SELECT term FROM memories_vocab")}
        assert not vocab & {"zebra", "violet", "7781"} and {"garden", "weather"} <= vocab
        assert all(e["redacted"] and e["old_memory"] is None for e in m.history(secret))
        kept_id = m.store.conn.execute("SELECT memory_id FROM history WHERE old_memory = ?", (KEPT,)).fetchone()[0]
        assert m.history(kept_id)[-1]["old_memory"] == KEPT
        assert len(m.get_all(user_id="f1", limit=1000)["results"]) == 75
    assert b"zebra" not in file_bytes(db)


def test_purge_reports_when_a_reader_keeps_the_text_in_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open_memory(db, busy_timeout=0.5) as m:
        _fill(m, 0, 20)
        m.add(SECRET, user_id="alice")
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM memories").fetchone()  # pins a snapshot holding the secret
        with pytest.raises(StoreBusy, match="purge"):
            m.delete_all(user_id="alice", purge=True)
        reader.execute("COMMIT")
        reader.close()
        assert m.get_all(user_id="alice")["results"] == []  # the deletion itself committed
        m.delete_all(user_id="alice", purge=True)  # retrying finishes the job
        assert b"zebra" not in file_bytes(db)


def test_vectors_survive_reopen_exactly(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open_memory(db) as m:
        m.add(msgs("alpha bravo", "charlie delta"), user_id="u1")
        vec = m.embedder.embed(["alpha bravo"])[0]
        before = m.store.dense(Scope(user_id="u1"), None, vec, 10, T0)
    with open_memory(db) as m:
        assert len(m.get_all(user_id="u1")["results"]) == 2  # opens the store
        after = m.store.dense(Scope(user_id="u1"), None, vec, 10, T0)
    assert before == after and np.isclose(before[0][1], 1.0)
