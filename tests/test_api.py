"""The public API of ``Memory``: result shapes, add/update/delete/history, time, search knobs, errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import memlane
from memlane import (
    ConfigError,
    EmbedderMismatch,
    InvalidFilter,
    InvalidRequest,
    LLMRequired,
    MemlaneError,
    Memory,
    MemoryNotFound,
    ScopeConflict,
    ScopeRequired,
)
from memlane.testing import FrozenClock, HashEmbedder

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ITEM_KEYS = {
    "id",
    "memory",
    "hash",
    "user_id",
    "agent_id",
    "run_id",
    "role",
    "actor_id",
    "metadata",
    "created_at",
    "updated_at",
    "timestamp",
    "expires_at",
}
HISTORY_KEYS = {
    "id",
    "memory_id",
    "event",
    "old_memory",
    "new_memory",
    "created_at",
    "effective_at",
    "user_id",
    "agent_id",
    "run_id",
    "redacted",
}
EXPLAIN_KEYS = {
    "context",
    "dense",
    "keyword",
    "entity",
    "recency",
    "length",
    "newer",
    "weights",
    "matched_terms",
    "sources",
}


def _utc(value: str) -> datetime:
    """Parse an ISO 8601 string and insist it carries a UTC offset."""
    dt = datetime.fromisoformat(value)
    assert dt.utcoffset() == timedelta(0), value
    return dt


def _add_one(memory: Memory, text: str, **kwargs: Any) -> str:
    result = memory.add(text, **kwargs)
    assert len(result["results"]) == 1
    return result["results"][0]["id"]


def _msgs(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in texts]


def _ids(result: dict[str, Any]) -> list[str]:
    return [item["id"] for item in result["results"]]


# -- return shapes --------------------------------------------------------------------------------


def test_add_returns_mem0_shape(memory: Memory) -> None:
    result = memory.add("I live in Lisbon", user_id="alice")
    assert set(result) == {"results", "mode", "usage"}
    assert result["mode"] == "verbatim"
    [item] = result["results"]
    assert set(item) == {"id", "memory", "event"}
    assert item["memory"] == "I live in Lisbon"
    assert item["event"] == "ADD"
    assert isinstance(item["id"], str) and item["id"]
    json.dumps(result)


def test_get_returns_every_field_with_iso_times(memory: Memory, clock: FrozenClock) -> None:
    mid = _add_one(memory, "I live in Lisbon", user_id="alice", agent_id="travel", run_id="s1")
    item = memory.get(mid)
    assert set(item) == ITEM_KEYS
    assert item["id"] == mid
    assert item["memory"] == "I live in Lisbon"
    assert (item["user_id"], item["agent_id"], item["run_id"]) == ("alice", "travel", "s1")
    assert item["role"] == "user"
    assert item["actor_id"] is None
    assert item["metadata"] == {}
    assert item["expires_at"] is None
    for key in ("created_at", "updated_at", "timestamp"):
        assert _utc(item[key]) == clock.now
    json.dumps(item)


def test_unset_scope_ids_come_back_as_none(memory: Memory) -> None:
    mid = _add_one(memory, "just a user", user_id="alice")
    item = memory.get(mid)
    assert (item["user_id"], item["agent_id"], item["run_id"]) == ("alice", None, None)
    mid = _add_one(memory, "just an agent", agent_id="planner")
    item = memory.get(mid)
    assert (item["user_id"], item["agent_id"], item["run_id"]) == (None, "planner", None)


def test_metadata_comes_back_exactly_as_stored(memory: Memory) -> None:
    meta = {
        "topic": "food",
        "nested": {"list": [1, 2.5, True, None, "é 漢字"], "empty": {}},
        "big": 2**62,
        "negative": -3,
        "flag": False,
        "none": None,
        "empty_list": [],
    }
    mid = _add_one(memory, "I'm vegetarian", user_id="alice", metadata=meta)
    assert memory.get(mid)["metadata"] == meta
    assert memory.get_all(user_id="alice")["results"][0]["metadata"] == meta
    assert memory.search("vegetarian", user_id="alice")["results"][0]["metadata"] == meta


def test_metadata_is_copied_at_add(memory: Memory) -> None:
    meta: dict[str, Any] = {"tags": ["a"]}
    mid = _add_one(memory, "copy me", user_id="alice", metadata=meta)
    meta["tags"].append("b")
    meta["new"] = 1
    assert memory.get(mid)["metadata"] == {"tags": ["a"]}


def test_search_shape_and_scores(memory: Memory) -> None:
    memory.add(_msgs("I'm vegetarian", "I love hiking in the Alps", "My sister lives in Porto"), user_id="alice")
    result = memory.search("vegetarian food", user_id="alice")
    assert set(result) == {"results"}
    hits = result["results"]
    assert hits, "search in a populated scope returned nothing"
    for hit in hits:
        assert set(hit) == ITEM_KEYS | {"score"}
        assert 0.0 <= hit["score"] <= 1.0
        assert hit == {**memory.get(hit["id"]), "score": hit["score"]}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0]["memory"] == "I'm vegetarian"
    json.dumps(result)


def test_get_all_shape_has_no_score(memory: Memory) -> None:
    memory.add(_msgs("one fact", "another fact"), user_id="alice")
    result = memory.get_all(user_id="alice")
    assert set(result) == {"results"}
    assert len(result["results"]) == 2
    for item in result["results"]:
        assert set(item) == ITEM_KEYS


# -- add ------------------------------------------------------------------------------------------


def test_add_dict_message_keeps_role_and_name(memory: Memory) -> None:
    mid = _add_one(memory, {"role": "assistant", "content": "Noted, no meat.", "name": "chef"}, user_id="alice")
    item = memory.get(mid)
    assert item["memory"] == "Noted, no meat."
    assert item["role"] == "assistant"
    assert item["actor_id"] == "chef"


def test_add_list_stores_each_message_verbatim_in_order(memory: Memory) -> None:
    messages = [
        {"role": "user", "content": "I'm allergic to peanuts", "name": "alice"},
        {"role": "assistant", "content": "I'll remember that."},
        {"content": "A message without a role"},
    ]
    result = memory.add(messages, user_id="alice")
    assert [r["memory"] for r in result["results"]] == [m["content"] for m in messages]
    assert [r["event"] for r in result["results"]] == ["ADD", "ADD", "ADD"]
    items = [memory.get(r["id"]) for r in result["results"]]
    assert [(i["role"], i["actor_id"]) for i in items] == [
        ("user", "alice"),
        ("assistant", None),
        ("user", None),
    ]
    assert len(set(_ids(result))) == 3


def test_metadata_applies_to_every_message_of_the_call(memory: Memory) -> None:
    result = memory.add(_msgs("first", "second"), user_id="alice", metadata={"source": "chat"})
    assert [memory.get(i)["metadata"] for i in _ids(result)] == [{"source": "chat"}] * 2


def test_exact_duplicate_in_same_scope_is_not_stored_again(memory: Memory) -> None:
    first = _add_one(memory, "I like green tea", user_id="alice")
    again = memory.add("I like green tea", user_id="alice")
    assert again["results"] == [{"id": first, "memory": "I like green tea", "event": "NONE"}]
    # Whitespace differences are still the same text.
    spaced = memory.add("  I like   green tea ", user_id="alice")
    assert spaced["results"][0]["event"] == "NONE"
    assert spaced["results"][0]["id"] == first
    assert _ids(memory.get_all(user_id="alice")) == [first]
    assert [e["event"] for e in memory.history(first)] == ["ADD"]


def test_duplicate_within_one_call(memory: Memory) -> None:
    result = memory.add(_msgs("I like tea", "something else", "I like tea"), user_id="alice")
    events = [(r["event"], r["memory"]) for r in result["results"]]
    assert events == [("ADD", "I like tea"), ("ADD", "something else"), ("NONE", "I like tea")]
    assert result["results"][2]["id"] == result["results"][0]["id"]
    assert len(memory.get_all(user_id="alice")["results"]) == 2


def test_same_text_in_another_scope_is_a_new_memory(memory: Memory) -> None:
    a = _add_one(memory, "I like tea", user_id="alice")
    b = _add_one(memory, "I like tea", user_id="bob")
    c = _add_one(memory, "I like tea", user_id="alice", run_id="r1")
    d = _add_one(memory, "I like tea", agent_id="barista")
    assert len({a, b, c, d}) == 4
    assert memory.get(b)["user_id"] == "bob"


def test_same_text_from_another_speaker_is_a_new_memory(memory: Memory) -> None:
    result = memory.add(
        [{"content": "I like tea", "name": "bob"}, {"content": "I like tea", "name": "carol"}],
        user_id="alice",
    )
    assert [r["event"] for r in result["results"]] == ["ADD", "ADD"]


def test_infer_false_is_verbatim(memory: Memory) -> None:
    result = memory.add("plain", user_id="alice", infer=False)
    assert result["mode"] == "verbatim"
    assert result["results"][0]["event"] == "ADD"


# -- update -----------------------------------------------------------------------------------------


def test_update_changes_text_and_keeps_history(memory: Memory, clock: FrozenClock) -> None:
    mid = _add_one(memory, "order ZX-4471 shipped", user_id="alice", metadata={"k": 1})
    memory.add("the weather is sunny", user_id="alice")
    clock.advance(hours=1)
    item = memory.update(mid, "order QW-9902 shipped")
    assert item["id"] == mid
    assert item["memory"] == "order QW-9902 shipped"
    assert item["metadata"] == {"k": 1}
    assert _utc(item["created_at"]) == T0
    assert _utc(item["updated_at"]) == T0 + timedelta(hours=1)
    assert memory.get(mid) == item

    events = memory.history(mid)
    assert [e["event"] for e in events] == ["ADD", "UPDATE"]
    assert (events[1]["old_memory"], events[1]["new_memory"]) == (
        "order ZX-4471 shipped",
        "order QW-9902 shipped",
    )
    assert set(events[1]) == HISTORY_KEYS

    new = memory.search("QW-9902", user_id="alice", explain=True)["results"]
    assert new[0]["id"] == mid
    assert "keyword" in new[0]["explain"]["sources"]
    old = memory.search("ZX-4471", user_id="alice", explain=True)["results"]
    assert all("keyword" not in h["explain"]["sources"] for h in old), "old text still in the keyword index"
    assert all("ZX-4471" not in h["memory"] for h in old)


def test_update_replaces_metadata_only_when_given(memory: Memory) -> None:
    mid = _add_one(memory, "text", user_id="alice", metadata={"a": 1})
    assert memory.update(mid, "text two")["metadata"] == {"a": 1}
    assert memory.update(mid, "text three", metadata={"b": [2]})["metadata"] == {"b": [2]}
    assert memory.get(mid)["metadata"] == {"b": [2]}


def test_update_keeps_scope_and_touches_nothing_else(memory: Memory) -> None:
    mid = _add_one(memory, "mine", user_id="alice", agent_id="a1", run_id="r1")
    other = _add_one(memory, "mine too", user_id="alice", agent_id="a1", run_id="r1")
    before = memory.get(other)
    item = memory.update(mid, "changed")
    assert (item["user_id"], item["agent_id"], item["run_id"]) == ("alice", "a1", "r1")
    assert memory.get(other) == before


def test_update_to_a_duplicate_of_another_memory_is_refused(memory: Memory) -> None:
    a = _add_one(memory, "I like tea", user_id="alice")
    b = _add_one(memory, "I like coffee", user_id="alice")
    with pytest.raises(InvalidRequest):
        memory.update(b, "I like tea")
    assert memory.get(b)["memory"] == "I like coffee"
    assert [e["event"] for e in memory.history(b)] == ["ADD"]
    assert memory.get(a)["memory"] == "I like tea"


# -- delete ---------------------------------------------------------------------------------------


def test_delete_removes_everywhere_and_history_keeps_text(memory: Memory) -> None:
    mid = _add_one(memory, "ticket ZX-4471 escalated", user_id="alice")
    keep = _add_one(memory, "the weather is sunny", user_id="alice")
    result = memory.delete(mid)
    assert "message" in result

    with pytest.raises(MemoryNotFound):
        memory.get(mid)
    assert _ids(memory.get_all(user_id="alice")) == [keep]
    for query in ("ZX-4471", "ticket escalated", "ticket ZX-4471 escalated"):
        hits = memory.search(query, user_id="alice", explain=True)["results"]
        assert mid not in [h["id"] for h in hits]
        assert all("keyword" not in h["explain"]["sources"] for h in hits)

    events = memory.history(mid)
    assert [e["event"] for e in events] == ["ADD", "DELETE"]
    assert events[1]["old_memory"] == "ticket ZX-4471 escalated"
    assert events[1]["new_memory"] is None
    assert not any(e["redacted"] for e in events)


def test_delete_is_seen_by_a_second_instance(memory: Memory, reopen: Callable[..., Memory]) -> None:
    mid = _add_one(memory, "ticket ZX-4471 escalated", user_id="alice")
    with reopen(embedder=HashEmbedder(), clock=FrozenClock()) as other:
        assert _ids(other.search("ZX-4471", user_id="alice")) == [mid]
        memory.delete(mid)
        assert other.search("ZX-4471", user_id="alice")["results"] == []
        assert other.get_all(user_id="alice")["results"] == []


def test_delete_twice_is_not_found(memory: Memory) -> None:
    mid = _add_one(memory, "x", user_id="alice")
    memory.delete(mid)
    with pytest.raises(MemoryNotFound):
        memory.delete(mid)


def test_delete_purge_redacts_history(memory: Memory) -> None:
    mid = _add_one(memory, "my PIN is 8812", user_id="alice")
    memory.update(mid, "my PIN is 9923")
    other = _add_one(memory, "unrelated", user_id="alice")
    memory.delete(mid, purge=True)
    events = memory.history(mid)
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "DELETE"]
    for e in events:
        assert e["redacted"] is True
        assert e["old_memory"] is None and e["new_memory"] is None
    assert memory.history(other)[0]["new_memory"] == "unrelated"
    assert memory.history(other)[0]["redacted"] is False


def test_delete_all_purge_redacts_only_that_scope(memory: Memory) -> None:
    a1 = _add_one(memory, "alice secret one", user_id="alice")
    a2 = _add_one(memory, "alice secret two", user_id="alice", run_id="r1")
    b = _add_one(memory, "bob note", user_id="bob")
    memory.delete(a1)  # already deleted, history still holds its text until the purge
    result = memory.delete_all(user_id="alice", purge=True)
    assert result["deleted"] == 1
    for mid in (a1, a2):
        events = memory.history(mid)
        assert events and all(e["redacted"] and e["old_memory"] is None and e["new_memory"] is None for e in events)
    assert memory.history(b) and memory.history(b)[0]["new_memory"] == "bob note"
    assert _ids(memory.get_all(user_id="bob")) == [b]


def test_delete_all_touches_only_its_scope(memory: Memory) -> None:
    alice_run1 = memory.add(_msgs("a", "b"), user_id="alice", run_id="r1")
    alice_run2 = _add_one(memory, "c", user_id="alice", run_id="r2")
    bob = _add_one(memory, "a", user_id="bob", run_id="r1")
    result = memory.delete_all(user_id="alice", run_id="r1")
    assert result["deleted"] == 2
    assert _ids(memory.get_all(user_id="alice")) == [alice_run2]
    assert _ids(memory.get_all(user_id="bob")) == [bob]
    for mid in _ids(alice_run1):
        assert memory.history(mid)[-1]["event"] == "DELETE"
        assert memory.history(mid)[-1]["redacted"] is False
    assert memory.delete_all(user_id="nobody")["deleted"] == 0


def test_history_is_oldest_first(memory: Memory, clock: FrozenClock) -> None:
    mid = _add_one(memory, "v1", user_id="alice")
    for text in ("v2", "v3"):
        clock.advance(minutes=5)
        memory.update(mid, text)
    clock.advance(minutes=5)
    memory.delete(mid)
    events = memory.history(mid)
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "UPDATE", "DELETE"]
    assert [(e["old_memory"], e["new_memory"]) for e in events] == [
        (None, "v1"),
        ("v1", "v2"),
        ("v2", "v3"),
        ("v3", None),
    ]
    assert [_utc(e["created_at"]) for e in events] == [T0 + timedelta(minutes=5 * i) for i in range(4)]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert all(e["memory_id"] == mid and e["user_id"] == "alice" for e in events)


def test_history_of_unknown_id_is_empty(memory: Memory) -> None:
    assert memory.history("no-such-id") == []


def test_reset_empties_everything(memory: Memory, reopen: Callable[..., Memory]) -> None:
    mid = _add_one(memory, "something", user_id="alice")
    memory.add("else", agent_id="a1")
    memory.reset()
    assert memory.get_all(user_id="alice")["results"] == []
    assert memory.get_all(agent_id="a1")["results"] == []
    assert memory.search("something", user_id="alice")["results"] == []
    assert memory.history(mid) == []
    with pytest.raises(MemoryNotFound):
        memory.get(mid)
    again = memory.add("something", user_id="alice")
    assert again["results"][0]["event"] == "ADD"
    assert again["results"][0]["id"] != mid
    memory.reset()
    memory.close()
    # reset also forgets which embedder wrote the file, so another one may take it over.
    with reopen(embedder=HashEmbedder(dimension=32)) as other:
        assert other.get_all(user_id="alice")["results"] == []


def test_embedder_mismatch(memory: Memory, reopen: Callable[..., Memory]) -> None:
    memory.add("x", user_id="alice")
    memory.close()
    other = reopen(embedder=HashEmbedder(dimension=32))
    with pytest.raises(EmbedderMismatch) as info:
        other.get_all(user_id="alice")
    assert isinstance(info.value, MemlaneError)
    assert "hash-embedder-v1" in str(info.value)
    other.close()


# -- time -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (datetime(2024, 5, 1, 9, 30, tzinfo=UTC), datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        (datetime(2024, 5, 1, 9, 30), datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        ("2024-05-01T09:30:00Z", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        ("2024-05-01T11:30:00+02:00", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        (
            datetime(2024, 5, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5))),
            datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        ),
        (1714555800, datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        (1714555800.5, datetime(2024, 5, 1, 9, 30, 0, 500000, tzinfo=UTC)),
    ],
)
def test_timestamp_is_stored_as_timestamp(memory: Memory, given: Any, stored: datetime) -> None:
    mid = _add_one(memory, "it happened", user_id="alice", timestamp=given)
    item = memory.get(mid)
    assert _utc(item["timestamp"]) == stored
    assert _utc(item["created_at"]) == T0  # when it was remembered, not when it happened


def test_expires_at_hides_from_search_and_get_all(memory: Memory, clock: FrozenClock) -> None:
    temp = _add_one(memory, "parking spot B12", user_id="alice", expires_at=T0 + timedelta(hours=1))
    keep = _add_one(memory, "home is in Lisbon", user_id="alice")
    assert _utc(memory.get(temp)["expires_at"]) == T0 + timedelta(hours=1)
    assert temp in _ids(memory.search("parking spot B12", user_id="alice"))
    assert set(_ids(memory.get_all(user_id="alice"))) == {temp, keep}

    clock.advance(minutes=59)
    assert temp in _ids(memory.get_all(user_id="alice"))
    clock.advance(minutes=1)  # at expires_at exactly it is gone
    assert _ids(memory.get_all(user_id="alice")) == [keep]
    assert temp not in _ids(memory.search("parking spot B12", user_id="alice"))
    assert temp not in _ids(memory.search("B12", user_id="alice"))
    # get by id still answers, so an expired memory can be inspected or deleted.
    assert memory.get(temp)["memory"] == "parking spot B12"


@pytest.mark.parametrize("ttl", [90, 90.0, timedelta(seconds=90)])
def test_ttl_sets_expiry_from_now(memory: Memory, clock: FrozenClock, ttl: Any) -> None:
    mid = _add_one(memory, "short lived", user_id="alice", ttl=ttl)
    assert _utc(memory.get(mid)["expires_at"]) == T0 + timedelta(seconds=90)
    clock.advance(seconds=89)
    assert _ids(memory.search("short lived", user_id="alice")) == [mid]
    clock.advance(seconds=2)
    assert memory.search("short lived", user_id="alice")["results"] == []
    assert memory.get_all(user_id="alice")["results"] == []


def test_re_adding_an_expired_memory_stores_it_again(memory: Memory, clock: FrozenClock) -> None:
    old = _add_one(memory, "door code 4411", user_id="alice", ttl=60)
    assert memory.add("door code 4411", user_id="alice")["results"][0]["event"] == "NONE"
    clock.advance(minutes=2)
    again = memory.add("door code 4411", user_id="alice")["results"][0]
    assert again["event"] == "ADD"
    assert _ids(memory.get_all(user_id="alice")) == [again["id"]]
    assert memory.get(again["id"])["expires_at"] is None
    assert old != again["id"]


# -- search knobs ---------------------------------------------------------------------------------


@pytest.fixture
def foods(memory: Memory) -> Memory:
    memory.add(
        _msgs(
            "I'm vegetarian and love lentil soup",
            "I cook pasta with tomato sauce on Fridays",
            "My favourite soup is miso soup",
            "The car needs new tyres",
            "Meeting with the accountant on Monday",
            "I play tennis on weekends",
        ),
        user_id="alice",
    )
    return memory


def test_threshold_drops_low_scores(foods: Memory) -> None:
    full = foods.search("soup", user_id="alice")["results"]
    scores = [h["score"] for h in full]
    cut = scores[len(scores) // 2]
    kept = foods.search("soup", user_id="alice", threshold=cut)["results"]
    assert kept == [h for h in full if h["score"] >= cut]
    assert 0 < len(kept) < len(full)
    assert foods.search("soup", user_id="alice", threshold=0)["results"] == full
    assert foods.search("soup", user_id="alice", threshold=1.0)["results"] == [h for h in full if h["score"] >= 1.0]


def test_limit_caps_results(foods: Memory) -> None:
    assert len(foods.search("soup", user_id="alice", limit=2)["results"]) == 2
    assert (
        foods.search("soup", user_id="alice", limit=2)["results"]
        == foods.search("soup", user_id="alice")["results"][:2]
    )
    assert len(foods.get_all(user_id="alice", limit=3)["results"]) == 3


def test_get_all_is_newest_first(memory: Memory, clock: FrozenClock) -> None:
    ids = []
    for i in range(4):
        ids.append(_add_one(memory, f"fact number {i}", user_id="alice"))
        clock.advance(seconds=1)
    assert _ids(memory.get_all(user_id="alice")) == ids[::-1]
    assert _ids(memory.get_all(user_id="alice", limit=2)) == ids[:1:-1]


def test_explain_contents(foods: Memory) -> None:
    plain = foods.search("lentil soup", user_id="alice")["results"]
    assert all("explain" not in h for h in plain)
    hits = foods.search("lentil soup", user_id="alice", explain=True)["results"]
    assert [(h["id"], h["score"]) for h in hits] == [(h["id"], h["score"]) for h in plain]
    for hit in hits:
        why = hit["explain"]
        assert set(why) == EXPLAIN_KEYS
        for signal in ("dense", "keyword", "entity", "recency"):
            assert 0.0 <= why[signal] <= 1.0
        assert set(why["weights"]) == {"dense", "keyword", "entity", "recency"}
        assert math.isclose(sum(why["weights"].values()), 1.0, abs_tol=1e-3)
        assert why["weights"]["recency"] == 0.0 and why["recency"] == 0.0
        assert why["sources"] and set(why["sources"]) <= {"dense", "keyword", "context"}
        assert set(why["matched_terms"]) <= {"lentil", "soup"}
    by_text = {h["memory"]: h["explain"] for h in hits}
    both = by_text["I'm vegetarian and love lentil soup"]
    one = by_text["My favourite soup is miso soup"]
    assert both["matched_terms"] == ["lentil", "soup"]
    assert one["matched_terms"] == ["soup"]
    assert "keyword" in both["sources"] and "keyword" in one["sources"]
    assert both["keyword"] > one["keyword"] > 0
    assert {h["memory"] for h in hits[:2]} == {
        "I'm vegetarian and love lentil soup",
        "My favourite soup is miso soup",
    }
    unrelated = next(h for h in hits if h["memory"] == "The car needs new tyres")
    assert unrelated["explain"]["matched_terms"] == []
    # Its own text matches nothing; only its conversation neighbour can lend it keyword relevance,
    # and at most context_weight (0.3) of it.
    if unrelated["explain"]["context"]:
        assert 0.0 <= unrelated["explain"]["keyword"] <= 0.3
    else:
        assert unrelated["explain"]["keyword"] == 0.0


@pytest.mark.parametrize("newer", ["blue", "green"])
def test_recency_weight_favours_newer(memory: Memory, clock: FrozenClock, newer: str) -> None:
    older = "green" if newer == "blue" else "blue"
    memory.add(f"my favourite colour is {older}", user_id="alice", timestamp=T0 - timedelta(days=90))
    memory.add(f"my favourite colour is {newer}", user_id="alice", timestamp=T0)
    recent = memory.search("favourite colour", user_id="alice", recency_weight=1.0, explain=True)["results"]
    assert recent[0]["memory"] == f"my favourite colour is {newer}"
    assert recent[0]["explain"]["recency"] == 1.0
    assert recent[1]["explain"]["recency"] == pytest.approx(0.125, abs=1e-3)  # 90 days = 3 half-lives
    assert recent[0]["score"] > recent[1]["score"]


def test_newer_of_equally_relevant_memories_comes_first(memory: Memory) -> None:
    """explain shows where each memory lies in time among the candidates; the rule itself is
    tested on the ranking core (tests/test_ranking.py), where relevance can be made exactly equal."""
    for user, when in (("u1", (T0 - timedelta(days=90), T0)), ("u2", (T0, T0 - timedelta(days=90)))):
        memory.add("my favourite colour is blue", user_id=user, timestamp=when[0])
        memory.add("my favourite colour is green", user_id=user, timestamp=when[1])
        hits = memory.search("favourite colour", user_id=user, explain=True)["results"]
        newer = {h["memory"]: h["explain"]["newer"] for h in hits}
        later = "my favourite colour is green" if user == "u1" else "my favourite colour is blue"
        assert newer[later] == 1.0 and sorted(newer.values()) == [0.0, 1.0]


def test_newer_bonus_does_not_beat_a_clearly_better_older_match(memory: Memory, reopen: Callable[..., Memory]) -> None:
    memory.add("I adopted a cat named Miso from the shelter", user_id="u", timestamp=T0 - timedelta(days=300))
    memory.add("the weather was nice today", user_id="u", timestamp=T0)
    hits = memory.search("cat adopted from the shelter", user_id="u")["results"]
    assert hits[0]["memory"] == "I adopted a cat named Miso from the shelter"
    with reopen(embedder=HashEmbedder(), config={"ranking": {"newer_bonus": 0}}) as off:
        for user, old in (("v1", "blue"), ("v2", "green")):
            for colour in ("blue", "green"):
                when = T0 - timedelta(days=90) if colour == old else T0
                off.add(f"my favourite colour is {colour}", user_id=user, timestamp=when)
        orders = [[h["memory"] for h in off.search("favourite colour", user_id=u)["results"]] for u in ("v1", "v2")]
    assert orders[0] == orders[1], "with newer_bonus 0, timestamps do not order results"


# -- errors ---------------------------------------------------------------------------------------

# (label, method, args, kwargs, expected error). "$ID" in args is replaced by an existing memory id.
ERROR_CASES: list[tuple[str, str, tuple[Any, ...], dict[str, Any], type[Exception]]] = [
    # scope required
    ("add no scope", "add", ("x",), {}, ScopeRequired),
    ("search no scope", "search", ("x",), {}, ScopeRequired),
    ("get_all no scope", "get_all", (), {}, ScopeRequired),
    ("delete_all no scope", "delete_all", (), {}, ScopeRequired),
    ("search metadata filter only", "search", ("x",), {"filters": {"topic": "food"}}, ScopeRequired),
    ("get_all None ids", "get_all", (), {"user_id": None, "agent_id": None, "run_id": None}, ScopeRequired),
    # bad scope ids
    ("empty user_id", "add", ("x",), {"user_id": ""}, InvalidRequest),
    ("blank user_id", "search", ("x",), {"user_id": "   "}, InvalidRequest),
    ("int user_id", "get_all", (), {"user_id": 5}, InvalidRequest),
    ("long agent_id", "add", ("x",), {"agent_id": "a" * 257}, InvalidRequest),
    ("NUL run_id", "add", ("x",), {"run_id": "r\x00"}, InvalidRequest),
    ("wildcard scope in filters", "get_all", (), {"filters": {"user_id": "*"}}, InvalidRequest),
    (
        "operator scope in filters",
        "get_all",
        (),
        {"filters": {"user_id": {"in": ["a", "b"]}}},
        InvalidRequest,
    ),
    ("metadata filter in add", "add", ("x",), {"user_id": "a", "filters": {"topic": "x"}}, InvalidRequest),
    (
        "metadata filter in delete_all",
        "delete_all",
        (),
        {"user_id": "a", "filters": {"t": 1}},
        InvalidRequest,
    ),
    # scope conflicts
    ("kw vs filters", "search", ("x",), {"user_id": "alice", "filters": {"user_id": "bob"}}, ScopeConflict),
    (
        "kw vs AND",
        "get_all",
        (),
        {"user_id": "alice", "filters": {"AND": [{"user_id": "bob"}]}},
        ScopeConflict,
    ),
    ("add kw vs filters", "add", ("x",), {"agent_id": "a", "filters": {"agent_id": "b"}}, ScopeConflict),
    (
        "delete_all kw vs filters",
        "delete_all",
        (),
        {"run_id": "r", "filters": {"run_id": "s"}},
        ScopeConflict,
    ),
    ("AND vs AND", "get_all", (), {"filters": {"AND": [{"user_id": "a"}, {"user_id": "b"}]}}, ScopeConflict),
    ("top vs AND", "get_all", (), {"filters": {"user_id": "a", "AND": [{"user_id": "b"}]}}, ScopeConflict),
    ("AND vs top", "get_all", (), {"filters": {"$and": [{"user_id": "b"}], "user_id": "a"}}, ScopeConflict),
    # unknown keyword arguments
    ("add unknown kw", "add", ("x",), {"user_id": "a", "prompt_text": "p"}, TypeError),
    ("search unknown kw", "search", ("x",), {"user_id": "a", "k": 3}, TypeError),
    ("search top_k and limit", "search", ("x",), {"user_id": "a", "top_k": 3, "limit": 3}, InvalidRequest),
    ("search mem0 categories", "search", ("x",), {"user_id": "a", "categories": ["c"]}, InvalidRequest),
    ("get_all mem0 page", "get_all", (), {"user_id": "a", "page": 2}, InvalidRequest),
    ("get_all top_k and limit", "get_all", (), {"user_id": "a", "top_k": 3, "limit": 3}, InvalidRequest),
    ("add mem0 enable_graph", "add", ("x",), {"user_id": "a", "enable_graph": True}, InvalidRequest),
    ("delete mem0 delete_linked", "delete", ("$ID",), {"delete_linked": True}, InvalidRequest),
    ("update nothing to change", "update", ("$ID",), {}, InvalidRequest),
    ("update data and text", "update", ("$ID", "y"), {"text": "z"}, InvalidRequest),
    ("update both expiries", "update", ("$ID",), {"expires_at": None, "expiration_date": None}, InvalidRequest),
    ("update expiration_date words", "update", ("$ID",), {"expiration_date": "soon"}, InvalidRequest),
    (
        "add expiration_date and ttl",
        "add",
        ("x",),
        {"user_id": "a", "expiration_date": "2030", "ttl": 9},
        InvalidRequest,
    ),
    ("search show_expired str", "search", ("x",), {"user_id": "a", "show_expired": "yes"}, InvalidRequest),
    ("get_all show_expired int", "get_all", (), {"user_id": "a", "show_expired": 1}, InvalidRequest),
    ("get_all user", "get_all", (), {"user": "a"}, TypeError),
    ("get unknown kw", "get", ("$ID",), {"user_id": "a"}, TypeError),
    ("update unknown kw", "update", ("$ID", "y"), {"user_id": "a"}, TypeError),
    ("delete unknown kw", "delete", ("$ID",), {"force": True}, TypeError),
    ("delete_all unknown kw", "delete_all", (), {"user_id": "a", "hard": True}, TypeError),
    ("history unknown kw", "history", ("$ID",), {"limit": 3}, TypeError),
    # LLM
    ("infer=True", "add", ("x",), {"user_id": "a", "infer": True}, LLMRequired),
    # messages
    ("empty string", "add", ("",), {"user_id": "a"}, InvalidRequest),
    ("blank string", "add", ("  \n",), {"user_id": "a"}, InvalidRequest),
    ("empty list", "add", ([],), {"user_id": "a"}, InvalidRequest),
    ("empty dict", "add", ({},), {"user_id": "a"}, InvalidRequest),
    ("None", "add", (None,), {"user_id": "a"}, InvalidRequest),
    ("int", "add", (42,), {"user_id": "a"}, InvalidRequest),
    ("bytes", "add", (b"hello",), {"user_id": "a"}, InvalidRequest),
    ("list of str", "add", (["hello"],), {"user_id": "a"}, InvalidRequest),
    ("empty content", "add", ([{"role": "user", "content": ""}],), {"user_id": "a"}, InvalidRequest),
    ("no content", "add", ([{"role": "user"}],), {"user_id": "a"}, InvalidRequest),
    ("int content", "add", ([{"content": 5}],), {"user_id": "a"}, InvalidRequest),
    ("empty role", "add", ([{"role": "", "content": "x"}],), {"user_id": "a"}, InvalidRequest),
    ("empty name", "add", ([{"content": "x", "name": ""}],), {"user_id": "a"}, InvalidRequest),
    ("unknown key", "add", ([{"content": "x", "tool_calls": []}],), {"user_id": "a"}, InvalidRequest),
    ("too long", "add", ("x" * 2_000_001,), {"user_id": "a"}, InvalidRequest),
    ("blank", "add", (" \n\t ",), {"user_id": "a"}, InvalidRequest),
    ("NUL", "add", ("binary\x00data",), {"user_id": "a"}, InvalidRequest),
    ("lone surrogate", "add", ("bad \udc80 bytes",), {"user_id": "a"}, InvalidRequest),
    ("control characters", "add", ("\x01\x02\x03\x04\x05\x06 bin " * 8,), {"user_id": "a"}, InvalidRequest),
    ("one bad among good", "add", ([{"content": "ok"}, {"content": " "}],), {"user_id": "a"}, InvalidRequest),
    # metadata
    ("metadata list", "add", ("x",), {"user_id": "a", "metadata": ["a"]}, InvalidRequest),
    ("metadata str", "add", ("x",), {"user_id": "a", "metadata": "a=1"}, InvalidRequest),
    ("metadata NaN", "add", ("x",), {"user_id": "a", "metadata": {"v": float("nan")}}, InvalidRequest),
    ("metadata inf", "add", ("x",), {"user_id": "a", "metadata": {"v": [float("inf")]}}, InvalidRequest),
    ("metadata set", "add", ("x",), {"user_id": "a", "metadata": {"v": {1, 2}}}, InvalidRequest),
    ("metadata object", "add", ("x",), {"user_id": "a", "metadata": {"v": object()}}, InvalidRequest),
    ("metadata datetime", "add", ("x",), {"user_id": "a", "metadata": {"v": T0}}, InvalidRequest),
    ("metadata int key", "add", ("x",), {"user_id": "a", "metadata": {1: "a"}}, InvalidRequest),
    ("metadata nested int key", "add", ("x",), {"user_id": "a", "metadata": {"a": {1: "x"}}}, InvalidRequest),
    ("update metadata NaN", "update", ("$ID", "y"), {"metadata": {"v": float("nan")}}, InvalidRequest),
    # times
    ("timestamp words", "add", ("x",), {"user_id": "a", "timestamp": "yesterday"}, InvalidRequest),
    ("timestamp month 13", "add", ("x",), {"user_id": "a", "timestamp": "2026-13-01"}, InvalidRequest),
    ("timestamp bool", "add", ("x",), {"user_id": "a", "timestamp": True}, InvalidRequest),
    ("timestamp NaN", "add", ("x",), {"user_id": "a", "timestamp": float("nan")}, InvalidRequest),
    ("timestamp inf", "add", ("x",), {"user_id": "a", "timestamp": float("inf")}, InvalidRequest),
    ("timestamp list", "add", ("x",), {"user_id": "a", "timestamp": [2026]}, InvalidRequest),
    ("timestamp huge epoch", "add", ("x",), {"user_id": "a", "timestamp": 1e20}, InvalidRequest),
    (
        "timestamp past 9999",
        "add",
        ("x",),
        {"user_id": "a", "timestamp": "9999-12-31T23:00:00-05:00"},
        InvalidRequest,
    ),
    ("expires_at words", "add", ("x",), {"user_id": "a", "expires_at": "tomorrow"}, InvalidRequest),
    ("expires_at huge", "add", ("x",), {"user_id": "a", "expires_at": -1e20}, InvalidRequest),
    (
        "ttl and expires_at",
        "add",
        ("x",),
        {"user_id": "a", "ttl": 60, "expires_at": "2030-01-01"},
        InvalidRequest,
    ),
    ("ttl zero", "add", ("x",), {"user_id": "a", "ttl": 0}, InvalidRequest),
    ("ttl negative", "add", ("x",), {"user_id": "a", "ttl": timedelta(seconds=-1)}, InvalidRequest),
    ("ttl str", "add", ("x",), {"user_id": "a", "ttl": "60"}, InvalidRequest),
    ("ttl bool", "add", ("x",), {"user_id": "a", "ttl": True}, InvalidRequest),
    ("ttl NaN", "add", ("x",), {"user_id": "a", "ttl": float("nan")}, InvalidRequest),
    ("ttl huge", "add", ("x",), {"user_id": "a", "ttl": 1e20}, InvalidRequest),
    # ids
    ("get unknown", "get", ("no-such-id",), {}, MemoryNotFound),
    ("update unknown", "update", ("no-such-id", "y"), {}, MemoryNotFound),
    ("delete unknown", "delete", ("no-such-id",), {}, MemoryNotFound),
    ("delete purge unknown", "delete", ("no-such-id",), {"purge": True}, MemoryNotFound),
    ("get empty id", "get", ("",), {}, InvalidRequest),
    ("get int id", "get", (7,), {}, InvalidRequest),
    ("history None id", "history", (None,), {}, InvalidRequest),
    ("update empty text", "update", ("$ID", " "), {}, InvalidRequest),
    ("update non-str text", "update", ("$ID", 5), {}, InvalidRequest),
    ("update metadata list", "update", ("$ID", "y"), {"metadata": [1]}, InvalidRequest),
    # search arguments
    ("empty query", "search", ("",), {"user_id": "a"}, InvalidRequest),
    ("non-str query", "search", (None,), {"user_id": "a"}, InvalidRequest),
    ("limit 0", "search", ("x",), {"user_id": "a", "limit": 0}, InvalidRequest),
    ("limit negative", "search", ("x",), {"user_id": "a", "limit": -1}, InvalidRequest),
    ("limit float", "search", ("x",), {"user_id": "a", "limit": 2.5}, InvalidRequest),
    ("limit bool", "search", ("x",), {"user_id": "a", "limit": True}, InvalidRequest),
    ("limit str", "search", ("x",), {"user_id": "a", "limit": "5"}, InvalidRequest),
    ("limit too big", "search", ("x",), {"user_id": "a", "limit": 1001}, InvalidRequest),
    ("get_all limit 0", "get_all", (), {"user_id": "a", "limit": 0}, InvalidRequest),
    ("get_all limit too big", "get_all", (), {"user_id": "a", "limit": 10_001}, InvalidRequest),
    ("threshold > 1", "search", ("x",), {"user_id": "a", "threshold": 1.1}, InvalidRequest),
    ("threshold < 0", "search", ("x",), {"user_id": "a", "threshold": -0.1}, InvalidRequest),
    ("threshold NaN", "search", ("x",), {"user_id": "a", "threshold": float("nan")}, InvalidRequest),
    ("threshold str", "search", ("x",), {"user_id": "a", "threshold": "0.5"}, InvalidRequest),
    ("recency negative", "search", ("x",), {"user_id": "a", "recency_weight": -1}, InvalidRequest),
    ("recency NaN", "search", ("x",), {"user_id": "a", "recency_weight": float("nan")}, InvalidRequest),
    ("half life zero", "search", ("x",), {"user_id": "a", "half_life_days": 0}, InvalidRequest),
    # malformed filters
    ("filters str", "search", ("x",), {"user_id": "a", "filters": "topic=food"}, InvalidFilter),
    ("filters list", "get_all", (), {"user_id": "a", "filters": [{"topic": "food"}]}, InvalidFilter),
    ("$eq operator", "search", ("x",), {"user_id": "a", "filters": {"topic": {"$eq": "x"}}}, InvalidFilter),
    (
        "unknown operator",
        "get_all",
        (),
        {"user_id": "a", "filters": {"n": {"between": [1, 2]}}},
        InvalidFilter,
    ),
    ("OR not a list", "search", ("x",), {"user_id": "a", "filters": {"OR": {"topic": "x"}}}, InvalidFilter),
    ("OR empty", "get_all", (), {"user_id": "a", "filters": {"OR": []}}, InvalidFilter),
    ("AND empty", "get_all", (), {"user_id": "a", "filters": {"AND": []}}, InvalidFilter),
    ("mixed-case Or", "search", ("x",), {"user_id": "a", "filters": {"Or": [{"a": 1}]}}, InvalidFilter),
    ("list as value", "search", ("x",), {"user_id": "a", "filters": {"topic": ["a", "b"]}}, InvalidFilter),
    ("in empty", "get_all", (), {"user_id": "a", "filters": {"topic": {"in": []}}}, InvalidFilter),
    ("bare metadata", "get_all", (), {"user_id": "a", "filters": {"metadata": 1}}, InvalidFilter),
    ("bad field name", "get_all", (), {"user_id": "a", "filters": {"a;drop": 1}}, InvalidFilter),
    ("NaN value", "search", ("x",), {"user_id": "a", "filters": {"n": float("nan")}}, InvalidFilter),
    ("gt bool", "get_all", (), {"user_id": "a", "filters": {"n": {"gt": True}}}, InvalidFilter),
    (
        "filter in AND",
        "get_all",
        (),
        {"filters": {"AND": [{"user_id": "a"}, {"n": {"$gt": 1}}]}},
        InvalidFilter,
    ),
]


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "expected"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_paths(
    memory: Memory, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: type[Exception]
) -> None:
    existing = _add_one(memory, "an existing memory", user_id="a")
    before = memory.get_all(user_id="a")
    call_args = tuple(existing if a == "$ID" else a for a in args)
    with pytest.raises(expected) as info:
        getattr(memory, method)(*call_args, **kwargs)
    assert type(info.value) is expected or expected is InvalidRequest
    if expected is not TypeError:
        assert isinstance(info.value, MemlaneError)
        assert str(info.value), "error without a message"
    # A refused call writes nothing.
    assert memory.get_all(user_id="a") == before
    assert [e["event"] for e in memory.history(existing)] == ["ADD"]


def test_error_messages_say_how_to_fix(memory: Memory) -> None:
    with pytest.raises(ScopeRequired, match="user_id"):
        memory.search("x")
    with pytest.raises(ScopeConflict, match="bob"):
        memory.search("x", user_id="alice", filters={"user_id": "bob"})
    with pytest.raises(LLMRequired, match="infer=False"):
        memory.add("x", user_id="a", infer=True)


def test_an_llm_without_the_protocol_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Memory(path=tmp_path / "m.db", embedder=HashEmbedder(), llm=object())
    assert not (tmp_path / "m.db").exists()


def test_construction_touches_no_disk(tmp_path: Path) -> None:
    Memory(path=tmp_path / "sub" / "m.db", embedder=HashEmbedder())
    assert not (tmp_path / "sub").exists()


# -- scope ids inside filters (mem0 2.x style) ----------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        {"user_id": "alice"},
        {"user_id": {"eq": "alice"}},
        {"AND": [{"user_id": "alice"}]},
        {"$and": [{"user_id": "alice"}]},
        {"and": [{"user_id": "alice"}]},
    ],
)
def test_scope_in_filters_equals_keyword_scope(memory: Memory, filters: dict[str, Any]) -> None:
    memory.add(_msgs("alice likes tea", "alice likes chess"), user_id="alice")
    memory.add(_msgs("bob likes tea"), user_id="bob")
    assert memory.get_all(filters=filters) == memory.get_all(user_id="alice")
    assert memory.search("tea", filters=filters) == memory.search("tea", user_id="alice")
    # Giving the same id both ways is fine.
    assert memory.get_all(user_id="alice", filters=filters) == memory.get_all(user_id="alice")


def test_scope_and_metadata_in_top_level_and(memory: Memory) -> None:
    memory.add("alice soup", user_id="alice", metadata={"topic": "food"})
    memory.add("alice tennis", user_id="alice", metadata={"topic": "sport"})
    memory.add("bob soup", user_id="bob", metadata={"topic": "food"})
    filters = {"AND": [{"user_id": "alice"}, {"topic": "food"}]}
    assert [i["memory"] for i in memory.get_all(filters=filters)["results"]] == ["alice soup"]
    assert [h["memory"] for h in memory.search("soup", filters=filters)["results"]] == ["alice soup"]
    mixed = {"user_id": "alice", "topic": "sport"}
    assert [i["memory"] for i in memory.get_all(filters=mixed)["results"]] == ["alice tennis"]


def test_add_and_delete_all_take_scope_from_filters(memory: Memory) -> None:
    mid = _add_one(memory, "via filters", filters={"user_id": "alice", "run_id": "r1"})
    item = memory.get(mid)
    assert (item["user_id"], item["run_id"]) == ("alice", "r1")
    memory.add("bob's", user_id="bob")
    assert memory.delete_all(filters={"AND": [{"user_id": "alice"}]})["deleted"] == 1
    assert memory.get_all(user_id="alice")["results"] == []
    assert len(memory.get_all(user_id="bob")["results"]) == 1


# -- the exception tree ---------------------------------------------------------------------------


def test_every_error_is_a_memlane_error() -> None:
    from memlane import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, MemlaneError), name
        assert getattr(memlane, name) is cls, f"{name} not exported from memlane"
    assert not issubclass(MemlaneError, MemoryError)


def test_builtin_bases() -> None:
    assert issubclass(InvalidRequest, ValueError)
    assert issubclass(MemoryNotFound, LookupError)
    assert issubclass(ConfigError, ValueError)
    for cls in (ScopeRequired, ScopeConflict, InvalidFilter):
        assert issubclass(cls, InvalidRequest)
    assert issubclass(LLMRequired, ConfigError)


def test_builtin_except_clauses_work(memory: Memory) -> None:
    with pytest.raises(ValueError):
        memory.add("", user_id="a")
    with pytest.raises(LookupError):
        memory.get("no-such-id")
    with pytest.raises(LookupError):
        memory.delete("no-such-id")
