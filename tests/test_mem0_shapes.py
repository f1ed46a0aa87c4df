"""mem0 2.x call shapes on every face of the API (Memory on SQLite and PostgreSQL, MemoryClient over HTTP).

Each mem0 name behaves exactly like the memlane argument it maps to (checked against the
memlane call on the same store); giving both names is refused; a mem0 argument with no memlane
meaning is refused with a message naming what to do instead, and writes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from memlane import AsyncMemory, InvalidRequest, Memory, MemoryConfig
from memlane.core.compat import UNMAPPED, expiry_of_date
from memlane.errors import ConfigError
from memlane.testing import FrozenClock, HashEmbedder

TEXTS = [f"note {i}: the user likes {food}" for i, food in enumerate(["tea", "coffee", "rice", "figs", "kale"])]


def _fill(memory: Memory, user: str = "alice") -> list[str]:
    return [memory.add(t, user_id=user, infer=False)["results"][0]["id"] for t in TEXTS]


def _ids(result: dict[str, Any]) -> list[str]:
    return [r["id"] for r in result["results"]]


def test_top_k_is_limit_in_search_and_get_all(memory: Memory) -> None:
    _fill(memory)
    for k in (1, 3):
        assert _ids(memory.search("likes", filters={"user_id": "alice"}, top_k=k)) == _ids(
            memory.search("likes", user_id="alice", limit=k)
        )
        assert _ids(memory.get_all(filters={"user_id": "alice"}, top_k=k)) == _ids(
            memory.get_all(user_id="alice", limit=k)
        )
    assert len(memory.search("likes", user_id="alice", top_k=2)["results"]) == 2


@pytest.mark.parametrize("operation", ["search", "get_all"])
def test_top_k_and_limit_together_is_an_error(memory: Memory, operation: str) -> None:
    _fill(memory)
    args = ("likes",) if operation == "search" else ()
    with pytest.raises(InvalidRequest, match="limit or top_k"):
        getattr(memory, operation)(*args, user_id="alice", limit=2, top_k=2)


def test_expiration_date_hides_the_memory_from_the_next_day(memory: Memory, clock: FrozenClock) -> None:
    today = clock().date()
    kept = memory.add("green tea every morning", user_id="alice", expiration_date=today.isoformat(), infer=False)
    other = memory.add("black coffee at noon", user_id="alice", infer=False)
    item = memory.get(kept["results"][0]["id"])
    assert item["expires_at"] == expiry_of_date(today).isoformat(timespec="microseconds")
    assert len(memory.get_all(user_id="alice")["results"]) == 2  # still today
    clock.advance(days=1)
    visible = memory.get_all(user_id="alice")
    assert _ids(visible) == [other["results"][0]["id"]]
    assert "green tea every morning" not in [r["memory"] for r in memory.search("tea", user_id="alice")["results"]]
    # show_expired brings it back, in search and get_all alike.
    assert len(memory.get_all(user_id="alice", show_expired=True)["results"]) == 2
    found = memory.search("green tea", user_id="alice", show_expired=True)["results"]
    assert found[0]["memory"] == "green tea every morning"


def test_expiration_date_and_expires_at_together_is_an_error(memory: Memory) -> None:
    with pytest.raises(InvalidRequest, match="expiration_date"):
        memory.add("x", user_id="alice", expiration_date="2030-01-01", expires_at="2030-01-01T00:00:00Z")
    assert memory.get_all(user_id="alice")["results"] == []


@pytest.mark.parametrize("bad", ["31/12/2030", "2030-02-30", "soon", 20301231])
def test_a_malformed_expiration_date_is_refused(memory: Memory, bad: object) -> None:
    with pytest.raises(InvalidRequest, match="expiration_date"):
        memory.add("x", user_id="alice", expiration_date=bad)


def test_update_with_mem0_names(memory: Memory, clock: FrozenClock) -> None:
    (first, *_) = _fill(memory)
    memory.update(first, text="the user loves oolong tea")
    assert memory.get(first)["memory"] == "the user loves oolong tea"
    # metadata only: the text stays, the metadata is replaced
    memory.update(first, metadata={"source": "chat"})
    item = memory.get(first)
    assert (item["memory"], item["metadata"]) == ("the user loves oolong tea", {"source": "chat"})
    # expiry only, then cleared
    memory.update(first, expiration_date=clock().date().isoformat())
    assert memory.get(first)["expires_at"] is not None
    clock.advance(days=1)
    assert first not in _ids(memory.get_all(user_id="alice"))
    memory.update(first, expiration_date=None)
    assert memory.get(first)["expires_at"] is None
    assert first in _ids(memory.get_all(user_id="alice"))
    assert [e["event"] for e in memory.history(first)] == ["ADD", "UPDATE", "UPDATE", "UPDATE", "UPDATE"]


def test_update_refuses_two_names_or_nothing(memory: Memory) -> None:
    (first, *_) = _fill(memory)
    with pytest.raises(InvalidRequest, match="data or text"):
        memory.update(first, "a", text="b")
    with pytest.raises(InvalidRequest, match="expires_at or expiration_date"):
        memory.update(first, expires_at=None, expiration_date=None)
    with pytest.raises(InvalidRequest, match="needs data"):
        memory.update(first)
    assert [e["event"] for e in memory.history(first)] == ["ADD"]


def test_reference_date_moves_recency_not_visibility(memory: Memory, clock: FrozenClock) -> None:
    memory.add("trip to Lisbon planned", user_id="alice", infer=False, timestamp="2026-01-01T00:00:00Z")
    memory.add("trip to Porto planned", user_id="alice", infer=False, timestamp="2026-06-01T00:00:00Z")
    clock.advance(days=200)  # July 2026

    def order(**kwargs: Any) -> list[str]:
        hits = memory.search("trip planned", user_id="alice", recency_weight=2.0, **kwargs)["results"]
        return [h["memory"] for h in hits]

    assert order()[0] == "trip to Porto planned"  # now: the June note is the recent one
    # Seen from January, the January note is the recent one; both are still returned.
    assert order(reference_date="2026-01-02") == ["trip to Lisbon planned", "trip to Porto planned"]
    assert order(reference_date=date(2026, 1, 2)) == order(reference_date="2026-01-02")
    with pytest.raises(InvalidRequest, match="reference_date"):
        memory.search("trip", user_id="alice", reference_date="next tuesday")


def test_rerank_is_accepted_and_changes_nothing(memory: Memory) -> None:
    _fill(memory)
    assert memory.search("tea", user_id="alice", rerank=True) == memory.search("tea", user_id="alice")
    with pytest.raises(InvalidRequest, match="rerank"):
        memory.search("tea", user_id="alice", rerank="yes")


@pytest.mark.parametrize(
    ("operation", "name"),
    [("search", "categories"), ("search", "fields"), ("search", "keyword_search"), ("get_all", "page"),
     ("get_all", "start_date"), ("add", "custom_categories"), ("add", "async_mode"), ("delete", "delete_linked")],
)  # fmt: skip
def test_mem0_arguments_without_meaning_are_refused_with_the_way_out(memory: Memory, operation: str, name: str) -> None:
    (first, *_) = _fill(memory)
    before = memory.get_all(user_id="alice")
    args: dict[str, tuple[Any, ...]] = {"search": ("tea",), "get_all": (), "add": ("x",), "delete": (first,)}
    scope = {} if operation == "delete" else {"user_id": "alice"}
    with pytest.raises(InvalidRequest) as info:
        getattr(memory, operation)(*args[operation], **scope, **{name: True})
    assert name in str(info.value) and UNMAPPED[name] in str(info.value)
    assert memory.get_all(user_id="alice") == before


def test_custom_instructions_is_instructions_and_needs_an_llm(memory: Memory) -> None:
    with pytest.raises(InvalidRequest, match="need an LLM"):
        memory.add("x", user_id="alice", custom_instructions="only food", infer=False)
    with pytest.raises(InvalidRequest, match="instructions or custom_instructions"):
        memory.add("x", user_id="alice", instructions="a", custom_instructions="b", infer=False)


async def test_async_memory_takes_the_same_shapes(async_memory: AsyncMemory) -> None:
    for text in TEXTS:
        await async_memory.add(text, user_id="alice", infer=False, expiration_date="2099-12-31")
    found = await async_memory.search("likes", filters={"user_id": "alice"}, top_k=2, rerank=False)
    assert len(found["results"]) == 2
    listed = await async_memory.get_all(filters={"user_id": "alice"}, top_k=3, show_expired=True)
    assert len(listed["results"]) == 3
    first = listed["results"][0]["id"]
    await async_memory.update(first, text="changed")
    assert (await async_memory.get(first))["memory"] == "changed"
    with pytest.raises(InvalidRequest, match="page"):
        await async_memory.get_all(user_id="alice", page=2)


@pytest.mark.parametrize(
    ("section", "match"),
    [({"reranker": {"provider": "cohere", "config": {}}}, "no separate reranker"),
     ({"graph_store": {"provider": "neo4j", "config": {}}}, "graph memory"),
     ({"vector_store": {"provider": "qdrant", "config": {"path": "/tmp/qdrant"}}}, "import-mem0"),
     ({"history_db_path": "/tmp/history.db"}, "history_db_path")],
)  # fmt: skip
def test_mem0_config_sections_without_counterpart_say_what_to_do(section: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MemoryConfig.from_dict(section)


def test_expiry_of_date_is_the_start_of_the_next_utc_day() -> None:
    assert expiry_of_date("2026-12-31") == datetime(2027, 1, 1, tzinfo=UTC)
    assert expiry_of_date(date(2026, 2, 28)) == datetime(2026, 3, 1, tzinfo=UTC)
    # a datetime counts by its (UTC) date, as mem0 does
    assert expiry_of_date(datetime(2026, 5, 4, 23, 30, tzinfo=UTC)) == datetime(2026, 5, 5, tzinfo=UTC)
    with pytest.raises(InvalidRequest):
        expiry_of_date("9999-12-31")


def test_an_unknown_argument_is_still_a_type_error(tmp_path: Any) -> None:
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory, pytest.raises(TypeError, match="colour"):
        memory.search("x", user_id="a", colour="red")


def test_system_messages_are_not_remembered(memory: Memory) -> None:
    prompt = [
        {"role": "system", "content": "You are helpful. User Memories:\n- likes tea"},
        {"role": "user", "content": "I adopted a cat named Miso"},
    ]
    result = memory.add(prompt, user_id="alice", infer=False)
    assert [r["memory"] for r in result["results"]] == ["I adopted a cat named Miso"]
    with pytest.raises(InvalidRequest, match="only system messages"):
        memory.add([{"role": "system", "content": "be brief"}], user_id="alice", infer=False)
    assert [r["memory"] for r in memory.get_all(user_id="alice")["results"]] == ["I adopted a cat named Miso"]


def test_delete_all_refuses_mem0_ids_it_cannot_honour(memory: Memory) -> None:
    _fill(memory)
    with pytest.raises(InvalidRequest, match="app_id"):  # ignoring it would widen the delete to all of alice
        memory.delete_all(user_id="alice", app_id="shop")
    assert len(memory.get_all(user_id="alice")["results"]) == len(TEXTS)
