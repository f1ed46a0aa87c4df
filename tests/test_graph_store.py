"""Graph rows under concurrency and erasure, on both backends: racing adds that name one person end
with one entity (threads on SQLite and PostgreSQL, processes on one SQLite file), a purge leaves no
graph row (read from the tables themselves) and no name in the SQLite file, and a copy from SQLite
to PostgreSQL carries the graph.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from memlane import Memory, Scope
from memlane.core.graph import EntityMention, RelationClaim
from memlane.core.records import NewMemory
from memlane.protocols import Store
from memlane.stores.postgres import PostgresStore
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder
from memlane.testing._contract_base import ContractHelpers

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HELPERS = ContractHelpers()
SHARED = Scope(user_id="shared")


def naming(writer: str, i: int) -> NewMemory:
    """Writer ``writer``'s ``i``-th memory: it names Alice (spelt two ways) and Bob, restates that
    Alice manages Bob, and moves Alice to a city of its own (exclusive: one home at a time)."""
    when = T0 + timedelta(minutes=i, seconds=int(writer.strip("w") or 0))
    row = HELPERS.row(f"{writer} note {i}: Alice manages Bob and lives in city {writer}{i}", user_id="shared",
                      created=when)  # fmt: skip
    row.entities = (EntityMention("Alice" if i % 2 else "alice", "person"), EntityMention("Bob", "person"))
    row.relations = (
        RelationClaim("Alice", "manages", "Bob"),
        RelationClaim("Alice", "lives in", f"City{writer}{i}", True),
    )
    return row


def check_one_entity_per_name(store: Store, writers: int, rounds: int) -> None:
    names = Counter(e.name.casefold() for e in store.entities(SHARED))
    assert names["alice"] == 1 and names["bob"] == 1, names
    assert sum(names.values()) == 2 + writers * rounds  # and every city once
    relations = store.relations(SHARED)
    predicates = Counter((r.predicate, r.valid_until is None) for r in relations)
    assert predicates[("manages", True)] == 1 and predicates[("manages", False)] == 0  # said many times, stored once
    assert predicates[("lives_in", True)] == 1  # one home at a time, the others closed
    assert predicates[("lives_in", False)] == writers * rounds - 1
    alice = next(e.id for e in store.entities(SHARED) if e.name.casefold() == "alice")
    assert len(store.entity_memories([alice])[alice]) == writers * rounds


# -- backends -------------------------------------------------------------------------------------
def _sqlite(request: pytest.FixtureRequest) -> Callable[[], Store]:
    path: Path = request.getfixturevalue("tmp_path") / "graph.db"
    return lambda: SQLiteStore(path, busy_timeout=30.0, durability="normal")


def _postgres(request: pytest.FixtureRequest) -> Callable[[], Store]:
    url: str = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url, min_size=1, max_size=2, timeout=30.0)


@pytest.fixture(params=["sqlite", "postgres"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[], Store]]:
    """New, opened handles on one fresh database of the backend (closed afterwards)."""
    build = _sqlite if request.param == "sqlite" else _postgres
    factory, handles = build(request), []

    def opened() -> Store:
        handles.append(factory())
        handles[-1].open(HELPERS.embedder_id, HELPERS.dimension)
        return handles[-1]

    yield opened
    for handle in handles:
        handle.close()


def graph_counts(backend_store: Store, user_id: str) -> tuple[int, int, int, int]:
    """(entities, mentions, relations, name keys) of ``user_id`` read from the tables themselves."""
    sql = [
        "SELECT count(*) FROM entities WHERE user_id = ?",
        "SELECT count(*) FROM entity_mentions em JOIN entities e ON e.id = em.entity_id WHERE e.user_id = ?",
        "SELECT count(*) FROM relations WHERE user_id = ?",
        "SELECT count(*) FROM entity_keys WHERE user_id = ?",
    ]
    if isinstance(backend_store, SQLiteStore):
        with sqlite3.connect(backend_store.path) as conn:
            a, b, c, d = (conn.execute(q, (user_id,)).fetchone()[0] for q in sql)
            return a, b, c, d
    assert isinstance(backend_store, PostgresStore)
    with psycopg.connect(backend_store.url) as conn:
        conn.execute("SET search_path TO memlane, public")
        a, b, c, d = (conn.execute(q.replace("?", "%s"), (user_id,)).fetchone()[0] for q in sql)  # type: ignore[arg-type,index]
        return a, b, c, d


# -- racing writers -------------------------------------------------------------------------------
@pytest.mark.slow
def test_racing_threads_end_with_one_entity_per_name(make: Callable[[], Store]) -> None:
    writers, rounds = 6, 4
    stores = [make() for _ in range(writers)]  # one handle (connection, pool) per writer
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(rounds):
                barrier.wait(timeout=30)
                stores[w].insert([naming(f"w{w}", i)], T0)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    check_one_entity_per_name(stores[0], writers, rounds)


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[5])
    from test_graph_store import HELPERS, T0, naming
    from memlane.stores.sqlite import SQLiteStore

    db, wid, rounds, sync, parties = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[6])
    store = SQLiteStore(db, busy_timeout=60.0, durability="normal")
    store.open(HELPERS.embedder_id, HELPERS.dimension)
    out = []
    for i in range(rounds):
        (sync / f"round{i}.{wid}").touch()
        deadline = time.monotonic() + 60
        while len(list(sync.glob(f"round{i}.*"))) < parties:
            if time.monotonic() > deadline:
                raise SystemExit("barrier timed out")
            time.sleep(0.0005)
        out.append(store.insert([naming(wid, i)], T0)[0][1])
    store.close()
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_racing_processes_on_one_sqlite_file_end_with_one_entity_per_name(tmp_path: Path) -> None:
    writers, rounds = 4, 4
    db, sync, script = tmp_path / "graph.db", tmp_path / "sync", tmp_path / "worker.py"
    sync.mkdir()
    script.write_text(WORKER)
    first = SQLiteStore(db)
    first.open(HELPERS.embedder_id, HELPERS.dimension)  # created (and migrated) before the race
    first.close()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), f"w{w}", str(rounds), str(sync), str(Path(__file__).parent),
             str(writers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(writers)
    ]  # fmt: skip
    done = [proc.communicate(timeout=120) for proc in procs]
    assert [p.returncode for p in procs] == [0] * writers, "\n".join(err for _, err in done)
    assert [json.loads(out.strip().splitlines()[-1]) for out, _ in done] == [["ADD"] * rounds] * writers
    store = SQLiteStore(db)
    store.open(HELPERS.embedder_id, HELPERS.dimension)
    try:
        check_one_entity_per_name(store, writers, rounds)
    finally:
        store.close()


# -- the right to be forgotten --------------------------------------------------------------------
def test_delete_scope_and_reset_leave_no_graph_row_in_the_tables(make: Callable[[], Store]) -> None:
    store = make()
    for user in ("gone", "kept"):
        row = HELPERS.row("Zanzibarella Quux mentors Yvonnetta Plim", user_id=user)
        row.entities = (EntityMention("Zanzibarella Quux"), EntityMention("Yvonnetta Plim"))
        row.relations = (RelationClaim("Zanzibarella Quux", "mentors", "Yvonnetta Plim"),)
        store.insert([row], T0)
    assert graph_counts(store, "gone") == graph_counts(store, "kept") == (2, 2, 1, 4)
    one = HELPERS.row("Zanzibarella Quux again", user_id="gone")
    one.entities = (EntityMention("Zanzibarella Quux"),)
    store.insert([one], T0)
    store.delete(one.id, purge=True, now=T0)
    assert graph_counts(store, "gone") == (2, 2, 1, 4)  # still named by the first memory
    store.delete_scope(Scope(user_id="gone"), purge=True, now=T0)
    assert graph_counts(store, "gone") == (0, 0, 0, 0) and graph_counts(store, "kept") == (2, 2, 1, 4)
    store.reset()
    assert graph_counts(store, "kept") == (0, 0, 0, 0)


def test_a_purge_leaves_no_entity_name_in_the_sqlite_file(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    store.open(HELPERS.embedder_id, HELPERS.dimension)
    row = HELPERS.row("I met someone at the fair", user_id="gone")
    row.entities = (EntityMention("Zanzibarella Quux", "person"), EntityMention("Plimtown"))
    row.relations = (RelationClaim("Zanzibarella Quux", "lives in", "Plimtown", True),)
    store.insert([row], T0)
    raw = lambda: b"".join(p.read_bytes() for p in sorted(tmp_path.glob("m.db*"))).lower()  # noqa: E731
    assert b"zanzibarella" in raw()
    store.delete_scope(Scope(user_id="gone"), purge=True, now=T0)
    assert b"zanzibarella" not in raw() and b"plimtown" not in raw()  # names, and their normalised keys
    store.close()


# -- copy from SQLite to PostgreSQL ---------------------------------------------------------------
def _filled(path: Path, clock: FrozenClock) -> Memory:
    llm = FakeLLM()
    m = Memory(path, embedder=HashEmbedder(), llm=llm, clock=clock, config={"extraction": {"related_threshold": -1.0}})
    claim = {"subject": "Alice", "predicate": "manages", "object": "Bob", "exclusive": False}
    fact = {"text": "Alice manages Bob.", "from": [1], "entities": [{"name": "Alice", "type": "person"}],
            "relations": [claim]}  # fmt: skip
    llm.queue({"facts": [fact]})
    m.add("Alice manages Bob.", user_id="u1")
    return m


def graph_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] in ("entity", "relation")]


def test_export_import_from_sqlite_into_postgres_carries_the_graph(tmp_path: Path, postgres_url: str) -> None:
    clock = FrozenClock(T0)
    with _filled(tmp_path / "src.db", clock) as source:
        records = list(source.export_records())
    assert [r["type"] for r in graph_records(records)] == ["entity", "entity", "relation"]
    with Memory(store=PostgresStore(postgres_url), embedder=HashEmbedder(), clock=clock) as target:
        target.import_records(records)
        assert list(target.export_records()) == records


def test_memlane_copy_carries_the_graph(tmp_path: Path, postgres_url: str) -> None:
    from memlane.cli import cli
    from memlane.providers import registry

    registry.add_embedder("graph-test-hash", lambda config: HashEmbedder())
    home = tmp_path / "home"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"embedder": {"provider": "graph-test-hash"}}), encoding="utf-8")
    clock = FrozenClock(T0)
    with _filled(home / "memlane.db", clock) as source:
        records = list(source.export_records())
    argv = ["--home", str(home), "--config", str(config), "--json", "copy", "--to-database-url", postgres_url]
    env = dict.fromkeys(("MEMLANE_HOME", "MEMLANE_CONFIG", "MEMLANE_URL", "MEMLANE_API_KEY", "MEMLANE_JSON",
                         "MEMLANE_DEBUG", "MEMLANE_DATABASE_URL"))  # fmt: skip
    result = CliRunner().invoke(cli, argv, env=env)
    assert result.exit_code == 0, result.output
    with Memory(store=PostgresStore(postgres_url), embedder=HashEmbedder()) as target:
        assert graph_records(list(target.export_records())) == graph_records(records)
