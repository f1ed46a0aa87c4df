"""``memlane import-mem0`` / ``memlane.mem0_import``: stores written by the real mem0ai 2.2.1, imported.

mem0 runs in a subprocess (``mem0_fixture``) with its LLM and embedder on a fake OpenAI API on
127.0.0.1; everything it writes stays in tmp_path. The scenario: extraction adds (``infer=True``),
verbatim messages (``infer=False``, with a speaker name), several scopes, metadata, an expiration
date (one already past), an update of the text, an update of metadata only, a delete (history
only), mem0's entity collection, and an entry without any scope id.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from mem0_fixture import fake_openai, mem0_config, write_mem0
from wire_server import Recorded, Reply, WireServer, closed_port

from memlane import InvalidRequest, Memory, MemoryNotFound, ProviderError
from memlane.cli import cli
from memlane.mem0_import import HASH_KEY, Mem0Source, expires_at, import_mem0
from memlane.providers import registry
from memlane.testing import HashEmbedder

HASH_PROVIDER = "mem0-import-test-hash"
FLAKY_PROVIDER = "mem0-import-test-flaky"  # the same embedder, failing on its second call
ORPHAN = "00000000-0000-4000-8000-00000000000a"
CLEAN_ENV = {"MEMLANE_HOME": None, "MEMLANE_CONFIG": None, "MEMLANE_URL": None, "MEMLANE_DATABASE_URL": None,
             "MEMLANE_JSON": None, "MEMLANE_DEBUG": None, "QDRANT_API_KEY": None}  # fmt: skip

SCENARIO: list[dict[str, Any]] = [
    {"op": "add", "messages": "I moved last week. [[Alice lives in Lisbon]] [[Alice has a cat named Tom]]",
     "user_id": "alice", "metadata": {"topic": "home", "tags": ["move", "pets"]}},
    {"op": "add", "messages": "Plan it. [[The trip to Japan is in May]]", "agent_id": "planner", "run_id": "r1"},
    {"op": "add", "messages": [{"role": "user", "content": "I drink green tea every morning", "name": "Bob"},
                               {"role": "assistant", "content": "Noted: green tea in the morning"}],
     "user_id": "bob", "infer": False, "expiration_date": "2030-01-31", "metadata": {"source": "chat"}},
    {"op": "add", "messages": "Promo code SPRING20 is valid", "user_id": "bob", "infer": False,
     "expiration_date": "2020-01-01"},
    {"op": "update", "memory": "Alice lives in Lisbon", "text": "Alice lives in Porto"},
    {"op": "update", "memory": "The trip to Japan is in May", "metadata": {"confirmed": True}},
    {"op": "delete", "memory": "Alice has a cat named Tom"},
    {"op": "entities", "id": "00000000-0000-4000-8000-0000000000e1"},
    {"op": "raw", "id": ORPHAN, "text": "An entry from before scopes were required",
     "payload": {"created_at": "2024-03-01T10:00:00-08:00"}},
]  # fmt: skip


@pytest.fixture(scope="module")
def openai_api() -> Iterator[str]:
    with WireServer() as server:
        server.always(fake_openai)
        yield server.url


@pytest.fixture(scope="module", autouse=True)
def _hash_provider() -> None:
    registry.add_embedder(HASH_PROVIDER, lambda config: HashEmbedder())
    registry.add_embedder(FLAKY_PROVIDER, lambda config: FailingEmbedder(fail_at=2))


def _qdrant_store(tmp: Path, api: str, ops: Sequence[Mapping[str, Any]] = SCENARIO) -> tuple[dict[str, Any], Any]:
    store = {"provider": "qdrant", "config": {"path": str(tmp / "qdrant"), "collection_name": "mem0",
                                              "embedding_model_dims": 16}}  # fmt: skip
    config = mem0_config(api, tmp, store)
    return config, write_mem0(tmp, config, [dict(op) for op in ops])


@pytest.fixture(scope="module")
def qdrant_mem0(tmp_path_factory: pytest.TempPathFactory, openai_api: str) -> tuple[dict[str, Any], Any]:
    """mem0's default backend (local Qdrant) after the scenario: (mem0 config, what mem0 reports)."""
    return _qdrant_store(tmp_path_factory.mktemp("mem0-qdrant"), openai_api)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _check_imported(memory: Memory, mem0: Mapping[str, Any], report: Any) -> None:
    """Every memory mem0 still has is in memlane as it was; every history (deleted ones too) travelled."""
    live = {i: g for i, g in mem0["get"].items() if g is not None}
    for memory_id, was in live.items():
        got = memory.get(memory_id)
        assert got["memory"] == was["memory"]
        unscoped = not any(was.get(k) for k in ("user_id", "agent_id", "run_id"))
        for key in ("user_id", "agent_id", "run_id", "actor_id", "role"):
            want = "legacy" if unscoped and key == "user_id" else was.get(key)  # the default user id
            assert got[key] == want, key
        expected_meta = {**(was.get("metadata") or {}), HASH_KEY: was["hash"]}
        if was.get("attributed_to"):
            expected_meta["mem0_attributed_to"] = was["attributed_to"]
        assert got["metadata"] == expected_meta
        if was.get("created_at"):
            assert _time(got["created_at"]) == _time(was["created_at"])
            assert _time(got["updated_at"]) == _time(was.get("updated_at") or was["created_at"])
        if was.get("expiration_date"):
            assert got["expires_at"] == expires_at(was["expiration_date"])
    for memory_id, events in mem0["history"].items():
        got_events = memory.history(memory_id)
        assert [(e["event"], e["old_memory"], e["new_memory"]) for e in got_events] == [
            (e["event"], e["old_memory"], e["new_memory"]) for e in events
        ], memory_id
        for e, was_event in zip(got_events, events, strict=True):
            when = was_event["created_at"] if was_event["event"] == "ADD" else was_event["updated_at"]
            assert _time(e["created_at"]) == _time(when)
    deleted = [i for i, g in mem0["get"].items() if g is None]
    assert deleted and report.deleted_in_mem0 == len(deleted)
    for memory_id in deleted:
        with pytest.raises(MemoryNotFound):
            memory.get(memory_id)


def _source(config: Mapping[str, Any]) -> Mem0Source:
    return Mem0Source.from_config(config)


# -- the import, through the library ------------------------------------------------------------
def test_qdrant_import_keeps_ids_scopes_metadata_times_and_history(
    tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]
) -> None:
    config, mem0 = qdrant_mem0
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        report = import_mem0(memory, _source(config), default_user_id="legacy", batch_size=3)
        _check_imported(memory, mem0, report)
        live = sum(g is not None for g in mem0["get"].values())
        assert (report.found, report.imported, report.problems) == (live, live, 0)
        assert report.history_events == sum(len(h) for h in mem0["history"].values())
        assert report.scopes == {"user_id=alice": 1, "agent_id=planner run_id=r1": 1, "user_id=bob": 3,
                                 "user_id=legacy": 1}  # fmt: skip
        assert report.skipped_collections == ["mem0_entities (1 entities)"]
        # Searchable, in its scope; the expired memory is hidden as mem0 hid it, but still there.
        hits = memory.search("where does Alice live?", user_id="alice")["results"]
        assert hits[0]["memory"] == "Alice lives in Porto"
        listed = {m["memory"] for m in memory.get_all(user_id="bob")["results"]}
        assert "Promo code SPRING20 is valid" not in listed and "I drink green tea every morning" in listed
        promo = mem0["ids"]["Promo code SPRING20 is valid"]
        assert memory.get(promo)["expires_at"] == "2020-01-02T00:00:00.000000+00:00"
        orphan = memory.get(ORPHAN)
        assert orphan["user_id"] == "legacy" and orphan["created_at"] == "2024-03-01T18:00:00.000000+00:00"
        trip = memory.get(mem0["ids"]["The trip to Japan is in May"])
        assert trip["metadata"]["confirmed"] is True


def test_a_rerun_imports_and_embeds_nothing_twice(tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]) -> None:
    config, _ = qdrant_mem0
    embedder = HashEmbedder()
    with Memory(tmp_path / "m.db", embedder=embedder) as memory:
        first = import_mem0(memory, _source(config), default_user_id="legacy")
        calls, exported = embedder.calls, list(memory.export_records())
        again = import_mem0(memory, _source(config), default_user_id="legacy")
        assert (again.imported, again.history_events) == (0, 0)
        assert again.already_present == first.found + first.deleted_in_mem0
        assert embedder.calls == calls, "ids memlane already had were embedded again"
        assert list(memory.export_records())[1:] == exported[1:]  # the header holds the export time


class FailingEmbedder:
    """The hash embedder, but its ``fail_at``-th call raises (an embedding API falling over mid-import)."""

    def __init__(self, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = HashEmbedder(), fail_at, 0
        self.model_id, self.dimension = self.inner.model_id, self.inner.dimension

    def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ProviderError("the embedding API fell over", provider="test")
        return self.inner.embed(texts)


def test_a_crash_mid_import_then_a_rerun_completes_it(tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]) -> None:
    config, mem0 = qdrant_mem0
    reference = tmp_path / "reference.db"
    with Memory(reference, embedder=HashEmbedder()) as memory:
        import_mem0(memory, _source(config), default_user_id="legacy", batch_size=2)
        expected = list(memory.export_records())[1:]
    path = tmp_path / "m.db"
    with Memory(path, embedder=FailingEmbedder(fail_at=2)) as memory, pytest.raises(ProviderError):
        import_mem0(memory, _source(config), default_user_id="legacy", batch_size=2)
    with Memory(path, embedder=HashEmbedder()) as memory:
        partial = [r for r in memory.export_records() if r["type"] == "memory"]
        assert len(partial) == 2, "the first batch stays, the failed one left nothing behind"
        report = import_mem0(memory, _source(config), default_user_id="legacy", batch_size=2)
        assert report.already_present == 2
        assert report.imported == sum(g is not None for g in mem0["get"].values()) - 2
        _check_imported(memory, mem0, report)
        after = list(memory.export_records())[1:]
    key = json.dumps
    assert sorted(map(key, after)) == sorted(map(key, expected)), "something lost or duplicated"


def test_memories_without_scope_are_refused_before_anything_is_written(
    tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]
) -> None:
    config, _ = qdrant_mem0
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        with pytest.raises(InvalidRequest, match=rf"1 mem0 memories have no user_id.*{ORPHAN}.*--default-user-id"):
            import_mem0(memory, _source(config))
        assert list(memory.export_records())[1:] == []
        report = import_mem0(memory, _source(config), dry_run=True)
        assert report.without_scope == [ORPHAN] and report.problems == 1


def test_through_a_memlane_server(tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]) -> None:
    """The target may be a ``MemoryClient`` (``memlane --url ... import-mem0``): same checks, same batches."""
    from server_harness import remote

    config, mem0 = qdrant_mem0
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory, remote(memory, tmp_path / "srv") as client:
        report = import_mem0(client, _source(config), default_user_id="legacy", batch_size=3)
        _check_imported(memory, mem0, report)
        again = import_mem0(client, _source(config), default_user_id="legacy")
        assert (again.imported, again.already_present) == (0, report.found + report.deleted_in_mem0)


# -- the command --------------------------------------------------------------------------------
def _json_file(tmp_path: Path, data: Mapping[str, Any]) -> Path:
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _cli(
    tmp_path: Path, *args: str, expect: int = 0, database_url: str | None = None, embedder: str = HASH_PROVIDER
) -> Any:
    config = tmp_path / "memlane.json"
    config.write_text(json.dumps({"embedder": {"provider": embedder}}), encoding="utf-8")
    target = ["--database-url", database_url] if database_url else ["--home", str(tmp_path / "home")]
    argv = [*target, "--config", str(config), "--json", "import-mem0", *args]
    result = CliRunner().invoke(cli, argv, env=CLEAN_ENV, catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout) if expect == 0 else result


def test_cli_dry_run_writes_nothing_then_imports_from_a_yaml_mem0_config(
    tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]
) -> None:
    config, mem0 = qdrant_mem0
    yaml = pytest.importorskip("yaml")
    mem0_file = tmp_path / "mem0.yaml"
    mem0_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    dry = _cli(tmp_path, "--mem0-config", str(mem0_file), "--dry-run")
    assert not (tmp_path / "home").exists(), "a dry run created the memlane store"
    live = sum(g is not None for g in mem0["get"].values())
    assert (dry["dry_run"], dry["found"], dry["imported"], dry["without_scope"]) == (True, live, live - 1, [ORPHAN])
    assert dry["deleted_in_mem0"] == 1 and dry["skipped_collections"] == ["mem0_entities (1 entities)"]
    refused = _cli(tmp_path, "--mem0-config", str(mem0_file), expect=2)
    assert "--default-user-id" in refused.stderr and not (tmp_path / "home" / "memlane.db").exists()
    done = _cli(tmp_path, "--mem0-config", str(mem0_file), "--default-user-id", "legacy", "--batch-size", "2")
    assert (done["imported"], done["problems"]) == (live, 0)
    flags = ("--qdrant-path", config["vector_store"]["config"]["path"], "--history-db", config["history_db_path"])
    again = _cli(tmp_path, *flags, "--default-user-id", "legacy")
    assert (again["imported"], again["already_present"]) == (0, live + 1)


def test_cli_stopped_by_a_failing_embedder_says_how_to_resume(
    tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]
) -> None:
    config, mem0 = qdrant_mem0
    args = ("--mem0-config", str(_json_file(tmp_path, config)), "--default-user-id", "legacy", "--batch-size", "2")
    stopped = _cli(tmp_path, *args, expect=5, embedder=FLAKY_PROVIDER)
    total = len(mem0["get"])  # every id mem0 knows: live ones, plus the deleted one (history only)
    assert f"stopped after 2 of {total} mem0 memories" in stopped.stderr
    assert "run the same command again" in stopped.stderr and "ProviderError" in stopped.stderr
    done = _cli(tmp_path, *args)
    assert (done["already_present"], done["imported"]) == (2, sum(g is not None for g in mem0["get"].values()) - 2)


def test_cli_errors_say_what_to_fix(tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]) -> None:
    config, _ = qdrant_mem0
    qdrant = config["vector_store"]["config"]["path"]
    missing = _cli(tmp_path, "--qdrant-path", qdrant, "--history-db", str(tmp_path / "nope.db"), expect=2)
    assert "no mem0 history database" in missing.stderr and "--no-history" in missing.stderr
    wrong = _cli(tmp_path, "--qdrant-path", qdrant, "--collection", "memories", "--no-history", expect=2)
    assert "no Qdrant collection 'memories'" in wrong.stderr and "mem0_entities" in wrong.stderr
    from qdrant_client import QdrantClient

    holder = QdrantClient(path=qdrant)  # mem0 still running on its local store
    try:
        busy = _cli(tmp_path, "--qdrant-path", qdrant, "--no-history", expect=2)
    finally:
        holder.close()
    assert "already accessed by another instance" in busy.stderr and "stop mem0 first" in busy.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _cli(tmp_path, "--qdrant-path", str(empty), "--no-history", expect=2)
    assert "no local Qdrant store at" in nothing.stderr and list(empty.iterdir()) == []
    both = _cli(tmp_path, "--qdrant-path", qdrant, "--faiss-path", str(tmp_path), expect=2)
    assert "give one mem0 vector store" in both.stderr
    down = _cli(tmp_path, "--qdrant-url", f"http://127.0.0.1:{closed_port()}", "--no-history", expect=5)
    assert "cannot read Qdrant at http://127.0.0.1:" in down.stderr  # a server that is down: retry later
    assert not (tmp_path / "home" / "memlane.db").exists()


# -- other backends -----------------------------------------------------------------------------
class FakeQdrantServer:
    """Qdrant's REST API as qdrant-client uses it to list a collection (collections, scroll, count),
    answering with the points of a store mem0 wrote locally; it records the API key it was sent."""

    def __init__(self, points: list[tuple[str, dict[str, Any]]], collections: list[str]) -> None:
        self.points, self.collections, self.keys = sorted(points), collections, set[str]()

    def __call__(self, request: Recorded) -> Reply:
        self.keys.add(request.headers.get("api-key", ""))
        ok: dict[str, Any] = {"status": "ok", "time": 0.0}
        body = request.body if isinstance(request.body, dict) else {}
        if request.path == "/collections":
            return Reply(body={**ok, "result": {"collections": [{"name": n} for n in self.collections]}})
        if request.path.endswith("/points/scroll"):
            ids = [i for i, _ in self.points]
            start = ids.index(body["offset"]) if body.get("offset") is not None else 0
            page = self.points[start : start + int(body.get("limit", 10))]
            following = ids[start + len(page)] if start + len(page) < len(ids) else None
            records = [{"id": i, "payload": p} for i, p in page]
            return Reply(body={**ok, "result": {"points": records, "next_page_offset": following}})
        if request.path.endswith("/points/count"):
            return Reply(body={**ok, "result": {"count": 1}})
        return Reply(body={"title": "qdrant - vector search engine", "version": "1.20.0"})


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_a_qdrant_server_by_url_and_api_key(tmp_path: Path, qdrant_mem0: tuple[dict[str, Any], Any]) -> None:
    from qdrant_client import QdrantClient

    config, mem0 = qdrant_mem0
    local = QdrantClient(path=config["vector_store"]["config"]["path"])
    points = [(str(p.id), dict(p.payload or {})) for p in local.scroll("mem0", limit=1000)[0]]
    local.close()
    fake = FakeQdrantServer(points, ["mem0", "mem0_entities"])
    with WireServer() as server, Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        server.always(fake)
        remote = {**config, "vector_store": {"provider": "qdrant", "config": {"url": server.url, "api_key": "s3cret",
                                                                              "collection_name": "mem0"}}}  # fmt: skip
        report = import_mem0(memory, _source(remote), default_user_id="legacy", batch_size=2)
        _check_imported(memory, mem0, report)
    assert fake.keys == {"s3cret"} and report.skipped_collections == ["mem0_entities (1 entities)"]


BASIC: list[dict[str, Any]] = [op for op in SCENARIO if op["op"] in ("add", "update", "delete")]


def test_pgvector_import_into_memlane_on_postgres(
    tmp_path: Path, openai_api: str, postgres_url: str, migrated_postgres_url: str
) -> None:
    from memlane.stores.postgres import PostgresStore

    store = {"provider": "pgvector", "config": {"connection_string": postgres_url, "collection_name": "memories_v2",
                                                "embedding_model_dims": 16}}  # fmt: skip
    config = mem0_config(openai_api, tmp_path, store)
    mem0 = write_mem0(tmp_path, config, [dict(op) for op in BASIC])
    with Memory(store=PostgresStore(migrated_postgres_url), embedder=HashEmbedder()) as memory:
        report = import_mem0(memory, _source(config), batch_size=2)
        _check_imported(memory, mem0, report)
        assert report.imported == sum(g is not None for g in mem0["get"].values()) and report.problems == 0
        assert memory.search("Japan trip", agent_id="planner", run_id="r1")["results"][0]["memory"].startswith("The")
    # The rerun through the command, on the store --database-url names: nothing twice.
    again = _cli(tmp_path, "--mem0-config", str(_json_file(tmp_path, config)), database_url=migrated_postgres_url)
    assert (again["imported"], again["history_events"], again["already_present"]) == (0, 0, len(mem0["get"]))


@pytest.mark.parametrize("provider", ["faiss", "chroma"])
def test_faiss_and_chroma_stores_written_by_mem0(tmp_path: Path, openai_api: str, provider: str) -> None:
    if provider == "chroma":
        pytest.importorskip("chromadb")
    settings: dict[str, Any] = {"path": str(tmp_path / provider), "collection_name": "mem0"}
    if provider == "faiss":
        settings["embedding_model_dims"] = 16
    config = mem0_config(openai_api, tmp_path, {"provider": provider, "config": settings})
    # Chroma keeps flat metadata only: no list values.
    ops = [{**op, "metadata": {"topic": "home"}} if op.get("metadata", {}).get("tags") else op for op in BASIC]
    mem0 = write_mem0(tmp_path, config, [dict(op) for op in ops])
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        report = import_mem0(memory, _source(config), batch_size=2)
        _check_imported(memory, mem0, report)
        assert report.problems == 0 and report.imported == sum(g is not None for g in mem0["get"].values())


def test_a_legacy_faiss_pickle_docstore_is_read_and_a_hostile_one_refused(tmp_path: Path) -> None:
    store = tmp_path / "faiss"
    store.mkdir()
    payload = {"data": "Alice likes jazz", "hash": "x", "user_id": "alice", "created_at": "2025-01-01T00:00:00Z"}
    (store / "mem0.pkl").write_bytes(pickle.dumps(({"m-1": payload}, {0: "m-1"})))
    source = Mem0Source.from_config({"vector_store": {"provider": "faiss", "config": {"path": str(store)}}},
                                    history=False)  # fmt: skip
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        assert import_mem0(memory, source).imported == 1
        assert memory.get("m-1")["memory"] == "Alice likes jazz"
    (store / "mem0.pkl").write_bytes(pickle.dumps((Path("/etc"), {})))
    with Memory(tmp_path / "m2.db", embedder=HashEmbedder()) as memory, pytest.raises(Exception, match="refused"):
        import_mem0(memory, source)


# -- mapping details ----------------------------------------------------------------------------
def test_expiration_date_expires_at_the_next_utc_midnight() -> None:
    assert expires_at("2030-01-31") == "2030-02-01T00:00:00.000000+00:00"
    assert expires_at(None) is None
    with pytest.raises(ValueError):
        expires_at("soon")


def test_an_older_history_layout_and_odd_payloads_are_tolerated_and_reported(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    with sqlite3.connect(db) as conn:  # an early mem0 layout: new_value, no actor_id / role
        conn.execute("CREATE TABLE history (id TEXT, memory_id TEXT, old_memory TEXT, new_value TEXT, event TEXT, "
                     "created_at DATETIME, updated_at DATETIME, is_deleted INTEGER)")  # fmt: skip
        conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
            ("h1", "m-1", None, "Bob plays chess", "ADD", "2024-01-01T00:00:00", None, 0),
            ("h2", "m-gone", None, "Bob had a dog", "ADD", "2024-01-02T00:00:00", None, 0),
            ("h3", "m-gone", "Bob had a dog", None, "DELETE", "2024-01-02T00:00:00", "2024-02-01T00:00:00", 1),
            ("h4", "m-gone", None, None, "NONE", "2024-02-02T00:00:00", None, 0),
            ("h5", "m-5", None, "Bob runs marathons", "ADD", "2024-03-01T00:00:00", None, 0),
        ])  # fmt: skip
    store = tmp_path / "faiss"
    store.mkdir()
    docstore = {
        "m-1": {"data": "Bob plays chess", "hash": "h", "user_id": "bob", "expiration_date": "someday"},
        "m-2": {"data": "Bob plays chess", "user_id": "bob"},
        "m-3": {"data": "", "user_id": "bob"},
        "m-4": {"data": "Numbers", "user_id": 42},
        "m-5": {"data": "Bob runs marathons", "user_id": "bob"},
    }
    (store / "mem0.json").write_text(json.dumps({"docstore": docstore, "index_to_id": {}}), encoding="utf-8")
    source = Mem0Source.from_config(
        {"vector_store": {"provider": "faiss", "config": {"path": str(store)}}, "history_db_path": str(db)}
    )
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        memory.add("Bob runs marathons", user_id="bob", infer=False)  # already in memlane, under another id
        report = import_mem0(memory, source)
        assert report.imported == 1 and report.deleted_in_mem0 == 1
        chess = memory.get("m-1")
        assert chess["created_at"] == "2024-01-01T00:00:00.000000+00:00" and chess["expires_at"] is None
        assert chess["metadata"]["mem0_expiration_date"] == "someday"
        assert [e["event"] for e in memory.history("m-gone")] == ["ADD", "DELETE"]
        assert report.duplicates == ["m-2: same text as m-1 in user_id=bob",
                                     "m-5: same text as a memory already in memlane in user_id=bob"]  # fmt: skip
        assert [e["new_memory"] for e in memory.history("m-5")] == ["Bob runs marathons"]  # its history travelled
        with pytest.raises(MemoryNotFound):
            memory.get("m-5")
        assert sorted(report.unmappable) == ["m-3: no text (payload key 'data' is missing or empty)",
                                             "m-4: user_id 42 is not a string"]  # fmt: skip
        assert any("'NONE'" in n for n in report.notes) and any("someday" in n for n in report.notes)
        again = import_mem0(memory, source)
        assert (again.imported, again.already_present, again.duplicates) == (0, 3, report.duplicates[:1])


def test_memlane_never_imports_mem0() -> None:
    code = "import sys, memlane, memlane.cli, memlane.mem0_import; assert 'mem0' not in sys.modules, 'mem0 imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
