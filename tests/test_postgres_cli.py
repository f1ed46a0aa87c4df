"""The command line on PostgreSQL, end to end against a real server (the ``postgres_url`` fixture):
``--database-url`` and ``MEMLANE_DATABASE_URL``, ``memlane migrate``, ``memlane copy`` of an
embedded store, export | import, and ``memlane serve --database-url`` as a real multi-worker process.

In-process runs build the shipped ``HashEmbedder`` from a JSON config through a registered
provider; the served subprocess registers it the same way from a ``sitecustomize`` module, so
its uvicorn workers have it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from server_harness import serving, settings_for
from wire_server import closed_port

from memlane import Memory, MemoryClient, Scope
from memlane.cli import cli
from memlane.cli._postgres import _Spool
from memlane.core.filters import to_iso
from memlane.core.records import NewMemory
from memlane.core.text import analyse, content_hash
from memlane.providers import registry
from memlane.server import KeyStore, create_app
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder

HASH = "pg-test-hash"
ENV_KEYS = ("MEMLANE_HOME", "MEMLANE_CONFIG", "MEMLANE_URL", "MEMLANE_API_KEY", "MEMLANE_JSON", "MEMLANE_DEBUG",
            "MEMLANE_DATABASE_URL")  # fmt: skip
CLEAN_ENV: Mapping[str, str | None] = {**dict.fromkeys(ENV_KEYS), "COLUMNS": "200"}
CHAT = [
    {"role": "user", "content": "Hi! I just got back from hiking Ben Nevis.", "name": "Caroline"},
    {"role": "assistant", "content": "How was the weather up there?"},
    {"role": "user", "content": "Foggy, but the view at the top was worth it.", "name": "Caroline"},
]


@pytest.fixture(scope="module", autouse=True)
def _providers() -> None:
    registry.add_embedder(HASH, lambda config: HashEmbedder())


class Cli:
    """``memlane --home H --config C ...`` in process, checking the exit code."""

    def __init__(self, home: Path, config: Path) -> None:
        self.home, self.config = home, config

    def __call__(self, *args: str, expect: int = 0, env: Mapping[str, str] | None = None) -> Result:
        argv = ["--home", str(self.home), "--config", str(self.config), *args]
        result = CliRunner().invoke(cli, argv, env={**CLEAN_ENV, **(env or {})}, catch_exceptions=False)
        assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    def json(self, *args: str, expect: int = 0, env: Mapping[str, str] | None = None) -> Any:
        return json.loads(self("--json", *args, expect=expect, env=env).stdout)


def _write_config(path: Path, store: Mapping[str, Any] | None = None) -> Path:
    data: dict[str, Any] = {"embedder": {"provider": HASH}}
    if store is not None:
        data["vector_store"] = dict(store)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def run(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", _write_config(tmp_path / "config.json"))


def on_postgres(url: str, schema: str = "memlane") -> Memory:
    """A second, independent ``Memory`` on the PostgreSQL store."""
    return Memory(config={"vector_store": {"provider": "postgres", "config": {"url": url, "schema": schema}}},
                  embedder=HashEmbedder())  # fmt: skip


def tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        return {r[0] for r in rows}


# -- --database-url and MEMLANE_DATABASE_URL ----------------------------------------------------------
def test_database_url_option_drives_postgres(run: Cli, postgres_url: str) -> None:
    added = run.json("--database-url", postgres_url, "add", "-u", "alice", "I'm vegetarian", "I live in Berlin")
    assert [r["event"] for r in added["results"]] == ["ADD", "ADD"]
    found = run.json("--database-url", postgres_url, "search", "-u", "alice", "vegetarian food")
    assert found["results"][0]["memory"] == "I'm vegetarian"
    assert "I live in Berlin" in run("--database-url", postgres_url, "list", "-u", "alice").stdout
    with on_postgres(postgres_url) as other:
        assert {m["memory"] for m in other.get_all(user_id="alice")["results"]} == {
            "I'm vegetarian",
            "I live in Berlin",
        }
    assert not (run.home / "memlane.db").exists()  # nothing went to the SQLite file
    # the flag beats a config file that names SQLite
    sqlite_config = Cli(run.home, _write_config(run.config.with_name("sqlite.json"), {"provider": "sqlite"}))
    assert len(sqlite_config.json("--database-url", postgres_url, "list", "-u", "alice")["results"]) == 2
    assert not (run.home / "memlane.db").exists()


def test_database_url_env_applies_unless_the_config_names_a_provider(run: Cli, postgres_url: str) -> None:
    env = {"MEMLANE_DATABASE_URL": postgres_url}
    run("add", "-u", "bob", "I keep bees", env=env)
    with on_postgres(postgres_url) as other:
        assert [m["memory"] for m in other.get_all(user_id="bob")["results"]] == ["I keep bees"]
    assert not (run.home / "memlane.db").exists()
    named = Cli(run.home, _write_config(run.config.with_name("sqlite.json"), {"provider": "sqlite"}))
    named("add", "-u", "bob", "I keep wasps", env=env)
    assert (run.home / "memlane.db").is_file()  # the config's explicit provider won over the environment
    assert [m["memory"] for m in named.json("list", "-u", "bob", env=env)["results"]] == ["I keep wasps"]
    shown = run.json("config", env={"MEMLANE_DATABASE_URL": "postgresql://me:hunter2@db:5432/m"})
    assert shown["vector_store"]["provider"] == "postgres"
    assert shown["vector_store"]["config"]["url"] == "postgresql://me:***@db:5432/m"
    info = run.json("info", env={"MEMLANE_DATABASE_URL": "postgresql://me:hunter2@db:5432/m"})
    assert info["database"] == {"store": "postgres postgresql://me:***@db:5432/m (schema memlane)"}


def test_database_url_and_url_together_are_refused(run: Cli, postgres_url: str) -> None:
    body = run.json("--url", "http://127.0.0.1:1", "--database-url", postgres_url, "list", "-u", "a", expect=2)
    assert body["error"]["type"] == "InvalidRequest" and "--database-url" in body["error"]["message"]
    message = run.json("--database-url", "mysql://x@y/z", "list", "-u", "a", expect=2)["error"]["message"]
    assert "has scheme 'mysql'" in message


def test_unreachable_database_exits_5(run: Cli) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing"
    body = run.json("--database-url", url, "list", "-u", "alice", expect=5)
    assert body["error"]["type"] == "StoreError"


# -- migrate --------------------------------------------------------------------------------------------
def test_migrate_sqlite_then_nothing_to_do(run: Cli) -> None:
    from memlane.stores.sqlite_schema import MIGRATIONS

    first = run.json("migrate")
    assert first["store"] == "sqlite" and first["applied"] == [version for version, _, _ in MIGRATIONS]
    assert (run.home / "memlane.db").is_file() and str(run.home) in first["description"]
    assert run.json("migrate")["applied"] == []
    assert "up to date" in run("migrate").stdout
    # a migrated but unused file still takes any embedder: migrate records none
    with Memory(run.home / "memlane.db", embedder=HashEmbedder(dimension=32)) as m:
        m.add("hello", user_id="a", infer=False)


def test_migrate_postgres_then_nothing_to_do(run: Cli, postgres_url: str) -> None:
    from memlane.stores.postgres_schema import MIGRATIONS

    first = run.json("--database-url", postgres_url, "migrate")
    assert first["store"] == "postgres" and first["applied"] == [version for version, _, _ in MIGRATIONS]
    assert "(schema memlane)" in first["description"]
    assert "memories" in tables(postgres_url, "memlane")
    assert run.json("--database-url", postgres_url, "migrate")["applied"] == []
    text = run("--database-url", postgres_url, "migrate").stdout
    assert "up to date" in text and "postgres" in text
    other = Cli(run.home, _write_config(run.config.with_name("pg.json"), {"provider": "postgres",
                                                                          "config": {"schema": "second"}}))  # fmt: skip
    assert other.json("migrate", env={"MEMLANE_DATABASE_URL": postgres_url})["applied"]
    assert "memories" in tables(postgres_url, "second")
    assert "--url" in run("--url", "http://127.0.0.1:1", "migrate", expect=2).stderr


# -- copy -------------------------------------------------------------------------------------------------
def fill(m: Memory, llm: FakeLLM, clock: FrozenClock) -> None:
    """Conversations, expiry, metadata, provenance, past versions (UPDATE and DELETE), deletes and a purge."""
    m.add(CHAT, user_id="alice", infer=False, timestamp="2026-05-10T18:00:00+02:00", metadata={"topic": "hiking"})
    m.add("my locker code is 4471", user_id="alice", run_id="gym", infer=False, ttl=3600)
    note = m.add("I prefer window seats", user_id="alice", agent_id="travel", infer=False)["results"][0]["id"]
    m.add("I keep bees", user_id="bob", infer=False, metadata={"n": [1, 2.5], "ok": True})
    gone = m.add("the wifi password is hunter2", user_id="bob", infer=False)["results"][0]["id"]
    secret = m.add("my passport number is X123", user_id="bob", infer=False)["results"][0]["id"]
    coach = {"user_id": "alice", "agent_id": "coach"}
    llm.queue(FakeLLM.facts("The user lives in Berlin.", sources=[1, 2]))
    m.add([{"role": "user", "content": "I live in Berlin"}, {"role": "user", "content": "near the park"}], **coach)
    llm.queue(FakeLLM.facts("The user plays chess on Sundays."))
    m.add("Sunday is chess day.", user_id="alice", agent_id="chess", timestamp="2025-12-01T10:00:00Z")
    clock.advance(days=30)
    llm.queue(FakeLLM.facts("The user moved to Oslo."),
              FakeLLM.decisions(("f1", "UPDATE", "m1", "The user moved from Berlin to Oslo.")))  # fmt: skip
    m.add("We moved to Oslo this month!", **coach)
    llm.queue(FakeLLM.facts("The user quit chess."), FakeLLM.decisions(("f1", "DELETE", "m1")))
    m.add("No more chess for me.", user_id="alice", agent_id="chess")
    m.update(note, "I prefer aisle seats", metadata={"changed": True})
    m.delete(gone)
    m.delete(secret, purge=True)
    assert llm.pending == 0
    clock.advance(hours=2)  # the locker code has expired


DIET = Scope(user_id="alice", agent_id="diet")


def consolidated(store: SQLiteStore, clock: FrozenClock) -> None:
    """What consolidation writes, in the order that tests the copy's batches: a memory merged into
    one added after it (and two memories apart), an archived one, a summary and search statistics;
    a memory merged into one deleted since goes with it."""
    with Memory(store=store, embedder=HashEmbedder(), clock=clock) as m:
        texts = ["I love sushi", "walked the dog", "went for a run", "i love sushi!", "I like tea", "i like tea!",
                 "old parking spot 7"]  # fmt: skip
        a, walk, run, b, tea, tea2, parking = (
            m.add(t, **DIET.as_dict(), infer=False)["results"][0]["id"] for t in texts
        )
        now = clock()
        assert store.merge(DIET, (b, content_hash(texts[3])), [(a, content_hash(texts[0]))], now) is not None
        assert store.merge(DIET, (tea, content_hash(texts[4])), [(tea2, content_hash(texts[5]))], now) is not None
        m.delete(tea)  # deletes tea2, merged into it, too
        assert store.archive(DIET, [(parking, content_hash(texts[6]))], now) == [parking]
        text = "Walked the dog and went for a run"
        summary = NewMemory(
            id="summary-1", memory=text, search_text=analyse(text), hash=content_hash(text),
            embedding=HashEmbedder().embed([text])[0], user_id="alice", agent_id="diet", run_id=None, role=None,
            actor_id=None, metadata={"memory_type": "episodic"}, created_at=to_iso(now), timestamp=to_iso(now),
            expires_at=None,
        )  # fmt: skip
        assert store.add_summary(summary, [walk, run], now) == [walk, run]
        store.record_access({b: (2, to_iso(now)), walk: (1, to_iso(now))})


@pytest.fixture
def embedded(run: Cli) -> Cli:
    """``run``'s home holding a filled SQLite store, consolidated in part."""
    llm, clock = FakeLLM(), FrozenClock(datetime(2026, 5, 12, 9, 30, tzinfo=UTC))
    config = {"extraction": {"related_threshold": -1.0}}
    with Memory(run.home / "memlane.db", embedder=HashEmbedder(), llm=llm, clock=clock, config=config) as m:
        fill(m, llm, clock)
    consolidated(SQLiteStore(run.home / "memlane.db", busy_timeout=5.0, durability="normal"), clock)
    return run


def by_key(records: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(header without its time, memory rows by id, history by memory id, entities and relations by
    id); each record exactly once."""
    header = {k: v for k, v in records[0].items() if k != "exported_at"}
    rows = {r["id"]: r for r in records if r["type"] == "memory"}
    history = {r["memory_id"]: r for r in records if r["type"] == "history"}
    graph = {(r["type"], r["id"]): r for r in records if r["type"] in ("entity", "relation")}
    assert len(rows) + len(history) + len(graph) + 1 == len(records)
    return header, rows, history, graph


def test_copy_moves_everything_record_by_record(embedded: Cli, postgres_url: str) -> None:
    with Memory(embedded.home / "memlane.db", embedder=HashEmbedder()) as source:
        before = by_key(list(source.export_records()))
    _, rows, history, graph = before
    # the store holds every kind of record this test is about (entities: the names verbatim messages hold)
    assert any(kind == "entity" for kind, _ in graph)
    assert any(r["version_of"] for r in rows.values()) and any(r["expires_at"] for r in rows.values())
    assert any(r["sources"] for r in rows.values() if not r["conversational"])
    assert sum(bool(r["prev_id"]) for r in rows.values() if r["agent_id"] != "diet") == 2
    assert {e["event"] for h in history.values() for e in h["events"]} == {"ADD", "UPDATE", "DELETE", "MERGE",
                                                                          "ARCHIVE"}  # fmt: skip
    assert {r.get("state") for r in rows.values()} == {None, "merged", "archived"}
    merged = {r["id"]: r["merged_into"] for r in rows.values() if r.get("state") == "merged"}
    order = list(rows)  # export order
    assert any(target in rows and order.index(target) > order.index(mid) for mid, target in merged.items())
    assert any([e["event"] for e in h["events"]] == ["ADD", "MERGE", "DELETE"] for h in history.values())
    assert rows["summary-1"]["summarises"] and any(r.get("retrievals") for r in rows.values())
    assert any(e["redacted"] for h in history.values() for e in h["events"])
    assert set(history) - {r["version_of"] or r["id"] for r in rows.values()}  # deleted memories: history only

    summary = embedded.json("copy", "--to-database-url", postgres_url, "--batch-size", "2", "--no-progress")
    assert summary["imported"] == len(rows) and summary["skipped"] == 0
    assert summary["history"] == sum(len(h["events"]) for h in history.values())
    assert summary["memories"] == len(history) and "schema memlane" in summary["target"]
    with on_postgres(postgres_url) as target:
        after = by_key(list(target.export_records()))
        assert after[0] == before[0]
        assert after[1].keys() == rows.keys()
        for rid, row in rows.items():
            assert after[1][rid] == row, rid
        assert after[2] == history
        assert after[3] == graph
        # and it answers like the source
        found = target.search("where does the user live", user_id="alice", agent_id="coach")["results"]
        assert found[0]["memory"] == "The user moved from Berlin to Oslo."
        # merged and archived memories stay out of search, and get finds them
        hits = [h["memory"] for h in target.search("sushi tea parking", **DIET.as_dict())["results"]]
        assert "I love sushi" not in hits and "i like tea!" not in hits and "old parking spot 7" not in hits
        assert {target.get(mid)["state"] for mid in merged} == {"merged"}
        assert target.search("Ben Nevis", user_id="alice", as_of="2026-05-11T00:00:00Z")["results"]

    again = embedded.json("copy", "--to-database-url", postgres_url, expect=6)
    assert again["error"]["type"] == "MemoryConflict"
    skipped = embedded.json("copy", "--to-database-url", postgres_url, "--on-conflict", "skip", "--batch-size", "3")
    only_history = set(history) - {r["version_of"] or r["id"] for r in rows.values()}
    # "skipped" counts rows left out (past versions too) and the memories that only have history
    assert (skipped["imported"], skipped["skipped"], skipped["history"]) == (0, len(rows) + len(only_history), 0)


def test_copy_a_scope_into_another_schema(embedded: Cli, postgres_url: str) -> None:
    text = embedded("copy", "--to-database-url", postgres_url, "--to-schema", "bobs", "-u", "bob").stdout
    assert text.startswith("copied 1 memory records") and "3 memories" in text
    assert f"from sqlite {embedded.home / 'memlane.db'} to postgres" in text and "(schema bobs)" in text
    with on_postgres(postgres_url, schema="bobs") as target:
        records = list(target.export_records())
        assert {r.get("user_id") for r in records if r["type"] == "memory"} == {"bob"}
        deleted = [
            r
            for r in records
            if r["type"] == "history" and r["events"][0]["new_memory"] == "the wifi password is hunter2"
        ]
        assert [e["event"] for e in deleted[0]["events"]] == ["ADD", "DELETE"]
        assert [m["memory"] for m in target.get_all(user_id="bob")["results"]] == ["I keep bees"]
    assert "memlane" not in _schemas(postgres_url)  # nothing went to the default schema


def _schemas(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata")}


def test_copy_from_a_server(run: Cli, postgres_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "server")
    _, token = KeyStore(settings.keys_path).create("ops", admin=True)
    with Memory(tmp_path / "served.db", embedder=HashEmbedder()) as served:
        served.add(CHAT, user_id="erin", infer=False)
        served.add("Speaks Portuguese", user_id="erin", agent_id="tutor", infer=False)
        expected = by_key(list(served.export_records()))
        with serving(create_app(served, settings)) as url:
            summary = run.json("--url", url, "--api-key", token, "copy", "--to-database-url", postgres_url)
    assert summary["source"] == url and summary["imported"] == 4
    with on_postgres(postgres_url) as target:
        assert by_key(list(target.export_records())) == expected
    assert not run.home.exists()


def test_copy_refuses_the_same_store(run: Cli, postgres_url: str) -> None:
    body = run.json("--database-url", postgres_url, "copy", "--to-database-url", postgres_url, expect=2)
    assert "same store" in body["error"]["message"]
    run.json("--database-url", postgres_url, "copy", "--to-database-url", postgres_url, "--to-schema", "other")


def test_export_pipe_import_into_postgres(embedded: Cli, postgres_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    embedded("export", str(dump))
    result = embedded.json("--database-url", postgres_url, "import", str(dump))
    lines = [json.loads(line) for line in dump.read_text(encoding="utf-8").splitlines()]
    assert result["imported"] == sum(r["type"] == "memory" for r in lines)
    with on_postgres(postgres_url) as target:
        assert by_key(list(target.export_records()))[1:] == by_key(lines)[1:]


# -- serve ---------------------------------------------------------------------------------------------------
SITE = f"""
from memlane.providers import registry
from memlane.server import KeyStore, create_app
from memlane.testing import HashEmbedder

registry.add_embedder({HASH!r}, lambda config: HashEmbedder())
"""


@pytest.fixture
def served(tmp_path: Path, postgres_url: str) -> Iterator[str]:
    """``memlane serve --database-url URL --workers 2 --no-auth`` as a real process; yields its base URL.

    Its config file names SQLite, so only the flag can put the memories in PostgreSQL.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE, encoding="utf-8")
    config = _write_config(tmp_path / "serve.json", {"provider": "sqlite"})
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    port = closed_port()
    command = [sys.executable, "-m", "memlane", "--home", str(tmp_path / "home"), "--config", str(config), "serve",
               "--database-url", postgres_url, "--no-auth", "--port", str(port), "--workers", "2",
               "--log-level", "warning"]  # fmt: skip
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    pytest.fail(f"memlane serve exited with {process.returncode}: {log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"memlane serve was not ready within 60 s: {log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_serve_database_url_stores_in_postgres(served: str, postgres_url: str, tmp_path: Path) -> None:
    with MemoryClient(served, retries=0) as client:
        ids = set()
        for text in ("Works night shifts at the harbour", "Has a cat named Pixel", "Allergic to peanuts"):
            ids.add(client.add(text, user_id="dana", infer=False)["results"][0]["id"])  # both workers answer
        found = client.search("what pets does she have", user_id="dana")["results"]
        assert found[0]["memory"] == "Has a cat named Pixel"
    with on_postgres(postgres_url) as direct:
        assert {m["id"] for m in direct.get_all(user_id="dana")["results"]} == ids
    with psycopg.connect(postgres_url) as conn:
        count = conn.execute("SELECT count(*) FROM memlane.memories WHERE user_id = 'dana'").fetchone()
        assert count is not None and count[0] == 3
    assert not (tmp_path / "home" / "memlane.db").exists()


def test_copy_batches_stretch_over_the_memories_a_batch_names(tmp_path: Path) -> None:
    """A memory merged into a later one is copied in the same batch as it; deleted memories come first."""

    def row(mid: str, **extra: Any) -> dict[str, Any]:
        return {"type": "memory", "id": mid, **extra}

    def history(mid: str) -> dict[str, Any]:
        return {"type": "history", "memory_id": mid, "events": []}

    records = [
        {"type": "memlane-export"}, row("a", merged_into="d"), row("b"), row("c"), row("d"), row("e"),
        row("f", merged_into="gone"), row("s", summarises=["b", "g"]), row("g"), history("a"), history("gone"),
    ]  # fmt: skip
    spool = _Spool(str(tmp_path))
    try:
        assert spool.fill(records) == 9
        batches = [(count, [r.get("id") or r["memory_id"] for r in batch[1:]]) for count, batch in spool.batches(1)]
    finally:
        spool.close()
    assert batches == [(1, ["gone"]), (4, ["a", "b", "c", "d", "a"]), (1, ["e"]), (1, ["f"]), (2, ["s", "g"])]
