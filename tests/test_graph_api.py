"""Graph memory through the public API: entities and relations written by ``Memory.add`` (scripted
extractions, or names found offline), traversal, ``as_of``, aliases, scopes, ``search(graph=True)``.

Run on SQLite, on PostgreSQL and through ``MemoryClient`` against the REST server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Facing, store_for

from memlane import (
    AsyncMemory,
    EntityNotFound,
    InvalidRequest,
    Memory,
    MemoryNotFound,
    ScopeRequired,
)
from memlane._graph_api import graph_candidates
from memlane._search import gather_candidates
from memlane.core.text import query_terms
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder
from memlane.types import Scope

T0 = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)
# related=0: every fact is an ADD without a reconciliation call, so each add is one scripted answer.
CONFIG: dict[str, Any] = {"extraction": {"related": 0}}

Claim = tuple[str, str, str] | tuple[str, str, str, bool]


def fact(text: str, *names: str, relations: tuple[Claim, ...] = (), kind: str = "person") -> dict[str, Any]:
    """One extracted fact as a model answers it: its entities (all of type ``kind`` unless the
    name starts with "Project") and relations ``(subject, predicate, object[, exclusive])``."""
    return {
        "text": text,
        "from": [1],
        "entities": [{"name": n, "type": "project" if n.startswith("Project") else kind} for n in names],
        "relations": [
            {"subject": c[0], "predicate": c[1], "object": c[2], "exclusive": bool(c[3:] and c[3])} for c in relations
        ],
    }


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def engine(
    tmp_path: Path, llm: FakeLLM, clock: FrozenClock, backend: str, request: pytest.FixtureRequest
) -> Iterator[Memory]:
    """The extracting ``Memory`` (on SQLite or PostgreSQL; the scripted ``llm`` answers its adds)."""
    store = store_for(backend, request, tmp_path / "m.db")
    with Memory(**store, embedder=HashEmbedder(), llm=llm, clock=clock, config=CONFIG) as m:
        yield m


@pytest.fixture
def memory(engine: Memory, facing: Facing) -> Iterator[Memory]:
    """``engine`` itself, or a ``MemoryClient`` to the REST server serving it."""
    with facing(engine) as face:
        yield face


def tell(memory: Memory, llm: FakeLLM, *facts: dict[str, Any], user_id: str = "u", **kwargs: Any) -> list[str]:
    """Add one message whose extraction gives ``facts``; the ids of the memories written."""
    llm.queue({"facts": list(facts)})
    result = memory.add(" ".join(f["text"] for f in facts), user_id=user_id, **kwargs)
    return [r["id"] for r in result["results"]]


def build_org(memory: Memory, llm: FakeLLM) -> None:
    """An org chart and a project graph, over three adds."""
    tell(
        memory,
        llm,
        fact("Alice manages Bob.", "Alice", "Bob", relations=(("Alice", "manages", "Bob"),)),
        fact("Carol reports to Alice.", "Carol", "Alice", relations=(("Carol", "reports_to", "Alice", True),)),
    )
    tell(
        memory,
        llm,
        fact("Dan reports to Bob.", "Dan", "Bob", relations=(("Dan", "reports to", "Bob", True),)),
        fact("Erin reports to Carol.", "Erin", "Carol", relations=(("Erin", "reports_to", "Carol", True),)),
        fact("Frank reports to Dan.", "Frank", "Dan", relations=(("Frank", "reports_to", "Dan", True),)),
    )
    tell(
        memory,
        llm,
        fact("Alice and Bob lead Project X.", "Alice", "Bob", "Project X",
             relations=(("Alice", "leads", "Project X"), ("Bob", "leads", "Project X"))),
        fact("Alice leads Project Y.", "Alice", "Project Y", relations=(("Alice", "leads", "Project Y"),)),
        fact("Bob leads Project Z.", "Bob", "Project Z", relations=(("Bob", "leads", "Project Z"),)),
        fact("Frank leads Project W.", "Frank", "Project W", relations=(("Frank", "leads", "Project W"),)),
    )  # fmt: skip


def ends(memory: Memory, entity: str, predicate: str, direction: str, end: str) -> dict[str, str]:
    """name -> id of the entities at ``end`` ("subject" or "object") of ``entity``'s relations."""
    found = memory.relations(entity, user_id="u", predicate=predicate, direction=direction)  # type: ignore[arg-type]
    return {r[end]["name"]: r[end]["id"] for r in found["results"]}  # type: ignore[literal-required]


def test_who_reports_to_alices_directs(memory: Memory, llm: FakeLLM) -> None:
    build_org(memory, llm)
    directs = ends(memory, "Alice", "manages", "out", "object") | ends(memory, "Alice", "reports_to", "in", "subject")
    assert sorted(directs) == ["Bob", "Carol"]
    theirs: set[str] = set()
    for direct_id in directs.values():
        theirs |= set(ends(memory, direct_id, "reports_to", "in", "subject"))  # by id this time
    assert theirs == {"Dan", "Erin"}  # not Frank: he reports to Dan


def test_which_projects_share_a_lead_with_project_x(memory: Memory, llm: FakeLLM) -> None:
    build_org(memory, llm)
    leads = ends(memory, "Project X", "leads", "in", "subject")
    assert sorted(leads) == ["Alice", "Bob"]
    projects: set[str] = set()
    for lead_id in leads.values():
        projects |= set(ends(memory, lead_id, "leads", "out", "object"))
    assert projects - {"Project X"} == {"Project Y", "Project Z"}


def test_entities_neighbours_and_paths(memory: Memory, llm: FakeLLM) -> None:
    build_org(memory, llm)
    found = memory.entities(user_id="u")["results"]
    assert sorted(e["name"] for e in found) == sorted(
        ["Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Project W", "Project X", "Project Y", "Project Z"]
    )
    alice = next(e for e in found if e["name"] == "Alice")
    assert alice["type"] == "person" and alice["user_id"] == "u" and memory.entity(alice["id"]) == alice
    near = memory.neighbours("alice", user_id="u")["results"]
    assert [(n["name"], n["distance"]) for n in near] == [("Bob", 1), ("Carol", 1), ("Project X", 1), ("Project Y", 1)]
    two = {n["name"]: n["distance"] for n in memory.neighbours("Alice", user_id="u", depth=2)["results"]}
    assert two["Dan"] == two["Erin"] == two["Project Z"] == 2 and "Frank" not in two
    chain = memory.path("Erin", "Frank", user_id="u")
    assert chain["found"] is True
    assert [(r["subject"]["name"], r["predicate"], r["object"]["name"]) for r in chain["results"]] == [
        ("Erin", "reports_to", "Carol"), ("Carol", "reports_to", "Alice"), ("Alice", "manages", "Bob"),
        ("Dan", "reports_to", "Bob"), ("Frank", "reports_to", "Dan"),
    ]  # fmt: skip
    stated = chain["results"][0]["memory_id"]
    assert stated is not None and memory.get(stated)["memory"] == "Erin reports to Carol."
    assert memory.path("Erin", "Erin", user_id="u") == {"found": True, "results": []}


def test_a_contradicting_relation_closes_the_old_one_and_as_of_sees_it(
    memory: Memory, llm: FakeLLM, clock: FrozenClock
) -> None:
    tell(memory, llm, fact("Bob reports to Alice.", "Bob", "Alice", relations=(("Bob", "reports_to", "Alice", True),)),
         timestamp="2026-01-10T09:00:00Z")  # fmt: skip
    clock.advance(days=30)
    moved = fact("Bob reports to Carol now.", "Bob", "Carol", relations=(("Bob", "reports_to", "Carol", True),))
    tell(memory, llm, moved, timestamp="2026-05-01T09:00:00Z")
    now = memory.relations("Bob", user_id="u", predicate="reports_to")["results"]
    assert [(r["object"]["name"], r["valid_until"]) for r in now] == [("Carol", None)]
    then = memory.relations("Bob", user_id="u", predicate="reports_to", as_of="2026-03-01T00:00:00Z")["results"]
    assert [r["object"]["name"] for r in then] == ["Alice"]
    assert then[0]["valid_from"].startswith("2026-01-10") and then[0]["valid_until"].startswith("2026-05-01")
    assert memory.relations("Bob", user_id="u", as_of="2025-12-31T00:00:00Z")["results"] == []
    assert memory.path("Alice", "Bob", user_id="u")["found"] is False
    assert memory.path("Alice", "Bob", user_id="u", as_of="2026-03-01T00:00:00Z")["found"] is True
    assert [n["name"] for n in memory.neighbours("Bob", user_id="u", as_of="2026-03-01T00:00:00Z")["results"]] == [
        "Alice"
    ]


def test_aliases_merge_into_one_entity(memory: Memory, llm: FakeLLM) -> None:
    tell(memory, llm, fact("Alice likes tea.", "Alice"))
    tell(
        memory,
        llm,
        fact("Alice Chen joined Acme.", "Alice Chen", "Acme", relations=(("Alice Chen", "works_at", "Acme", True),)),
    )
    tell(memory, llm, fact("The user's manager Alice approved the trip.", "my manager Alice", "user",
                           relations=(("user", "reports_to", "my manager Alice", True),)))  # fmt: skip
    people = [e for e in memory.entities(user_id="u")["results"] if e["name"] != "Acme"]
    alice = next(e for e in people if e["name"] == "Alice Chen")
    assert "Alice" in alice["aliases"] and [e["name"] for e in people].count("Alice") == 0
    for name in ("Alice", "alice chen", "my manager Alice", alice["id"]):
        found = memory.relations(name, user_id="u")["results"]
        assert sorted(r["predicate"] for r in found) == ["reports_to", "works_at"], name


def test_homonyms_in_different_scopes_stay_apart(memory: Memory, llm: FakeLLM) -> None:
    tell(
        memory, llm, fact("Alice manages Bob.", "Alice", "Bob", relations=(("Alice", "manages", "Bob"),)), user_id="u1"
    )
    tell(memory, llm, fact("Alice is a cat.", "Alice", kind="other"), user_id="u2")
    (one,) = [e for e in memory.entities(user_id="u1")["results"] if e["name"] == "Alice"]
    (two,) = memory.entities(user_id="u2")["results"]
    assert one["id"] != two["id"] and (one["user_id"], two["user_id"]) == ("u1", "u2")
    assert [r["object"]["name"] for r in memory.relations("Alice", user_id="u1")["results"]] == ["Bob"]
    assert memory.relations("Alice", user_id="u2")["results"] == []
    with pytest.raises(EntityNotFound, match="user_id='u2'"):
        memory.relations(one["id"], user_id="u2")  # an id from another scope is not found there
    with pytest.raises(EntityNotFound):
        memory.neighbours("Bob", user_id="u2")


def test_offline_adds_link_the_names_they_find(memory: Memory, engine: Memory) -> None:
    ids = [
        r["id"]
        for r in memory.add(
            [
                {"role": "user", "content": "I had lunch with Alice Chen at Google yesterday."},
                {"role": "user", "content": "Then we met Bob in Zurich."},
            ],
            user_id="u",
            infer=False,
        )["results"]
    ]
    assert sorted(e["name"] for e in memory.entities(user_id="u")["results"]) == [
        "Alice Chen",
        "Bob",
        "Google",
        "Zurich",
    ]
    assert memory.relations("Alice Chen", user_id="u")["results"] == []  # no relations without an LLM
    found = engine.store.memory_entities(ids)
    names = {e["id"]: e["name"] for e in memory.entities(user_id="u")["results"]}
    assert [sorted(names[i] for i in found[m]) for m in ids] == [["Alice Chen", "Google"], ["Bob", "Zurich"]]
    hits = memory.search("Where did Alice eat?", user_id="u", graph=True, explain=True)["results"]
    assert hits[0]["id"] == ids[0]
    assert hits[0]["explain"]["graph"] == {"entity": "Alice Chen", "via": "Alice Chen", "relation": None,
                                           "distance": 0, "value": 1.0}  # fmt: skip


def test_an_offline_message_names_its_speaker(memory: Memory) -> None:
    said = [{"role": "user", "name": "Caroline", "content": "I researched adoption agencies with Mel."}]
    (mid,) = [r["id"] for r in memory.add(said, user_id="u", infer=False)["results"]]
    people = {e["name"]: e["type"] for e in memory.entities(user_id="u")["results"]}
    assert people == {"Caroline": "person", "Mel": None}  # the speaker is the "I" of the message
    hits = memory.search("What did Caroline research?", user_id="u", graph=True, explain=True)["results"]
    assert hits[0]["id"] == mid and hits[0]["explain"]["graph"]["entity"] == "Caroline"


def test_an_edited_text_keeps_the_entities_it_still_names_and_links_new_names(
    memory: Memory, engine: Memory, llm: FakeLLM
) -> None:
    (mid,) = tell(
        memory, llm, fact("Bob reports to Alice.", "Bob", "Alice", relations=(("Bob", "reports_to", "Alice", True),))
    )

    def named() -> list[tuple[str, str | None]]:
        ids = engine.store.memory_entities([mid])[mid]
        return sorted((e["name"], e["type"]) for e in map(memory.entity, ids))

    memory.update(mid, metadata={"checked": True})
    assert named() == [("Alice", "person"), ("Bob", "person")]  # no new text: links unchanged
    memory.update(mid, data="Bob reports to Carol Jones now.")
    assert named() == [("Bob", "person"), ("Carol Jones", None)]  # Bob kept (and typed), Carol found, Alice gone
    assert [r["object"]["name"] for r in memory.relations("Bob", user_id="u")["results"]] == ["Alice"]  # relations stay


def test_search_graph_finds_a_memory_only_a_neighbour_mentions(memory: Memory, llm: FakeLLM) -> None:
    tell(memory, llm, fact("Alice manages Bob.", "Alice", "Bob", relations=(("Alice", "manages", "Bob"),)))
    tell(memory, llm, fact("Zoe is training for a marathon.", "Zoe"))
    tell(memory, llm, fact("Bob is training for a marathon.", "Bob"))
    tell(memory, llm, fact("Yuri is training for a marathon in Oslo.", "Yuri", "Oslo"))
    query = "Is anyone on Alice's team training for a marathon?"
    plain = memory.search(query, user_id="u", explain=True)["results"]
    assert "Bob" not in plain[0]["memory"] and all("graph" not in h["explain"] for h in plain)
    hits = memory.search(query, user_id="u", graph=True, explain=True)["results"]
    assert hits[0]["memory"] == "Bob is training for a marathon."
    assert hits[0]["explain"]["graph"] == {"entity": "Bob", "via": "Alice", "relation": "manages", "distance": 1,
                                           "value": 0.5}  # fmt: skip
    assert hits[0]["explain"]["weights"]["graph"] == 0.15 and "graph" in hits[0]["explain"]["sources"]
    assert "graph" not in next(h for h in hits if h["memory"].startswith("Zoe"))["explain"]


def test_a_short_page_ranks_as_the_top_of_a_long_one(memory: Memory, llm: FakeLLM) -> None:
    # Only candidates that could reach the page are looked up; the order must not depend on it.
    tell(memory, llm, fact("Alice manages Bob.", "Alice", "Bob", relations=(("Alice", "manages", "Bob"),)))
    for name, text in [
        ("Bob", "Bob runs marathons."),
        ("Zoe", "Zoe runs a cafe."),
        ("Alice", "Alice runs a team."),
        ("Yuri", "Yuri runs far."),
        ("Bob", "Bob likes tea."),
        ("Zoe", "Zoe met Alice."),
    ]:
        tell(memory, llm, fact(text, name))  # fmt: skip
    query = "Who on Alice's team runs?"
    full = memory.search(query, user_id="u", graph=True, limit=20)["results"]
    for k in (1, 2, 3):
        page = memory.search(query, user_id="u", graph=True, limit=k)["results"]
        assert [(h["id"], h["score"]) for h in page] == [(h["id"], h["score"]) for h in full[:k]]


def test_graph_memories_join_the_candidates_within_scope_filter_and_time(
    memory: Memory, engine: Memory, llm: FakeLLM
) -> None:
    tell(memory, llm, fact("Alice manages Bob.", "Alice", "Bob", relations=(("Alice", "manages", "Bob"),)))
    (hobby,) = tell(memory, llm, fact("Bob plays the cello every Sunday.", "Bob"), metadata={"topic": "hobby"})
    (choir,) = tell(memory, llm, fact("Bob sang in a choir.", "Bob"), metadata={"topic": "work"})
    for i in range(12):
        tell(memory, llm, fact(f"Zed{i} does karaoke for fun with friends.", f"Zed{i}"))
    query = "What does Alice's report do for fun?"
    # Dense search proposes the 6 nearest (3 x limit): the cello memory, sharing no word with the
    # query, is not among them, and joins through the graph (Alice manages Bob, who plays it).
    store, scope, qvec = engine.store, Scope(user_id="u"), engine.embedder.embed([query], kind="query")[0]
    now = datetime.now(UTC)
    pool, _ = gather_candidates(store, scope, None, qvec, query_terms(query), 6, now, None)
    cello = next(r.rid for r in store.list(scope, None, limit=100, now=None) if r.id == hobby)
    assert cello not in pool.rows
    links = graph_candidates(store, scope, None, query, qvec, query_terms(query), pool, now, None)
    assert links.joined[cello] == hobby and pool.sources[cello] == ["graph"] and cello in pool.cosine
    assert links.by_memory[hobby]["via"] == "Alice"
    # Through the API: the filter, the scope and the time hold for what the graph brings too.
    hits = memory.search(query, user_id="u", graph=True, explain=True, limit=20)["results"]
    assert next(h for h in hits if h["id"] == hobby)["explain"]["graph"]["relation"] == "manages"
    filtered = memory.search(query, user_id="u", graph=True, filters={"topic": "work"}, limit=20)["results"]
    assert [h["id"] for h in filtered] == [choir]
    assert memory.search(query, user_id="other", graph=True)["results"] == []
    assert memory.search(query, user_id="u", graph=True, as_of="2026-01-01T00:00:00Z")["results"] == []


def test_search_without_graph_or_entities_ranks_as_before(memory: Memory, llm: FakeLLM) -> None:
    tell(memory, llm, fact("Alice manages Bob.", "Alice", "Bob", relations=(("Alice", "manages", "Bob"),)))
    tell(memory, llm, fact("The user likes green tea.", "user"))
    plain = memory.search("Who manages Bob?", user_id="u", explain=True)
    assert memory.search("Who manages Bob?", user_id="u", explain=True, graph=False) == plain
    no_names = memory.search("what drink is liked?", user_id="u", explain=True)
    assert memory.search("what drink is liked?", user_id="u", explain=True, graph=True) == no_names


def test_graph_errors_say_how_to_fix(memory: Memory, llm: FakeLLM) -> None:
    tell(memory, llm, fact("Alice Chen met Alice Wong.", "Alice Chen", "Alice Wong"))
    with pytest.raises(EntityNotFound, match="entities") as info:
        memory.entity("no-such-id")
    assert isinstance(info.value, MemoryNotFound) and isinstance(info.value, LookupError)
    with pytest.raises(EntityNotFound, match="'Nobody'"):
        memory.relations("Nobody", user_id="u")
    with pytest.raises(InvalidRequest, match=r"several entities.*Alice Chen.*Alice Wong.*pass the id"):
        memory.relations("Alice", user_id="u")
    with pytest.raises(ScopeRequired):
        memory.entities()
    with pytest.raises(ScopeRequired):
        memory.relations("Alice Chen")
    with pytest.raises(InvalidRequest, match="depth"):
        memory.neighbours("Alice Chen", user_id="u", depth=0)
    with pytest.raises(InvalidRequest, match="direction"):
        memory.relations("Alice Chen", user_id="u", direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="graph"):
        memory.search("Alice", user_id="u", graph="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="entity"):
        memory.relations("  ", user_id="u")


async def test_async_memory_reads_the_same_graph(tmp_path: Path, llm: FakeLLM) -> None:
    async with AsyncMemory(tmp_path / "a.db", embedder=HashEmbedder(), llm=llm, config=CONFIG) as m:
        llm.queue({"facts": [fact("Alice manages Bob.", "Alice", "Bob", relations=(("Alice", "manages", "Bob"),))]})
        await m.add("Alice manages Bob", user_id="u")
        (alice,) = [e for e in (await m.entities(user_id="u"))["results"] if e["name"] == "Alice"]
        assert await m.entity(alice["id"]) == alice
        assert [r["predicate"] for r in (await m.relations("Alice", user_id="u"))["results"]] == ["manages"]
        assert [n["name"] for n in (await m.neighbours("Bob", user_id="u"))["results"]] == ["Alice"]
        assert (await m.path("Bob", "Alice", user_id="u"))["found"] is True
        hits = await m.search("Alice", user_id="u", graph=True, explain=True)
        assert hits["results"][0]["explain"]["graph"]["via"] == "Alice"
