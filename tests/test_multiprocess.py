"""Several processes on one SQLite file: concurrent writers, racing duplicates, and a reader whose
in-process vector cache must follow other processes' writes.

Workers are real subprocesses (``python worker.py ...``) using the shipped HashEmbedder; they line
up on a file-system barrier so their writes really overlap.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memlane import Memory, Scope
from memlane.stores import sqlite_schema
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import HashEmbedder

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from memlane import Memory
    from memlane.testing import HashEmbedder

    mode, db, wid, n, sync = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])

    def barrier(name, parties):
        (sync / f"{name}.{wid}").touch()
        deadline = time.monotonic() + 30
        while len(list(sync.glob(f"{name}.*"))) < parties:
            if time.monotonic() > deadline:
                raise SystemExit(f"barrier {name} timed out: {sorted(p.name for p in sync.iterdir())}")
            time.sleep(0.0005)

    m = Memory(db, embedder=HashEmbedder())  # opens lazily: the first add opens (and creates) the file
    out = []
    if mode == "distinct":
        barrier("start", int(sys.argv[6]))
        for i in range(n):
            text = f"worker {wid} remembers distinct fact number {i}"
            out.append(m.add(text, user_id="shared")["results"][0])
    elif mode == "same":
        for rnd in range(n):
            barrier(f"round{rnd}", int(sys.argv[6]))
            out.append(m.add(f"everyone says the same thing in round {rnd}", user_id="shared")["results"][0])
    elif mode == "reader":
        barrier("start", int(sys.argv[6]))
        seen, deadline = 0, time.monotonic() + 40
        while seen < n and time.monotonic() < deadline:
            hits = m.search("worker remembers distinct fact", user_id="shared", limit=5)["results"]
            count = len(m.get_all(user_id="shared", limit=10_000)["results"])
            assert count >= seen and len(hits) == min(5, len(hits), count), (count, seen, len(hits))
            assert len(hits) == 5 or len(hits) >= min(5, seen), (len(hits), seen)
            seen = count
            out.append(count)
    elif mode == "open":
        for rnd in range(n):
            barrier(f"open{rnd}", int(sys.argv[6]))
            with Memory(f"{db}.{rnd}", embedder=HashEmbedder()) as fresh:
                out.append(fresh.add(f"{wid} was here", user_id="shared")["results"][0]["event"])
    elif mode == "change":
        ops = json.loads(sys.argv[6])
        out.append(m.add(ops["add"], user_id="shared")["results"][0]["id"])
        m.update(ops["update_id"], ops["update_text"])
        m.delete(ops["delete_id"])
    print(json.dumps(out))
    """
)


def spawn(tmp_path: Path, mode: str, db: Path, wid: str, n: int, extra: str = "") -> subprocess.Popen[str]:
    script, sync = tmp_path / "worker.py", tmp_path / "sync"
    if not script.exists():  # never rewrite it under a worker that is still reading it
        script.write_text(WORKER)
    sync.mkdir(exist_ok=True)
    argv = [sys.executable, str(script), mode, str(db), wid, str(n), str(sync), *([extra] if extra else [])]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def results(procs: list[subprocess.Popen[str]]) -> list[Any]:
    done = [(proc.returncode, *proc.communicate(timeout=50)) for proc in procs]
    errors = "\n".join(err for _, _, err in done)
    assert "locked" not in errors and "busy" not in errors.lower(), errors
    assert [proc.returncode for proc in procs] == [0] * len(procs), errors
    return [json.loads(out.strip().splitlines()[-1]) for _, out, _ in done]


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_concurrent_writers_on_a_new_file_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    writers = [spawn(tmp_path, "distinct", db, f"w{i}", 50, "5") for i in range(4)]
    reader = spawn(tmp_path, "reader", db, "r", 200, "5")
    outs = results(writers)
    counts = results([reader])[0]
    assert [e["event"] for out in outs for e in out] == ["ADD"] * 200
    texts = Counter(memory for (memory,) in rows(db, "SELECT memory FROM memories WHERE user_id = 'shared'"))
    expected = {f"worker w{w} remembers distinct fact number {i}" for w in range(4) for i in range(50)}
    assert set(texts) == expected and set(texts.values()) == {1}
    assert {e["id"] for out in outs for e in out} == {i for (i,) in rows(db, "SELECT id FROM memories")}
    assert rows(db, "SELECT count(*) FROM history WHERE event = 'ADD'") == [(200,)]
    applied = rows(db, "SELECT version FROM schema_migrations ORDER BY version")
    assert applied == [(v,) for v, _, _ in sqlite_schema.MIGRATIONS]  # each migration ran once
    assert counts == sorted(counts) and counts[-1] == 200  # the reader never saw rows vanish


def test_processes_opening_a_new_file_at_once(tmp_path: Path) -> None:
    # Several processes creating one file at the same instant race to switch it to WAL mode and
    # to migrate it: none may fail, and the schema is applied once.
    db, rounds = tmp_path / "new.db", 16
    outs = results([spawn(tmp_path, "open", db, f"w{i}", rounds, "6") for i in range(6)])
    assert outs == [["ADD"] * rounds] * 6
    for rnd in range(rounds):
        fresh = Path(f"{db}.{rnd}")
        assert rows(fresh, "SELECT count(*) FROM memories") == [(6,)]
        assert rows(fresh, "SELECT count(*) FROM schema_migrations") == [(len(sqlite_schema.MIGRATIONS),)]
        assert rows(fresh, "PRAGMA journal_mode") == [("wal",)]


def test_racing_adds_of_the_same_text_store_it_once(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    rounds = 6
    outs = results([spawn(tmp_path, "same", db, f"w{i}", rounds, "4") for i in range(4)])
    for rnd in range(rounds):
        got = [out[rnd] for out in outs]
        assert len({e["id"] for e in got}) == 1, got
        assert sorted(e["event"] for e in got) == ["ADD", "NONE", "NONE", "NONE"], got
        text = f"everyone says the same thing in round {rnd}"
        assert rows(db, "SELECT id FROM memories WHERE memory = ?", (text,)) == [(got[0]["id"],)]
    assert rows(db, "SELECT count(*) FROM memories") == [(rounds,)]
    assert rows(db, "SELECT count(*) FROM history") == [(rounds,)]


def test_a_readers_vector_cache_follows_another_process(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = SQLiteStore(db, durability="normal")
    with Memory(store=store, embedder=HashEmbedder()) as mem:
        texts = ["I have a golden retriever", "I work as a nurse", "My flat is in Leeds", "I play the cello"]
        ids = [mem.add(t, user_id="shared")["results"][0]["id"] for t in texts]
        scope, now = Scope(user_id="shared"), datetime.now(UTC)

        def dense(query: str) -> list[tuple[str, float]]:
            vec = mem.embedder.embed([query])[0]
            hits = store.dense(scope, None, vec, 10, now)
            found = store.fetch(r for r, _ in hits)
            return [(found[r].id, s) for r, s in hits]

        assert {i for i, _ in dense("golden retriever")} == set(ids)  # the cache is now loaded
        change = {
            "add": "I bought a sailing boat",
            "update_id": ids[1],
            "update_text": "I now work as a pilot",
            "delete_id": ids[2],
        }
        (out,) = results([spawn(tmp_path, "change", db, "b", 0, json.dumps(change))])
        added = out[0]

        seen = dense("I bought a sailing boat")
        assert seen[0][0] == added and seen[0][1] == pytest.approx(1.0, abs=1e-5)
        assert ids[2] not in {i for i, _ in seen} and len(seen) == 4
        updated = dense("I now work as a pilot")
        assert updated[0] == (ids[1], pytest.approx(1.0, abs=1e-5))
        old = dict(dense("I work as a nurse"))
        assert old[ids[1]] < 0.99  # the old vector is gone from the cache
        hits = mem.search("sailing boat", user_id="shared")["results"]
        assert hits[0]["id"] == added and "Leeds" not in {h["memory"] for h in hits}
