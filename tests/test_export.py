"""``Memory.export_records`` / ``import_records``: a lossless round trip between stores and embedders,
scoped exports, conflicts, validation by record number, all-or-nothing writes, the async twins."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memlane import AsyncMemory, InvalidRequest, Memory, MemoryConflict, ProviderError, StoreError, transfer
from memlane.core.filters import to_iso
from memlane.core.portable import decode_lines, encode_line
from memlane.core.records import NewMemory
from memlane.core.text import analyse, content_hash
from memlane.protocols import EmbedKind, Store, Vectors
from memlane.stores.postgres import PostgresStore
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder

T0 = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)
CONFIG: dict[str, Any] = {"extraction": {"related_threshold": -1.0}}
CHAT = [
    {"role": "user", "content": "Hi! I just got back from hiking Ben Nevis.", "name": "Caroline"},
    {"role": "assistant", "content": "How was the weather up there?"},
    {"role": "user", "content": "Foggy, but the view at the top was worth it.", "name": "Caroline"},
]
QUERIES = [
    "Ben Nevis hike",
    "what did Caroline say?",
    "weather on the mountain",
    "where does the user live?",
    "chess",
    "parking",
]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def source(tmp_path: Path, clock: FrozenClock) -> Iterator[Memory]:
    """A store holding every kind of row and history (see ``_fill``)."""
    llm = FakeLLM()
    with Memory(tmp_path / "source.db", embedder=HashEmbedder(), llm=llm, clock=clock, config=CONFIG) as m:
        _fill(m, llm, clock)
        yield m


def _fill(m: Memory, llm: FakeLLM, clock: FrozenClock) -> None:
    m.add(CHAT, user_id="alice", infer=False, timestamp="2026-05-10T18:00:00+02:00", metadata={"topic": "hiking"})
    m.add("my locker code is 4471", user_id="alice", run_id="gym", infer=False, ttl=3600)
    note = m.add("I prefer window seats", user_id="alice", agent_id="travel", infer=False)["results"][0]["id"]
    m.add("I keep bees", user_id="bob", infer=False, metadata={"n": [1, 2.5], "ok": True})
    gone = m.add("the wifi password is hunter2", user_id="bob", infer=False)["results"][0]["id"]
    secret = m.add("my passport number is X123", user_id="bob", infer=False)["results"][0]["id"]
    llm.queue(FakeLLM.facts("The user lives in Berlin.", sources=[1, 2]))
    coach: dict[str, Any] = {"user_id": "alice", "agent_id": "coach"}
    berlin = m.add("I live in Berlin, near the park.", **coach, timestamp="2025-11-02T10:00:00Z")
    llm.queue(FakeLLM.facts("The user plays chess on Sundays."))
    m.add("Sunday is chess day.", user_id="alice", agent_id="chess", timestamp="2025-12-01T10:00:00Z")
    clock.advance(days=30)
    llm.queue(
        FakeLLM.facts("The user moved to Oslo."),
        FakeLLM.decisions(("f1", "UPDATE", "m1", "The user moved from Berlin to Oslo in May 2026.")),
    )
    m.add("We moved to Oslo this month!", **coach, timestamp="2026-05-20T08:00:00Z")
    llm.queue(FakeLLM.facts("The user quit chess."), FakeLLM.decisions(("f1", "DELETE", "m1")))
    m.add("No more chess for me.", user_id="alice", agent_id="chess", timestamp="2026-05-21T08:00:00Z")
    m.update(note, "I prefer aisle seats", metadata={"changed": True})
    m.delete(gone)
    m.delete(secret, purge=True)
    assert berlin["results"][0]["event"] == "ADD" and llm.pending == 0
    clock.advance(hours=2)  # the locker code has expired by now


def _fresh(tmp_path: Path, clock: FrozenClock, name: str = "target.db", **kwargs: Any) -> Memory:
    kwargs.setdefault("embedder", HashEmbedder())
    return Memory(tmp_path / name, clock=clock, **kwargs)


def _without_id(events: list[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "id"} for e in events]


def _answers(m: Memory, ids: Sequence[str]) -> dict[str, Any]:
    """What the public API answers about a store: the round trip must not change any of it."""
    out: dict[str, Any] = {}
    for user in ("alice", "bob"):
        out[f"get_all {user}"] = m.get_all(user_id=user, limit=1000)
        for q in QUERIES:
            out[f"search {user} {q}"] = m.search(q, user_id=user, explain=True)
            out[f"as_of {user} {q}"] = m.search(q, user_id=user, as_of="2026-01-01T00:00:00Z")
    for mid in ids:
        out[f"history {mid}"] = _without_id(m.history(mid))
        try:
            out[f"get {mid}"] = m.get(mid, include_sources=True)
        except LookupError:
            out[f"get {mid}"] = "not found"
    return out


def _memory_ids(records: list[dict[str, Any]]) -> list[str]:
    ids = [r.get("version_of") or r["id"] for r in records if r["type"] == "memory"]
    return sorted({*ids, *(r["memory_id"] for r in records if r["type"] == "history")})


# -- the round trip ------------------------------------------------------------------------------


def test_round_trip_is_lossless(source: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    records = list(source.export_records())
    header, body = records[0], records[1:]
    assert header == {"type": "memlane-export", "format": 1, "embedder": "hash-embedder-v1", "dimension": 64,
                      "exported_at": "2026-06-11T11:30:00.000000+00:00"}  # fmt: skip
    kinds = [r["type"] for r in body]
    assert kinds == sorted(kinds, key=lambda k: k != "memory")  # memories first, then history
    memories = [r for r in body if r["type"] == "memory"]
    assert all("embedding" not in r and "search_text" not in r for r in memories)
    assert not any(key in r for r in memories for key in CONSOLIDATION_KEYS)  # set only by consolidation
    assert sum(r["version_of"] is not None for r in memories) == 2  # Berlin's old text, the chess fact
    assert any(r["memory"] == "my locker code is 4471" for r in memories)  # expired, still exported
    texts = {r["id"]: r["memory"] for r in memories}
    chat = [texts.get(r["prev_id"]) for r in memories if r["role"] is not None][:3]
    assert chat == [None, CHAT[0]["content"], CHAT[1]["content"]]  # each message follows the one before
    with _fresh(tmp_path, clock) as target:
        progress: list[int] = []
        counts = target.import_records(records, progress=progress.append)
        n_events = sum(len(r["events"]) for r in body if r["type"] == "history")
        assert counts == {"imported": len(memories), "skipped": 0, "history": n_events}
        assert progress == [len(memories)]
        assert list(target.export_records()) == records  # same clock: even exported_at agrees
        ids = _memory_ids(records)
        assert _answers(target, ids) == _answers(source, ids)


def test_round_trip_through_a_jsonl_file_and_small_pages(
    source: Memory, tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = list(source.export_records())
    monkeypatch.setattr(transfer, "PAGE", 2)  # every page boundary: rows, and history split mid-memory
    monkeypatch.setattr(transfer, "EMBED_BATCH", 4)
    assert list(source.export_records()) == expected
    path = tmp_path / "export.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for record in source.export_records():
            f.write(encode_line(record) + "\n")
    with _fresh(tmp_path, clock) as target, path.open(encoding="utf-8") as f:
        progress: list[int] = []
        target.import_records(decode_lines(f), progress=progress.append)
        n = sum(r["type"] == "memory" for r in expected)
        assert progress == [*range(4, n, 4), n]
        assert list(target.export_records()) == expected


def test_export_holds_no_transaction_between_pages(source: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "PAGE", 2)
    records = source.export_records()
    first = [next(records) for _ in range(3)]
    source.add("written while exporting", user_id="carol", infer=False)  # a write needs no open read
    rest = list(records)
    assert first[0]["type"] == "memlane-export" and len(rest) > 10
    assert any(r.get("memory") == "written while exporting" for r in rest)  # later pages see it


def test_import_into_another_embedder_re_embeds(source: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    records = list(source.export_records())
    small = HashEmbedder(dimension=32, model_id="hash-32")
    with _fresh(tmp_path, clock, embedder=small) as target:
        target.import_records(records)
        assert small.calls == 1
        again = list(target.export_records())
        assert again[0]["embedder"] == "hash-32" and again[0]["dimension"] == 32
        assert again[1:] == records[1:]
        hit = target.search("Ben Nevis hike", user_id="alice")["results"][0]
        assert hit["memory"] == CHAT[0]["content"]
        then = target.search("where does the user live? Berlin", agent_id="coach", as_of="2026-01-01T00:00:00Z")
        assert [h["memory"] for h in then["results"]] == ["The user lives in Berlin."]


def test_scoped_export_contains_only_the_scope(source: Memory) -> None:
    for scope in ({"user_id": "bob"}, {"user_id": "alice", "agent_id": "coach"}, {"run_id": "gym"}):
        records = list(source.export_records(**scope))
        body = records[1:]
        assert body, scope
        for r in body:
            rows = r["events"] if r["type"] == "history" else [r]
            assert all(row[k] == v for row in rows for k, v in scope.items()), (scope, r)
    bob = list(source.export_records(user_id="bob"))
    assert {r["memory"] for r in bob if r["type"] == "memory"} == {"I keep bees"}
    deleted = [r for r in bob if r["type"] == "history" and r["events"][-1]["event"] == "DELETE"]
    assert len(deleted) == 2  # deleted memories keep their history, the purged one redacted
    assert any(all(e["redacted"] and e["old_memory"] is None for e in r["events"]) for r in deleted)
    assert list(source.export_records(user_id="nobody"))[1:] == []
    with pytest.raises(InvalidRequest, match="user_id"):
        source.export_records(user_id="")


# -- conflicts and validation ---------------------------------------------------------------------


def test_conflicts_refuse_or_skip(source: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    records = list(source.export_records())
    with _fresh(tmp_path, clock) as target:
        target.import_records(records)
        target.add("a memory of its own", user_id="dana", infer=False)
        before = list(target.export_records())
        with pytest.raises(MemoryConflict, match="already exists in this store"):
            target.import_records(records)
        counts = target.import_records(records, on_conflict="skip")
        # Every row is skipped, and so is every deleted memory (it has history only).
        rows = [r for r in records if r["type"] == "memory"]
        history_only = set(_memory_ids(records)) - {r["version_of"] or r["id"] for r in rows}
        assert counts == {"imported": 0, "skipped": len(rows) + len(history_only), "history": 0}
        assert len(history_only) == 2
        assert list(target.export_records()) == before
    twin = {**next(r for r in records if r.get("memory") == "I keep bees"), "id": "another-id"}
    new = {**twin, "id": "new-id", "memory": "I keep wasps", "hash": None}
    with _fresh(tmp_path, clock, "other.db") as target:
        target.add("I keep bees", user_id="bob", infer=False)
        with pytest.raises(MemoryConflict, match="another-id"):
            target.import_records([new, twin])
        assert target.import_records([new, twin], on_conflict="skip") == {"imported": 1, "skipped": 1, "history": 0}
        assert [h["memory"] for h in target.get_all(user_id="bob")["results"]] == ["I keep bees", "I keep wasps"]
        with pytest.raises(InvalidRequest, match="on_conflict"):
            target.import_records([], on_conflict="overwrite")


CONSOLIDATION_KEYS = ("state", "merged_into", "summarises", "retrievals", "last_retrieved")
BAD: list[tuple[str, Any, str]] = [
    ("timestamp", "yesterday", "record 3: timestamp must be an ISO-8601 time"),
    ("created_at", None, "record 3: created_at must be an ISO-8601 time"),
    ("metadata", {"v": float("nan")}, "record 3: metadata must be JSON"),
    ("user_id", 42, "record 3: user_id must be a string"),
    ("hash", "0" * 64, "record 3: hash does not match"),
    ("conversational", "yes", "record 3: conversational must be true or false"),
    ("valid_until", "2026-01-01T00:00:00Z", "record 3: valid_until and version_of go together"),
    ("state", "deleted", "record 3: state must be 'merged', 'archived' or null"),
    ("state", "archived", "record 3: valid_until is missing: a archived memory has valid_until"),
    ("merged_into", "m-2", "record 3: merged_into is set but state is not 'merged'"),
    ("summarises", "m-2", "record 3: summarises must be a list of strings"),
    ("retrievals", 2, "record 3: last_retrieved is missing"),
    ("retrievals", -1, "record 3: retrievals must be a positive integer"),
    ("last_retrieved", "2026-01-01T00:00:00Z", "record 3: retrievals must be a positive integer"),
    ("sources", [{"role": "user", "content": "x"}], "record 3: sources\\[0\\]: timestamp must be"),
    ("colour", "red", "record 3: unknown field"),
    ("type", "memories", "record 3: type must be"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_record_imports_nothing_and_is_named(
    source: Memory, tmp_path: Path, clock: FrozenClock, field: str, value: Any, message: str
) -> None:
    records = list(source.export_records())
    records[2] = {**records[2], field: value}
    with _fresh(tmp_path, clock) as target:
        with pytest.raises(InvalidRequest, match=message):
            target.import_records(records)
        assert list(target.export_records())[1:] == []


def test_header_and_history_validation(source: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    records = list(source.export_records())
    history = next(i for i, r in enumerate(records) if r["type"] == "history" and r["events"][0]["new_memory"])
    event = records[history]["events"][0]
    cases: list[tuple[list[Any], str]] = [
        ([{**records[0], "format": 2}, *records[1:]], "record 1: format is 2"),
        ([*records[1:3], records[0]], "record 3: the memlane-export header may only be the first record"),
        ([records[1], records[1]], "record 2: id .* already came in record 1"),
        ([{**records[history], "events": [{**event, "event": "MOVE"}]}], "record 1: events\\[0\\]: event must be"),
        ([{**records[history], "events": [{**event, "redacted": True}]}], "record 1: events\\[0\\]: redacted is true"),
        ([{**records[history], "events": []}], "record 1: events must be a non-empty list"),
        ([records[1], "not a dict"], "record 2: must be a JSON object"),
    ]
    with _fresh(tmp_path, clock) as target:
        for bad, message in cases:
            with pytest.raises(InvalidRequest, match=message):
                target.import_records(bad)
        with pytest.raises(InvalidRequest, match="iterable of record dicts"):
            target.import_records(encode_line(records[1]))  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match="line 2: not valid JSON"):
            list(decode_lines(['{"type": "memory"}', "{oops"]))
        assert target.import_records(records[:1]) == {"imported": 0, "skipped": 0, "history": 0}
        counts = target.import_records(records[1:])  # the header is optional
        assert counts["imported"] == sum(r["type"] == "memory" for r in records)


def test_minimal_records_take_defaults(tmp_path: Path, clock: FrozenClock) -> None:
    with _fresh(tmp_path, clock) as target:
        tea = {
            "type": "memory",
            "id": "m1",
            "memory": "I like tea",
            "user_id": "u",
            "created_at": "2026-01-01T10:00+02:00",
        }
        event = {"event": "ADD", "new_memory": "I like tea", "created_at": "2026-01-01T08:00:00Z"}
        target.import_records([tea, {"type": "history", "memory_id": "m1", "events": [event]}])
        item = target.get("m1")
        assert item["created_at"] == item["updated_at"] == item["timestamp"] == "2026-01-01T08:00:00.000000+00:00"
        assert (item["metadata"], item["role"], item["actor_id"], item["expires_at"]) == ({}, None, None, None)
        assert target.history("m1")[0]["effective_at"] == "2026-01-01T08:00:00.000000+00:00"
        assert target.search("tea", user_id="u")["results"][0]["id"] == "m1"


# -- all or nothing -------------------------------------------------------------------------------


def test_a_failed_write_imports_nothing(source: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    records = list(source.export_records())
    last_history = [r for r in records if r["type"] == "history"][-1]["memory_id"]
    with _fresh(tmp_path, clock) as target:
        target.get_all(user_id="x")  # creates the file
        # The database refuses the very last history event: every memory row is written by then.
        with closing(sqlite3.connect(tmp_path / "target.db")) as conn:
            conn.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON history WHEN NEW.memory_id = '{last_history}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        with pytest.raises(StoreError, match="rolled back"):
            target.import_records(records)
        assert list(target.export_records())[1:] == []
        assert target.search("Ben Nevis", user_id="alice")["results"] == []  # the vector cache agrees
        with closing(sqlite3.connect(tmp_path / "target.db")) as conn:
            conn.execute("DROP TRIGGER refuse")
        target.import_records(records)
        assert list(target.export_records()) == records


class _FailingEmbedder(HashEmbedder):
    """Fails on its second call, as a remote embedder might mid-import."""

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        if self.calls == 1:
            raise ProviderError("the embedding service went away", provider="test")
        return super().embed(texts, kind=kind)


def test_an_embedder_failure_imports_nothing(
    source: Memory, tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = list(source.export_records())
    monkeypatch.setattr(transfer, "EMBED_BATCH", 3)
    with _fresh(tmp_path, clock, embedder=_FailingEmbedder()) as target:
        progress: list[int] = []
        with pytest.raises(ProviderError):
            target.import_records(records, progress=progress.append)
        assert progress == [3]
        assert list(target.export_records())[1:] == []


# -- async -------------------------------------------------------------------------------------------


async def test_async_twins(source: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    expected = list(source.export_records(user_id="alice"))
    async with AsyncMemory(memory=source) as amem:
        got = [r async for r in amem.export_records(user_id="alice")]
    assert got == expected
    async with AsyncMemory(tmp_path / "async.db", embedder=HashEmbedder(), clock=clock) as target:

        async def stream() -> Any:
            for record in got:
                yield record

        counts = await target.import_records(stream())
        assert counts["imported"] == sum(r["type"] == "memory" for r in got)
        assert [r async for r in target.export_records()] == expected
        assert (await target.import_records(got, on_conflict="skip"))["imported"] == 0
        with pytest.raises(InvalidRequest, match="record 1"):
            await target.import_records([{"type": "memory"}])


def test_records_are_json_lines(source: Memory) -> None:
    for record in source.export_records():
        assert json.loads(encode_line(record)) == record


# -- graph records (entities, relations) ----------------------------------------------------------


def _fact(text: str, entities: list[tuple[str, str]], relations: list[tuple[str, str, str, bool]]) -> dict[str, Any]:
    """One extracted fact naming entities and stating relations, as the model answers it."""
    return {
        "text": text,
        "from": [1],
        "entities": [{"name": n, "type": t} for n, t in entities],
        "relations": [{"subject": s, "predicate": p, "object": o, "exclusive": x} for s, p, o, x in relations],
    }


@pytest.fixture
def graph(tmp_path: Path, clock: FrozenClock) -> Iterator[Memory]:
    """A store whose facts name people and places in two scopes, with a relation closed by a later one."""
    llm = FakeLLM()
    with Memory(tmp_path / "graph.db", embedder=HashEmbedder(), llm=llm, clock=clock, config=CONFIG) as m:
        people = [("Alice", "person"), ("Bob", "person")]
        llm.queue({"facts": [_fact("Alice manages Bob.", people, [("Alice", "manages", "Bob", False)]),
                             _fact("Alice lives in Paris.", [("Alice", "person"), ("Paris", "place")],
                                   [("Alice", "lives_in", "Paris", True)])]})  # fmt: skip
        m.add("Alice manages Bob, and she lives in Paris.", user_id="u1", timestamp="2026-01-01T00:00:00Z")
        clock.advance(days=1)
        rome = _fact(
            "Alice moved to Rome.", [("Alice", "person"), ("Rome", "place")], [("Alice", "lives_in", "Rome", True)]
        )
        llm.queue({"facts": [rome]}, FakeLLM.decisions(("f1", "ADD")))
        m.add("Alice moved to Rome.", user_id="u1", timestamp="2026-02-01T00:00:00Z")
        llm.queue({"facts": [_fact("Alice is a chess coach.", [("Alice", "person")], [])]})
        m.add("My friend Alice coaches chess.", user_id="u2")
        assert llm.pending == 0
        yield m


def test_graph_records_round_trip(graph: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    records = list(graph.export_records())
    kinds = [r["type"] for r in records[1:]]
    order = ["memory", "entity", "relation", "history"]
    assert kinds == sorted(kinds, key=order.index) and set(kinds) == set(order)
    entities = [r for r in records if r["type"] == "entity"]
    relations = [r for r in records if r["type"] == "relation"]
    assert sorted((r["name"], r["user_id"]) for r in entities) == [
        ("Alice", "u1"), ("Alice", "u2"), ("Bob", "u1"), ("Paris", "u1"), ("Rome", "u1"),
    ]  # fmt: skip
    assert all(r["entity_type"] in ("person", "place") and r["memories"] for r in entities)
    paris = next(r for r in relations if r["valid_until"] is not None)
    assert (paris["predicate"], paris["valid_until"]) == ("lives_in", "2026-02-01T00:00:00.000000+00:00")
    with _fresh(tmp_path, clock) as target:
        target.import_records(records)
        assert list(target.export_records()) == records
    # Ids are kept; a second import into the same store conflicts, or skips every graph record.
    with _fresh(tmp_path, clock, name="again.db") as again:
        again.import_records(records)
        with pytest.raises(MemoryConflict):
            again.import_records(entities[:1])
        assert again.import_records(records, on_conflict="skip")["imported"] == 0
        assert list(again.export_records()) == records


def test_graph_records_in_a_later_batch_link_to_memories_already_imported(
    graph: Memory, tmp_path: Path, clock: FrozenClock
) -> None:
    """How a batched copy moves them: memories (and history) first, the graph in a last transaction."""
    records = list(graph.export_records())
    first = [r for r in records if r["type"] not in ("entity", "relation")]
    last = [r for r in records if r["type"] in ("entity", "relation")]
    with _fresh(tmp_path, clock) as target:
        target.import_records(first)
        target.import_records(last)
        assert list(target.export_records()) == records


def test_graph_records_scoped_export(graph: Memory) -> None:
    records = list(graph.export_records(user_id="u2"))
    graph_records = [r for r in records if r["type"] in ("entity", "relation")]
    assert [(r["type"], r.get("name"), r["user_id"]) for r in graph_records] == [("entity", "Alice", "u2")]


GRAPH_BAD = [
    ("entity", {"name": ""}, "record N: name must be a non-empty string"),
    ("entity", {"user_id": None}, "record N: user_id is missing: an entity needs"),
    ("entity", {"aliases": "Al"}, "record N: aliases must be a list of strings"),
    ("entity", {"user_id": "u2"}, "record N: entity .* names memory .* of another scope"),
    ("entity", {"colour": "red"}, "record N: unknown field"),
    ("relation", {"predicate": "Lives In"}, "record N: predicate must be a normalised predicate"),
    ("relation", {"valid_from": "yesterday"}, "record N: valid_from must be an ISO-8601 time"),
    ("relation", {"valid_until": "2000-01-01T00:00:00Z"}, "record N: valid_until is before valid_from"),
    ("relation", {"user_id": "u2"}, "record N: relation .* is an entity of another scope"),
]


@pytest.mark.parametrize(("kind", "change", "message"), GRAPH_BAD, ids=[f"{b[0]}-{b[2][10:30]}" for b in GRAPH_BAD])
def test_a_bad_graph_record_imports_nothing_and_is_named(
    graph: Memory, tmp_path: Path, clock: FrozenClock, kind: str, change: dict[str, Any], message: str
) -> None:
    records = list(graph.export_records())
    number = next(i for i, r in enumerate(records) if r["type"] == kind and r["user_id"] == "u1")
    records[number] = {**records[number], **change}
    with _fresh(tmp_path, clock) as target:
        with pytest.raises(InvalidRequest, match=message.replace("record N", f"record {number + 1}")):
            target.import_records(records)
        assert list(target.export_records())[1:] == []


def test_graph_record_ids_are_unique_in_an_import(graph: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    records = list(graph.export_records())
    entity = next(r for r in records if r["type"] == "entity")
    with (
        _fresh(tmp_path, clock) as target,
        pytest.raises(InvalidRequest, match=r"record 2: entity id .* came in record 1"),
    ):
        target.import_records([entity, entity])


def test_graph_links_to_rows_held_nowhere_are_left_out(graph: Memory, tmp_path: Path, clock: FrozenClock) -> None:
    """An export of a store in use may name a memory added after its memory pages were read."""
    records = list(graph.export_records())
    late = next(i for i, r in enumerate(records) if r["type"] == "relation")
    records[late] = {**records[late], "memory_id": "added-while-exporting"}
    alice = next(i for i, r in enumerate(records) if r["type"] == "entity" and r["name"] == "Alice")
    records[alice] = {**records[alice], "memories": [*records[alice]["memories"], "added-while-exporting"]}
    with _fresh(tmp_path, clock) as target:
        target.import_records(records)
        exported = list(target.export_records())
    assert [r for r in exported if r["type"] == "relation"] == [
        r for i, r in enumerate(records) if r["type"] == "relation" and i != late
    ]
    kept = next(r for r in exported if r["type"] == "entity" and r["id"] == records[alice]["id"])
    assert kept["memories"] == records[alice]["memories"][:-1]


# -- consolidation: merged and archived memories, summaries, access statistics ---------------------
DIET = {"user_id": "alice", "agent_id": "diet"}


def _summary(text: str, when: datetime) -> NewMemory:
    """An episodic memory as consolidation writes one (summaries need an LLM: written directly here)."""
    return NewMemory(
        id=str(uuid.uuid4()), memory=text, search_text=analyse(text), hash=content_hash(text),
        embedding=HashEmbedder().embed([text])[0], user_id="alice", agent_id="diet", run_id=None, role=None,
        actor_id=None, metadata={"memory_type": "episodic"}, created_at=to_iso(when), timestamp=to_iso(when),
        expires_at=None,
    )  # fmt: skip


def consolidate(m: Memory, store: Store, clock: FrozenClock) -> dict[str, str]:
    """Give ``m`` (on ``store``) a merged, an archived and a summarised memory and search statistics."""
    ids = {"parking": m.add("old parking spot 7", **DIET, infer=False)["results"][0]["id"]}
    clock.advance(days=40)  # the parking spot is idle past archive_after_days by the pass
    for name, text in [("kept", "I love sushi"), ("dup", "i love sushi!"), ("walk", "walked the dog at dawn"),
                       ("run", "went for a run at noon")]:  # fmt: skip
        ids[name] = m.add(text, **DIET, infer=False)["results"][0]["id"]
    assert m.search("sushi", **DIET, limit=1)["results"]  # counted: consolidate writes the counts first
    report = m.consolidate(**DIET)
    assert [(x["into"], x["ids"]) for x in report["merged"]] == [(ids["kept"], [ids["dup"]])]
    assert [x["id"] for x in report["archived"]] == [ids["parking"]]
    summary = _summary("Walked the dog and went running", clock())
    assert store.add_summary(summary, [ids["walk"], ids["run"]], clock()) == [ids["walk"], ids["run"]]
    ids["summary"] = summary.id
    return ids


@pytest.fixture
def consolidated(tmp_path: Path, clock: FrozenClock) -> Iterator[tuple[Memory, dict[str, str]]]:
    """The ``source`` store's kinds of rows, plus what consolidation writes."""
    llm = FakeLLM()
    path = tmp_path / "consolidated.db"
    with Memory(path, embedder=HashEmbedder(), llm=llm, clock=clock, config=CONFIG) as m:
        _fill(m, llm, clock)
    store = SQLiteStore(path, busy_timeout=5.0, durability="normal")
    config = {"consolidation": {"archive_after_days": 30}}
    with Memory(store=store, embedder=HashEmbedder(), clock=clock, config=config) as m:
        yield m, consolidate(m, store, clock)


def _consolidation_answers(m: Memory, ids: dict[str, str]) -> dict[str, Any]:
    return {
        "search": m.search("sushi parking dog", **DIET)["results"],
        "all": m.get_all(**DIET, include_merged=True, include_archived=True)["results"],
        **{name: m.get(mid) for name, mid in ids.items()},
        **{f"history {name}": _without_id(m.history(mid)) for name, mid in ids.items()},
    }


def test_a_consolidated_store_round_trips_across_backends(
    consolidated: tuple[Memory, dict[str, str]], tmp_path: Path, clock: FrozenClock, postgres_url: str
) -> None:
    source, ids = consolidated
    records = list(source.export_records())
    rows = {r["id"]: r for r in records if r["type"] == "memory"}
    merged, parking = rows[ids["dup"]], rows[ids["parking"]]
    assert (merged["state"], merged["merged_into"], merged["version_of"]) == ("merged", ids["kept"], None)
    assert merged["valid_until"] is not None and parking["state"] == "archived" and "merged_into" not in parking
    assert rows[ids["summary"]]["summarises"] == sorted([ids["walk"], ids["run"]])
    assert rows[ids["kept"]]["retrievals"] >= 1 and rows[ids["kept"]]["last_retrieved"]
    events = {e["event"] for r in records if r["type"] == "history" for e in r["events"]}
    assert {"MERGE", "ARCHIVE"} <= events
    expected = _consolidation_answers(source, ids)
    found = [h["id"] for h in expected["search"]]
    assert ids["kept"] in found and ids["dup"] not in found and ids["parking"] not in found  # hidden from search
    assert expected["dup"]["state"] == "merged" and expected["parking"]["state"] == "archived"  # get finds them
    with Memory(store=PostgresStore(postgres_url), embedder=HashEmbedder(), clock=clock) as there:
        counts = there.import_records(records)
        assert counts["imported"] == len(rows) and counts["skipped"] == 0
        assert list(there.export_records()) == records
        assert _consolidation_answers(there, ids) == expected
        back = list(there.export_records())
    with _fresh(tmp_path, clock, "back.db") as again:
        again.import_records(back)
        assert list(again.export_records()) == records
        assert _consolidation_answers(again, ids) == expected
        # Only active memories hold their text: the merged one's may be added again.
        assert again.add("i love sushi!", **DIET, infer=False)["results"][0]["event"] == "ADD"


def test_a_merged_into_across_scopes_is_refused_by_record(
    consolidated: tuple[Memory, dict[str, str]], tmp_path: Path, clock: FrozenClock
) -> None:
    source, ids = consolidated
    records = list(source.export_records())
    bees = next(r["id"] for r in records if r.get("memory") == "I keep bees")
    number = next(i for i, r in enumerate(records) if r.get("id") == ids["dup"])
    bad = [{**r, "merged_into": bees} if i == number else r for i, r in enumerate(records)]
    with _fresh(tmp_path, clock) as target:
        with pytest.raises(InvalidRequest, match=f"record {number + 1}: merged_into names memory '{bees}' of another"):
            target.import_records(bad)
        summary = next(i for i, r in enumerate(records) if r.get("id") == ids["summary"])
        bad = [{**r, "summarises": [bees]} if i == summary else r for i, r in enumerate(records)]
        with pytest.raises(InvalidRequest, match=f"record {summary + 1}: summarises names memory"):
            target.import_records(bad)
        assert list(target.export_records())[1:] == []
        # A link to a memory held nowhere is left out, as graph links are.
        gone = [{**r, "summarises": [*r["summarises"], "gone"]} if i == summary else r for i, r in enumerate(records)]
        target.import_records(gone)
        assert list(target.export_records()) == records


def test_old_rules_still_hold_without_a_state(
    consolidated: tuple[Memory, dict[str, str]], tmp_path: Path, clock: FrozenClock
) -> None:
    """A row with valid_until and no version_of is refused unless it has a state; MERGE/ARCHIVE events load."""
    source, ids = consolidated
    records = list(source.export_records())
    number = next(i for i, r in enumerate(records) if r.get("id") == ids["dup"])
    stateless = {k: v for k, v in records[number].items() if k not in ("state", "merged_into")}
    with _fresh(tmp_path, clock) as target:
        with pytest.raises(InvalidRequest, match=f"record {number + 1}: valid_until and version_of go together"):
            target.import_records([*records[:number], stateless, *records[number + 1 :]])
        history = [r for r in records if r["type"] == "history" and r["memory_id"] in (ids["dup"], ids["parking"])]
        assert target.import_records(history) == {"imported": 0, "skipped": 0, "history": 4}
