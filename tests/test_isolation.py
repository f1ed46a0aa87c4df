"""Scoping never leaks: whatever the method, filter or id, results stay inside the asked scope.

A scope matches by the ids it sets: ``user_id="alice"`` covers alice's memories under any agent or
run, ``agent_id="planner"`` covers that agent's memories for any user, and so on.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memlane import Memory, Scope
from memlane.testing import FrozenClock, HashEmbedder

# Full scopes of the fixture population: (user, agent, run).
SCOPES: list[tuple[str | None, str | None, str | None]] = [
    ("alice", "planner", "r1"),
    ("alice", "planner", "r2"),
    ("alice", "chef", "r1"),
    ("alice", None, None),
    ("bob", "planner", "r1"),
    ("bob", None, None),
    (None, "planner", None),
    (None, None, "r1"),
    ("alice bob", None, None),  # a user id that contains another's as a substring
]
# Texts every scope holds, so only scoping can tell the copies apart.
SHARED = ["I like green tea", "order ZX-4471 shipped", "my sister lives in Porto"]
QUERIES = ["green tea", "ZX-4471", "where does my sister live?", "tea order Porto"]


def _label(scope: tuple[str | None, str | None, str | None]) -> str:
    return "/".join(part or "-" for part in scope)


def _covers(query: Scope, item: dict[str, Any]) -> bool:
    return all(value is None or item[key] == value for key, value in query.as_dict().items())


class World:
    """A memory populated across SCOPES, with the ids each scope got."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.items: dict[str, dict[str, Any]] = {}
        for scope in SCOPES:
            user, agent, run = scope
            label = _label(scope)
            texts = [*SHARED, f"private note of {label}"]
            meta = {"owner": label, "topic": "food", "user_id": "alice", "tags": [label]}
            result = memory.add(
                [{"role": "user", "content": t} for t in texts],
                user_id=user,
                agent_id=agent,
                run_id=run,
                metadata=meta,
            )
            assert [r["event"] for r in result["results"]] == ["ADD"] * len(texts)
            for r in result["results"]:
                self.items[r["id"]] = memory.get(r["id"])

    def expected(self, scope: Scope) -> set[str]:
        return {mid for mid, item in self.items.items() if _covers(scope, item)}

    def snapshot(self) -> dict[str, Any]:
        """Every memory and its history, read by id."""
        return {mid: (self.memory.get(mid), self.memory.history(mid)) for mid in self.items}


@pytest.fixture
def world(memory: Memory) -> World:
    return World(memory)


QUERY_SCOPES = [
    Scope(user_id="alice"),
    Scope(user_id="bob"),
    Scope(user_id="alice bob"),
    Scope(agent_id="planner"),
    Scope(agent_id="chef"),
    Scope(run_id="r1"),
    Scope(run_id="r2"),
    Scope(user_id="alice", agent_id="planner"),
    Scope(user_id="alice", run_id="r1"),
    Scope(agent_id="planner", run_id="r1"),
    Scope(user_id="alice", agent_id="planner", run_id="r1"),
    Scope(user_id="bob", agent_id="chef"),
    Scope(user_id="carol"),
    Scope(user_id="ALICE"),
    Scope(user_id="alice "),
]


def _kwargs(scope: Scope) -> dict[str, str]:
    return {k: v for k, v in scope.as_dict().items() if v is not None}


def _ids(result: dict[str, Any]) -> set[str]:
    return {item["id"] for item in result["results"]}


@pytest.mark.parametrize("scope", QUERY_SCOPES, ids=lambda s: _label((s.user_id, s.agent_id, s.run_id)))
def test_get_all_and_search_stay_in_scope(world: World, scope: Scope) -> None:
    memory, expected = world.memory, world.expected(scope)
    assert _ids(memory.get_all(**_kwargs(scope), limit=1000)) == expected
    assert _ids(memory.get_all(filters=_kwargs(scope), limit=1000)) == expected
    for query in QUERIES:
        hits = memory.search(query, **_kwargs(scope), limit=1000)["results"]
        assert _ids({"results": hits}) <= expected, query
        for hit in hits:
            assert _covers(scope, hit)
    # The keyword path finds every in-scope copy of a rare token, and nothing else.
    order_ids = {mid for mid in expected if "ZX-4471" in world.items[mid]["memory"]}
    hits = memory.search("ZX-4471", **_kwargs(scope), limit=1000, explain=True)["results"]
    keyword_hits = {h["id"] for h in hits if "keyword" in h["explain"]["sources"]}
    assert keyword_hits == order_ids


def test_exact_scope_counts(world: World) -> None:
    """The covering rule, spelled out for a few scopes (guards the expectation helper too)."""
    per_scope = len(SHARED) + 1
    assert len(world.expected(Scope(user_id="alice"))) == 4 * per_scope
    assert len(world.expected(Scope(agent_id="planner"))) == 4 * per_scope
    assert len(world.expected(Scope(run_id="r1"))) == 4 * per_scope
    assert len(world.expected(Scope(user_id="alice", run_id="r1"))) == 2 * per_scope
    assert len(world.expected(Scope(user_id="carol"))) == 0


FOREIGN_FILTERS: list[dict[str, Any]] = [
    {"owner": "bob/planner/r1"},
    {"OR": [{"owner": _label(s)} for s in SCOPES]},
    {"OR": [{"user_id": "bob"}, {"topic": "food"}]},  # inside OR, user_id is a metadata key
    {"NOT": {"owner": "alice/-/-"}},
    {"NOT": [{"owner": "nobody"}]},
    {"topic": "food"},
    {"user_id": "alice", "topic": {"in": ["food", "sport"]}},
    {"tags": {"contains": "bob/-/-"}},
    {"memory": "I like green tea"},
    {"owner": "*"},
    {"OR": [{"NOT": {"topic": "food"}}, {"owner": {"icontains": "BOB"}}]},
]


@pytest.mark.parametrize("filters", FOREIGN_FILTERS, ids=repr)
@pytest.mark.parametrize("scope", [Scope(user_id="alice"), Scope(agent_id="chef"), Scope(run_id="r2")], ids=repr)
def test_filters_never_reach_other_scopes(world: World, scope: Scope, filters: dict[str, Any]) -> None:
    memory, expected = world.memory, world.expected(scope)
    listed = memory.get_all(**_kwargs(scope), filters=filters, limit=1000)
    assert _ids(listed) <= expected
    for query in QUERIES:
        assert _ids(memory.search(query, **_kwargs(scope), filters=filters, limit=1000)) <= expected


def test_filters_do_select_within_scope(world: World) -> None:
    """The foreign-filter test is not vacuous: the same filters do select in-scope memories."""
    memory = world.memory
    got = memory.get_all(user_id="alice", filters={"OR": [{"owner": _label(s)} for s in SCOPES]}, limit=1000)
    assert _ids(got) == world.expected(Scope(user_id="alice"))
    got = memory.get_all(user_id="alice", filters={"NOT": {"owner": "alice/-/-"}}, limit=1000)
    alice = world.expected(Scope(user_id="alice"))
    assert _ids(got) == {mid for mid in alice if world.items[mid]["metadata"]["owner"] != "alice/-/-"}
    assert 0 < len(_ids(got)) < len(alice)
    assert memory.get_all(user_id="alice", filters={"owner": "bob/planner/r1"})["results"] == []


def test_delete_all_only_deletes_its_scope(world: World) -> None:
    memory = world.memory
    target = Scope(user_id="alice", agent_id="planner")
    doomed = world.expected(target)
    before = world.snapshot()
    result = memory.delete_all(**_kwargs(target))
    assert result["deleted"] == len(doomed) == 2 * (len(SHARED) + 1)
    after = {mid: (memory.get(mid), memory.history(mid)) for mid in world.items if mid not in doomed}
    assert after == {mid: v for mid, v in before.items() if mid not in doomed}
    for scope in QUERY_SCOPES:
        assert _ids(memory.get_all(**_kwargs(scope), limit=1000)) == world.expected(scope) - doomed


def test_delete_all_purge_redacts_only_its_scope(world: World) -> None:
    memory = world.memory
    doomed = world.expected(Scope(run_id="r2"))
    before = world.snapshot()
    memory.delete_all(run_id="r2", purge=True)
    for mid in world.items:
        if mid in doomed:
            assert all(e["redacted"] for e in memory.history(mid))
        else:
            assert (memory.get(mid), memory.history(mid)) == before[mid]


def test_update_by_id_touches_only_that_memory(world: World, clock: FrozenClock) -> None:
    memory = world.memory
    target = next(
        mid
        for mid, item in world.items.items()
        if item["memory"] == "I like green tea" and item["user_id"] == "alice" and item["agent_id"] is None
    )
    before = world.snapshot()
    clock.advance(hours=1)
    memory.update(target, "I like black coffee", metadata={"owner": "changed"})
    for mid, state in before.items():
        if mid != target:
            assert (memory.get(mid), memory.history(mid)) == state
    # Every other scope still finds its own tea, and only alice's user-level scope sees the coffee.
    for scope in QUERY_SCOPES:
        hits = memory.search("black coffee", **_kwargs(scope), limit=1000, explain=True)["results"]
        with_keyword = {h["id"] for h in hits if "keyword" in h["explain"]["sources"]}
        assert with_keyword == ({target} if _covers(scope, world.items[target]) else set())


def test_delete_by_id_touches_only_that_memory(world: World) -> None:
    memory = world.memory
    target = next(
        mid
        for mid, item in world.items.items()
        if item["memory"] == "order ZX-4471 shipped" and item["user_id"] == "bob" and item["agent_id"] == "planner"
    )
    before = world.snapshot()
    memory.delete(target, purge=True)
    for mid, state in before.items():
        if mid != target:
            assert (memory.get(mid), memory.history(mid)) == state
    hits = memory.search("ZX-4471", agent_id="planner", limit=1000, explain=True)["results"]
    keyword_hits = {h["id"] for h in hits if "keyword" in h["explain"]["sources"]}
    assert keyword_hits == {
        mid
        for mid in world.expected(Scope(agent_id="planner"))
        if mid != target and world.items[mid]["memory"] == "order ZX-4471 shipped"
    }


# -- property: random interleavings ---------------------------------------------------------------

_USERS = st.sampled_from([None, "u1", "u2"])
_AGENTS = st.sampled_from([None, "a1", "a2"])
_RUNS = st.sampled_from([None, "r1"])
_SCOPE = st.tuples(_USERS, _AGENTS, _RUNS).filter(lambda s: any(s))
_TEXTS = st.sampled_from(["tea", "I like tea", "coffee please", "order 77 shipped", "tea and coffee", "Porto"])
_QUERY_SCOPES = [
    Scope(u, a, r)
    for u in (None, "u1", "u2", "u3")
    for a in (None, "a1", "a2")
    for r in (None, "r1", "r2")
    if u or a or r
]


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(st.tuples(_SCOPE, _TEXTS), min_size=1, max_size=20), query=_TEXTS)
def test_random_interleavings_never_cross_scopes(scratch: Path, ops: list[Any], query: str) -> None:
    path = scratch / f"{uuid.uuid4().hex}.db"
    config = {"vector_store": {"config": {"durability": "normal"}}}
    with Memory(path=path, embedder=HashEmbedder(), clock=FrozenClock(), config=config) as memory:
        owner: dict[str, tuple[str | None, str | None, str | None]] = {}
        for (user, agent, run), text in ops:
            [result] = memory.add(text, user_id=user, agent_id=agent, run_id=run)["results"]
            # A NONE must point at the same text in the same scope, never at another scope's copy.
            assert owner.setdefault(result["id"], (user, agent, run)) == (user, agent, run)
        for scope in _QUERY_SCOPES:
            expected = {
                mid for mid, (u, a, r) in owner.items() if _covers(scope, {"user_id": u, "agent_id": a, "run_id": r})
            }
            kwargs = _kwargs(scope)
            assert _ids(memory.get_all(**kwargs, limit=1000)) == expected
            hits = _ids(memory.search(query, **kwargs, limit=1000))
            assert hits <= expected
