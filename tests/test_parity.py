"""``Memory`` and ``AsyncMemory`` give the same results and the same errors for the same calls."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from server_harness import SharedServer

from memlane import AsyncMemory, AsyncMemoryClient, MemlaneError, Memory
from memlane.testing import FrozenClock, HashEmbedder


@dataclass(frozen=True)
class Ref:
    """The id of the n-th distinct memory the scenario created (ids are random uuids)."""

    n: int


@dataclass(frozen=True)
class Advance:
    """Move the scenario's clock."""

    delta: timedelta


Step = tuple[str, tuple[Any, ...], dict[str, Any]] | Advance

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FOODS = [
    {"role": "user", "content": "I'm vegetarian", "name": "alice"},
    {"role": "assistant", "content": "Noted: no meat in recipes."},
    {"role": "user", "content": "I'm vegetarian", "name": "alice"},
]

SCENARIOS: dict[str, list[Step]] = {
    "lifecycle": [
        ("add", ("I live in Lisbon",), {"user_id": "alice", "metadata": {"topic": "home", "n": [1, 2.5]}}),
        ("add", (FOODS,), {"user_id": "alice", "agent_id": "chef"}),
        (
            "add",
            ({"role": "user", "content": "order ZX-4471 shipped"},),
            {"user_id": "alice", "run_id": "s1"},
        ),
        ("add", ("I live in Lisbon",), {"user_id": "alice"}),
        ("get", (Ref(0),), {}),
        ("get_all", (), {"user_id": "alice"}),
        ("search", ("what should I cook?",), {"user_id": "alice", "explain": True}),
        ("search", ("ZX-4471",), {"user_id": "alice", "limit": 2, "threshold": 0.01}),
        Advance(timedelta(hours=2)),
        ("update", (Ref(0), "I live in Porto"), {}),
        ("update", (Ref(1), "I'm vegan"), {"metadata": {"diet": "vegan"}}),
        ("search", ("Porto",), {"user_id": "alice", "explain": True}),
        ("history", (Ref(0),), {}),
        Advance(timedelta(minutes=5)),
        ("delete", (Ref(3),), {}),
        ("history", (Ref(3),), {}),
        ("get", (Ref(3),), {}),
        ("search", ("ZX-4471",), {"user_id": "alice"}),
        ("delete_all", (), {"user_id": "alice", "agent_id": "chef"}),
        ("get_all", (), {"user_id": "alice"}),
        ("history", (Ref(1),), {}),
    ],
    "scopes": [
        ("add", ("I like tea",), {"user_id": "alice", "agent_id": "a1", "run_id": "r1"}),
        ("add", ("I like tea",), {"user_id": "bob", "agent_id": "a1", "run_id": "r1"}),
        ("add", ("I like tea",), {"agent_id": "a1"}),
        (
            "add",
            ("I like coffee",),
            {"filters": {"user_id": "alice", "run_id": "r2"}, "metadata": {"k": "v"}},
        ),
        ("get_all", (), {"user_id": "alice"}),
        ("get_all", (), {"agent_id": "a1"}),
        ("get_all", (), {"run_id": "r1"}),
        ("get_all", (), {"filters": {"AND": [{"user_id": "alice"}, {"k": "v"}]}}),
        ("search", ("tea",), {"filters": {"user_id": "bob"}}),
        ("search", ("tea",), {"agent_id": "a1", "filters": {"OR": [{"k": "v"}, {"NOT": {"k": "v"}}]}}),
        ("delete_all", (), {"filters": {"run_id": "r1"}}),
        ("get_all", (), {"agent_id": "a1"}),
        ("delete_all", (), {"user_id": "nobody"}),
    ],
    "time": [
        ("add", ("happened long ago",), {"user_id": "u", "timestamp": "2020-02-02T10:00:00+02:00"}),
        ("add", ("happened recently",), {"user_id": "u", "timestamp": T0 - timedelta(days=1)}),
        ("add", ("parking spot B12",), {"user_id": "u", "ttl": 3600}),
        ("add", ("door code 4411",), {"user_id": "u", "expires_at": T0 + timedelta(hours=3)}),
        ("search", ("happened",), {"user_id": "u", "recency_weight": 1.0, "explain": True}),
        Advance(timedelta(hours=1)),
        ("get_all", (), {"user_id": "u"}),
        ("search", ("parking spot B12",), {"user_id": "u"}),
        ("get", (Ref(2),), {}),
        Advance(timedelta(hours=2)),
        ("get_all", (), {"user_id": "u"}),
        ("add", ("door code 4411",), {"user_id": "u"}),
        ("get_all", (), {"user_id": "u"}),
    ],
    "purge_and_reset": [
        ("add", ("my PIN is 8812",), {"user_id": "alice"}),
        ("add", ("my card ends 0042",), {"user_id": "alice", "run_id": "r"}),
        ("add", ("bob's note",), {"user_id": "bob"}),
        ("update", (Ref(0), "my PIN is 9923"), {}),
        ("delete", (Ref(0),), {"purge": True}),
        ("history", (Ref(0),), {}),
        ("delete_all", (), {"user_id": "alice", "purge": True}),
        ("history", (Ref(1),), {}),
        ("history", (Ref(2),), {}),
        ("reset", (), {}),
        ("get_all", (), {"user_id": "bob"}),
        ("history", (Ref(2),), {}),
        ("add", ("after reset",), {"user_id": "bob"}),
        ("get_all", (), {"user_id": "bob"}),
    ],
    "errors": [
        ("add", ("seed",), {"user_id": "a"}),
        ("add", ("x",), {}),
        ("search", ("x",), {}),
        ("get_all", (), {}),
        ("delete_all", (), {}),
        ("search", ("x",), {"user_id": "a", "filters": {"user_id": "b"}}),
        ("get_all", (), {"user_id": "a", "filters": {"AND": [{"user_id": "b"}]}}),
        ("search", ("x",), {"user_id": "a", "k": 5}),
        ("add", ("x",), {"user_id": "a", "prompt": "p"}),
        ("get", (Ref(0),), {"user_id": "a"}),
        ("add", ("x",), {"user_id": "a", "infer": True}),
        ("add", ([],), {"user_id": "a"}),
        ("add", ([{"role": "user"}],), {"user_id": "a"}),
        ("add", ("x",), {"user_id": "a", "metadata": {"v": float("nan")}}),
        ("add", ("x",), {"user_id": "a", "timestamp": "yesterday"}),
        ("add", ("x",), {"user_id": "a", "ttl": 5, "expires_at": T0}),
        ("get", ("missing",), {}),
        ("update", ("missing", "y"), {}),
        ("delete", ("missing",), {}),
        ("search", ("x",), {"user_id": "a", "filters": {"topic": {"$eq": 1}}}),
        ("get_all", (), {"user_id": "a", "filters": "topic"}),
        ("search", ("x",), {"user_id": "a", "limit": 0}),
        ("search", ("",), {"user_id": "a"}),
        ("get_all", (), {"user_id": "a"}),
    ],
    # mem0 2.x's call shapes (core/compat.py): the same results and errors embedded and over HTTP.
    "mem0_shapes": [
        ("add", ("door code 4411",), {"user_id": "u", "expiration_date": "2026-03-02"}),
        ("add", ("parking spot B12",), {"user_id": "u", "expiration_date": date(2026, 3, 1)}),
        ("add", ("likes green tea",), {"user_id": "u", "custom_instructions": "keep food only", "infer": False}),
        ("add", ("gate code 77",), {"user_id": "u", "expiration_date": datetime(2026, 3, 5, 23, tzinfo=UTC)}),
        ("search", ("code",), {"user_id": "u", "top_k": 1}),
        ("search", ("code",), {"filters": {"user_id": "u"}, "top_k": 2, "rerank": True, "threshold": 0.0}),
        ("get_all", (), {"user_id": "u", "top_k": 2}),
        Advance(timedelta(days=1, hours=1)),
        ("get_all", (), {"user_id": "u"}),
        ("get_all", (), {"user_id": "u", "show_expired": True}),
        ("search", ("parking spot",), {"user_id": "u"}),
        ("search", ("parking spot",), {"user_id": "u", "show_expired": True}),
        ("search", ("code",), {"user_id": "u", "recency_weight": 1.0, "reference_date": "2026-01-01", "explain": True}),
        ("search", ("code",), {"user_id": "u", "recency_weight": 1.0, "reference_date": date(2026, 4, 1)}),
        ("update", (Ref(0),), {"text": "door code 9911"}),
        ("update", (Ref(0),), {"metadata": {"room": "front"}}),
        ("update", (Ref(0),), {"expiration_date": None}),
        ("get", (Ref(0),), {}),
        ("update", (Ref(0),), {"expires_at": T0 + timedelta(days=30)}),
        ("update", (Ref(0),), {"expires_at": None}),
        ("update", (Ref(1),), {"expiration_date": "2026-12-31"}),
        ("get_all", (), {"user_id": "u"}),
        ("history", (Ref(0),), {}),
        # refused, with the same message
        ("update", (Ref(0),), {}),
        ("update", (Ref(0), "a"), {"text": "b"}),
        ("update", (Ref(0),), {"expires_at": None, "expiration_date": None}),
        ("update", (Ref(0),), {"expiration_date": "next week"}),
        ("search", ("x",), {"user_id": "u", "top_k": 3, "limit": 3}),
        ("search", ("x",), {"user_id": "u", "categories": ["c"]}),
        ("search", ("x",), {"categories": ["c"]}),
        ("get_all", (), {"user_id": "u", "page": 2, "page_size": 10}),
        ("get_all", (), {"user_id": "u", "limit": 1, "top_k": 1}),
        ("add", ("x",), {"user_id": "u", "expiration_date": "2026-12-31", "ttl": 60}),
        ("add", ("x",), {"user_id": "u", "prompt": "p", "custom_instructions": "q"}),
        ("add", ("x",), {"user_id": "u", "enable_graph": True}),
        ("delete", (Ref(0),), {"delete_linked": True}),
        ("get_all", (), {"user_id": "u"}),
    ],
}


class _Ids:
    """Replaces random memory ids with stable labels, in order of first appearance."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.order: list[str] = []

    def learn(self, result: Any) -> None:
        if isinstance(result, dict) and "mode" in result:
            for item in result["results"]:
                if item["id"] not in self.labels:
                    self.labels[item["id"]] = f"<id{len(self.order)}>"
                    self.order.append(item["id"])

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Ref):
            return self.order[value.n]
        return value

    def scrub(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, str):
            for raw, label in self.labels.items():
                value = value.replace(raw, label)
        return value


# Scenarios whose errors must also carry the same message on every face. (Elsewhere a body that does
# not match the API's types is refused by the server's schema, with its own message.)
SAME_MESSAGES = {"mem0_shapes"}


def _outcome(
    ids: _Ids, result: Any = None, error: BaseException | None = None, *, messages: bool = False
) -> tuple[str, Any]:
    if messages and isinstance(error, MemlaneError):
        return ("error", (type(error), ids.scrub(str(error))))
    if error is not None:
        return ("error", type(error))
    ids.learn(result)
    return ("ok", ids.scrub(result))


def run_sync(memory: Memory, clock: FrozenClock, steps: list[Step], messages: bool = False) -> list[tuple[str, Any]]:
    ids, out = _Ids(), []
    for step in steps:
        if isinstance(step, Advance):
            clock.now += step.delta
            continue
        method, args, kwargs = step
        try:
            result = getattr(memory, method)(*[ids.resolve(a) for a in args], **kwargs)
        except Exception as exc:
            out.append(_outcome(ids, error=exc, messages=messages))
        else:
            out.append(_outcome(ids, result))
    return out


async def run_async(
    memory: AsyncMemory, clock: FrozenClock, steps: list[Step], messages: bool = False
) -> list[tuple[str, Any]]:
    ids, out = _Ids(), []
    for step in steps:
        if isinstance(step, Advance):
            clock.now += step.delta
            continue
        method, args, kwargs = step
        try:
            result = await getattr(memory, method)(*[ids.resolve(a) for a in args], **kwargs)
        except Exception as exc:
            out.append(_outcome(ids, error=exc, messages=messages))
        else:
            out.append(_outcome(ids, result))
    return out


def _pair(tmp_path: Path) -> tuple[Memory, FrozenClock, AsyncMemory, FrozenClock]:
    sync_clock, async_clock = FrozenClock(T0), FrozenClock(T0)
    sync = Memory(path=tmp_path / "sync.db", embedder=HashEmbedder(), clock=sync_clock)
    amem = AsyncMemory(tmp_path / "async.db", embedder=HashEmbedder(), clock=async_clock)
    return sync, sync_clock, amem, async_clock


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_same_scenario_same_results(tmp_path: Path, name: str) -> None:
    sync, sync_clock, amem, async_clock = _pair(tmp_path)
    try:
        expected = run_sync(sync, sync_clock, SCENARIOS[name], name in SAME_MESSAGES)
        got = await run_async(amem, async_clock, SCENARIOS[name], name in SAME_MESSAGES)
    finally:
        sync.close()
        await amem.close()
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a == b, f"step {i} of {name!r}: async {a!r} != sync {b!r}"


def test_scenario_outcomes_are_as_intended(tmp_path: Path) -> None:
    """Guard against parity that holds only because both drivers failed the same way."""
    sync_clock = FrozenClock(T0)
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder(), clock=sync_clock) as mem:
        outcomes = run_sync(mem, sync_clock, SCENARIOS["lifecycle"])
    kinds = [kind for kind, _ in outcomes]
    assert kinds.count("error") == 1  # only the get of the deleted memory
    error_clock = FrozenClock(T0)
    with Memory(path=tmp_path / "e.db", embedder=HashEmbedder(), clock=error_clock) as mem:
        errors = run_sync(mem, error_clock, SCENARIOS["errors"])
    assert errors[0][0] == "ok" and errors[-1][0] == "ok"
    assert all(kind == "error" for kind, _ in errors[1:-1])
    names = {value.__name__ for kind, value in errors if kind == "error"}
    mem0_clock = FrozenClock(T0)
    with Memory(path=tmp_path / "mem0.db", embedder=HashEmbedder(), clock=mem0_clock) as mem:
        shapes = run_sync(mem, mem0_clock, SCENARIOS["mem0_shapes"], messages=True)
    assert [kind for kind, _ in shapes].count("error") == 14  # custom_instructions needs an LLM; 13 refusals
    listed, with_expired = shapes[7][1]["results"], shapes[8][1]["results"]
    assert (len(listed), len(with_expired)) == (2, 3)  # expiration_date hid the parking spot the next day
    assert [m["expires_at"] for m in shapes[-1][1]["results"]] == [
        "2026-03-06T00:00:00.000000+00:00", "2027-01-01T00:00:00.000000+00:00", None,
    ]  # fmt: skip
    assert {
        "ScopeRequired",
        "ScopeConflict",
        "TypeError",
        "LLMRequired",
        "InvalidRequest",
        "MemoryNotFound",
        "InvalidFilter",
    } <= names


def test_async_api_mirrors_sync_api() -> None:
    public = (
        "add",
        "search",
        "get",
        "get_all",
        "update",
        "delete",
        "delete_all",
        "history",
        "reset",
        "close",
    )
    for name in public:
        assert callable(getattr(Memory, name))
        assert inspect.iscoroutinefunction(getattr(AsyncMemory, name)), name
        assert getattr(AsyncMemory, name).__doc__, name


async def test_async_wraps_an_existing_memory(memory: Memory) -> None:
    amem = AsyncMemory(memory=memory)
    added = await amem.add("shared engine", user_id="alice")
    mid = added["results"][0]["id"]
    assert memory.get(mid) == await amem.get(mid)
    assert memory.search("engine", user_id="alice") == await amem.search("engine", user_id="alice")


async def test_concurrent_async_adds(async_memory: AsyncMemory) -> None:
    texts = [f"fact number {i}" for i in range(20)]
    results = await asyncio.gather(*(async_memory.add(t, user_id=f"user{i % 4}") for i, t in enumerate(texts)))
    assert all(r["results"][0]["event"] == "ADD" for r in results)
    for u in range(4):
        listed = await async_memory.get_all(user_id=f"user{u}")
        assert sorted(i["memory"] for i in listed["results"]) == sorted(texts[u::4])


async def test_concurrent_duplicate_adds_store_one(async_memory: AsyncMemory) -> None:
    results = await asyncio.gather(*(async_memory.add("same text", user_id="alice") for _ in range(10)))
    items = [r["results"][0] for r in results]
    assert sorted(i["event"] for i in items) == ["ADD"] + ["NONE"] * 9
    assert len({i["id"] for i in items}) == 1
    assert len((await async_memory.get_all(user_id="alice"))["results"]) == 1


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_clients_over_http_give_the_embedded_results(
    tmp_path: Path, name: str, rest_server: SharedServer
) -> None:
    """``MemoryClient`` and ``AsyncMemoryClient`` against the REST server: same results, same error types."""
    embedded_clock = FrozenClock(T0)
    with Memory(path=tmp_path / "embedded.db", embedder=HashEmbedder(), clock=embedded_clock) as mem:
        expected = run_sync(mem, embedded_clock, SCENARIOS[name], name in SAME_MESSAGES)
    sync_clock = FrozenClock(T0)
    with (
        Memory(path=tmp_path / "served.db", embedder=HashEmbedder(), clock=sync_clock) as served,
        rest_server.facing(served) as client,
    ):
        got_sync = run_sync(client, sync_clock, SCENARIOS[name], name in SAME_MESSAGES)  # type: ignore[arg-type]
    async_clock = FrozenClock(T0)
    with (
        Memory(path=tmp_path / "served-async.db", embedder=HashEmbedder(), clock=async_clock) as served,
        rest_server.facing(served),
    ):
        async with AsyncMemoryClient(rest_server.url, api_key=rest_server.token, retries=0) as aclient:
            got_async = await run_async(aclient, async_clock, SCENARIOS[name], name in SAME_MESSAGES)  # type: ignore[arg-type]
    for label, got in (("MemoryClient", got_sync), ("AsyncMemoryClient", got_async)):
        assert len(got) == len(expected)
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a == b, f"step {i} of {name!r}: {label} {a!r} != embedded {b!r}"
