"""Consolidation through ``Memory``: merges, supersessions, episodic summaries, decay, archiving,
caps, access statistics, profiles and restore, on SQLite and on PostgreSQL.

The LLM is a scripted :class:`memlane.testing.FakeLLM` that answers by prompt (``schema_name``):
"consolidation" (merge / supersede judgements), "summary" and "profile".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import store_for

from memlane import AsyncMemory, InvalidRequest, Memory, MemoryNotFound, ProviderError
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder
from memlane.testing._fake_llm import FakeRequest

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["embedded", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def make(
    tmp_path: Path, clock: FrozenClock, backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Memory]]:
    """``make(**kwargs)``: a Memory on this test's store (hash embedder, frozen clock)."""
    opened: list[Memory] = []
    store = store_for(backend, request, tmp_path / "m.db")

    def build(**kwargs: Any) -> Memory:
        kw = {"embedder": HashEmbedder(), "clock": clock, **kwargs}
        m = Memory(**store, **kw) if not opened else Memory(**store_for(backend, request, tmp_path / "m.db"), **kw)
        opened.append(m)
        return m

    yield build
    for m in opened:
        m.close()


def said(memory: Memory, *texts: str, **scope: Any) -> list[str]:
    """Store ``texts`` verbatim (one add each, so each is its own message); their ids."""
    scope = scope or {"user_id": "alice"}
    return [memory.add(t, infer=False, **scope)["results"][0]["id"] for t in texts]


def texts(memory: Memory, **kwargs: Any) -> list[str]:
    scope = {k: kwargs.pop(k) for k in ("user_id", "agent_id", "run_id") if k in kwargs} or {"user_id": "alice"}
    return sorted(r["memory"] for r in memory.get_all(**scope, **kwargs)["results"])


def by_prompt(**answers: Any) -> Callable[[FakeRequest], Any]:
    """A FakeLLM reply that answers each prompt kind from ``answers`` (a value or a callable)."""

    def reply(request: FakeRequest) -> Any:
        answer = answers[request.schema_name]
        return answer(request) if callable(answer) else answer

    return reply


# -- without an LLM: near-exact duplicates ---------------------------------------------------------
def test_near_exact_duplicates_merge_into_the_first_and_leave_search(make: Callable[..., Memory]) -> None:
    m = make(config={"consolidation": {"merge_cosine": 0.5}})  # the hash embedder counts "really" and "the"
    keep, a, b, other = said(m, "I love sushi!", "i love sushi", "I really love the sushi.", "I don't love sushi")
    report = m.consolidate(user_id="alice")
    assert [(x["into"], sorted(x["ids"])) for x in report["merged"]] == [(keep, sorted([a, b]))]
    assert report["examined"] == 4 and report["scopes"] == 1 and report["usage"]["llm_calls"] == 0
    assert "episodic summaries: no LLM configured" in report["skipped"]
    assert texts(m) == ["I don't love sushi", "I love sushi!"]
    assert {r["id"] for r in m.search("sushi", user_id="alice")["results"]} == {keep, other}
    shown = m.search("sushi", user_id="alice", include_merged=True)["results"]
    assert {r["id"] for r in shown} == {keep, a, b, other}
    assert {r["id"]: r.get("state") for r in shown}[a] == "merged"
    merged = m.get(a)
    assert merged["state"] == "merged" and merged["merged_into"] == keep and merged["memory"] == "i love sushi"
    assert [e["event"] for e in m.history(a)] == ["ADD", "MERGE"]
    assert m.history(a)[-1]["new_memory"] == "I love sushi!"
    assert len(m.get_all(user_id="alice", include_merged=True)["results"]) == 4


def test_a_second_pass_changes_nothing_and_a_dry_run_nothing_at_all(make: Callable[..., Memory]) -> None:
    m = make(config={"consolidation": {"merge_cosine": 0.5}})
    said(m, "Moved to Berlin.", "moved to berlin", "Has two cats", "has 2 cats", "Alice reports to Bob")
    before = list(m.export_records(user_id="alice"))
    dry = m.consolidate(user_id="alice", dry_run=True)
    assert list(m.export_records(user_id="alice")) == before
    real = m.consolidate(user_id="alice")
    assert dry["merged"] == real["merged"] and len(real["merged"]) == 2
    after = list(m.export_records(user_id="alice"))
    again = m.consolidate(user_id="alice")
    assert again["merged"] == [] and again["archived"] == [] and again["profiles"] == []
    assert list(m.export_records(user_id="alice")) == after


def test_what_differs_in_meaning_never_merges(make: Callable[..., Memory]) -> None:
    m = make()
    said(
        m,
        "Alice reports to Bob", "Bob reports to Alice",  # order
        "I like tea", "I don't like tea", "I used to like tea",  # negation, tense
        "I have 2 cats", "I have 3 cats",  # numbers
        "Lives in Paris", "Lives in Berlin",
        "Likes coffee", "Likes coffee without sugar",
    )  # fmt: skip
    assert m.consolidate(user_id="alice")["merged"] == []
    assert len(texts(m)) == 11


def test_speakers_metadata_and_scopes_never_mix(make: Callable[..., Memory]) -> None:
    m = make()
    m.add({"role": "user", "content": "Thanks!", "name": "Caroline"}, user_id="alice", infer=False)
    m.add({"role": "user", "content": "thanks", "name": "Melanie"}, user_id="alice", infer=False)
    m.add("Great news", user_id="alice", infer=False, metadata={"topic": "a"})
    m.add("great news!", user_id="alice", infer=False, metadata={"topic": "b"})
    said(m, "I love jazz", user_id="bob")
    said(m, "i love jazz", user_id="alice")
    said(m, "Booked the hotel", user_id="alice", run_id="r1")
    said(m, "booked the hotel.", user_id="alice", run_id="r2")
    report = m.consolidate(user_id="alice")
    assert report["merged"] == [] and report["scopes"] == 3
    assert m.consolidate()["merged"] == []  # the whole store: still nothing across scopes


def test_a_merge_joins_sources_and_entities_and_delete_takes_the_merged_too(make: Callable[..., Memory]) -> None:
    m = make()
    keep, gone = said(m, "Dinner with Priya at Luigi's.", "dinner with Priya at Luigi's")
    m.consolidate(user_id="alice")
    names = {e["name"] for e in m.entities(user_id="alice")["results"]}
    assert "Priya" in names
    assert [s["content"] for s in m.get(keep, include_sources=True)["sources"]] == ["Dinner with Priya at Luigi's."]
    m.delete(keep)
    for mid in (keep, gone):
        with pytest.raises(MemoryNotFound):
            m.get(mid)
    assert m.get_all(user_id="alice", include_merged=True)["results"] == []


def test_a_restored_memory_is_kept_apart_from_then_on(make: Callable[..., Memory]) -> None:
    m = make()
    _, gone = said(m, "I love sushi!", "i love sushi")
    m.consolidate(user_id="alice")
    m.restore(gone)  # someone decided these two stay apart
    assert m.consolidate(user_id="alice")["merged"] == []
    assert texts(m) == ["I love sushi!", "i love sushi"]


def test_adding_a_merged_text_again_makes_a_new_memory(make: Callable[..., Memory]) -> None:
    m = make()
    keep, gone = said(m, "I love sushi!", "i love sushi")
    m.consolidate(user_id="alice")
    again = m.add("i love sushi", user_id="alice", infer=False)["results"][0]
    assert again["event"] == "ADD" and again["id"] not in (keep, gone)
    assert m.consolidate(user_id="alice")["merged"] == [{"into": keep, "ids": [again["id"]], "memory": "I love sushi!"}]


# -- decay, archiving and caps --------------------------------------------------------------------
def test_idle_memories_are_archived_never_deleted_and_restore_brings_one_back(
    make: Callable[..., Memory], clock: FrozenClock
) -> None:
    m = make(config={"consolidation": {"archive_after_days": 30}})
    used, idle = said(m, "The wifi password is hunter2", "Parked on level 3")
    clock.advance(days=20)
    assert m.search("wifi password", user_id="alice", limit=1)["results"][0]["id"] == used
    m.close()  # flushes the access counts
    clock.advance(days=15)  # idle: 35 days; used: 15 days since it was retrieved
    report = m.consolidate(user_id="alice")
    assert [(a["id"], a["reason"]) for a in report["archived"]] == [(idle, "idle")]
    assert texts(m) == ["The wifi password is hunter2"]
    assert texts(m, include_archived=True) == ["Parked on level 3", "The wifi password is hunter2"]
    assert idle not in {r["id"] for r in m.search("parked level", user_id="alice")["results"]}
    assert m.search("parked level", user_id="alice", include_archived=True)["results"][0]["id"] == idle
    assert m.get(idle)["state"] == "archived" and m.history(idle)[-1]["event"] == "ARCHIVE"
    assert m.restore(idle)["memory"] == "Parked on level 3"
    assert "state" not in m.get(idle) and m.history(idle)[-1]["event"] == "ADD"
    with pytest.raises(InvalidRequest):
        m.restore(idle)  # active already


def test_a_cap_archives_the_least_retrieved_first(make: Callable[..., Memory], clock: FrozenClock) -> None:
    m = make(config={"consolidation": {"max_memories": 3}})
    ids = said(m, "Fact one about apples", "Fact two about boats", "Fact three about cars", "Fact four about dogs",
               "Fact five about eels")  # fmt: skip
    clock.advance(minutes=1)
    for query in ("apples", "boats", "cars"):
        m.search(query, user_id="alice", limit=1)
    report = m.consolidate(user_id="alice")
    assert sorted(a["id"] for a in report["archived"]) == sorted(ids[3:])
    assert {a["reason"] for a in report["archived"]} == {"cap"}
    assert len(texts(m)) == 3 and m.consolidate(user_id="alice")["archived"] == []
    clock.advance(minutes=1)
    m.restore(ids[4])  # wanted back: it counts as retrieved now, later than the others were
    (again,) = m.consolidate(user_id="alice")["archived"]
    assert again["id"] in ids[:3] and again["reason"] == "cap"


def test_retrievals_are_counted_and_idle_memories_sink(make: Callable[..., Memory], clock: FrozenClock) -> None:
    m = make()
    old, fresh = said(m, "Favourite colour: green", "Favourite colour: blue")
    clock.advance(days=200)
    m.search("colour blue", user_id="alice", limit=1)
    hits = m.search("favourite colour", user_id="alice")["results"]
    # Equally relevant, but old has been idle 200 days (twice stale_after_days): it keeps 80 %.
    assert [h["id"] for h in hits] == [fresh, old]
    assert hits[1]["score"] == pytest.approx(0.8 * hits[0]["score"], rel=0.05)
    m.close()  # writes the counts
    m.get(old)
    assert m.store.access([old, fresh])[fresh][0] >= 2


# -- with an LLM: judgements, summaries, profiles --------------------------------------------------
def test_an_llm_merges_paraphrases_and_supersedes_what_a_newer_memory_contradicts(
    make: Callable[..., Memory], clock: FrozenClock
) -> None:
    def judge(request: FakeRequest) -> dict[str, Any]:
        lines = {line.split(": ", 1)[1].rsplit(" (", 1)[0]: line.split(":")[0] for line in request.user.splitlines()
                 if line.startswith("m")}  # fmt: skip
        merges = []
        if "Enjoys hiking" in lines and "Likes to go hiking" in lines:
            merges.append({"ids": [lines["Enjoys hiking"], lines["Likes to go hiking"]], "text": "Enjoys hiking."})
        supersedes = []
        if "Lives in Berlin" in lines and "Moved to Amsterdam in May 2026" in lines:
            supersedes.append({"old": lines["Lives in Berlin"], "new": lines["Moved to Amsterdam in May 2026"]})
        return {"merges": merges, "supersedes": supersedes}

    llm = FakeLLM(default=by_prompt(consolidation=judge, summary={"summary": "x"}, profile={}))
    m = make(llm=llm, config={"consolidation": {"llm_cosine": 0.0, "summaries": False, "profiles": False}})
    hiking, hiking2 = said(m, "Enjoys hiking", "Likes to go hiking")
    berlin = said(m, "Lives in Berlin")[0]
    clock.advance(days=30)
    amsterdam = said(m, "Moved to Amsterdam in May 2026")[0]
    report = m.consolidate(user_id="alice")
    assert report["merged"] == [{"into": hiking, "ids": [hiking2], "memory": "Enjoys hiking."}]
    assert report["superseded"] == [{"id": berlin, "by": amsterdam, "memory": "Lives in Berlin"}]
    assert report["usage"]["llm_calls"] >= 1
    assert texts(m) == ["Enjoys hiking.", "Moved to Amsterdam in May 2026"]
    assert [e["event"] for e in m.history(hiking)] == ["ADD", "UPDATE"]
    with pytest.raises(MemoryNotFound):
        m.get(berlin)  # superseded: a past version now
    assert m.history(berlin)[-1]["event"] == "DELETE"
    past = m.search("Berlin", user_id="alice", as_of=T0 + timedelta(days=1))["results"]
    assert [r["memory"] for r in past][:1] == ["Lives in Berlin"]
    assert m.consolidate(user_id="alice")["merged"] == []


def test_an_llm_answer_naming_unknown_or_cross_group_ids_changes_nothing(make: Callable[..., Memory]) -> None:
    answer = {"merges": [{"ids": ["m1", "m99"], "text": "x"}], "supersedes": [{"old": "m7", "new": "m1"}]}
    llm = FakeLLM(default=by_prompt(consolidation=answer, summary={"summary": "x"}, profile={}))
    m = make(llm=llm, config={"consolidation": {"llm_cosine": 0.0, "summaries": False, "profiles": False}})
    said(m, "Enjoys hiking", "Likes to go hiking")
    report = m.consolidate(user_id="alice")
    assert report["merged"] == [] and report["superseded"] == []
    assert len(texts(m)) == 2


def test_finished_runs_and_sessions_get_one_episodic_summary_each(
    make: Callable[..., Memory], clock: FrozenClock
) -> None:
    summaries = iter(["Alice planned the Lisbon trip.", "Alice and Bo talked about books.", "Run summary."])
    llm = FakeLLM(default=by_prompt(consolidation={"merges": [], "supersedes": []},
                                    summary=lambda r: {"summary": next(summaries)}, profile={}))  # fmt: skip
    m = make(llm=llm, config={"consolidation": {"profiles": False}})
    first = said(m, "Booked flights to Lisbon", "Hotel near the river", "Checked in on Friday", "Packed the camera")
    clock.advance(hours=6)  # a pause ends the session
    second = said(m, "Bo recommended Dune", "Reading it on the train", "Dune is long", "Finished part one")
    clock.advance(hours=6)
    said(m, "Opened the report", "Fixed the chart", "Sent it to Bo", "Archived the draft", user_id="alice",
         run_id="task-7")  # fmt: skip
    clock.advance(hours=6)
    report = m.consolidate(user_id="alice")
    written = {s["memory"]: s for s in report["summaries"]}
    assert set(written) == {"Alice planned the Lisbon trip.", "Alice and Bo talked about books.", "Run summary."}
    lisbon = written["Alice planned the Lisbon trip."]
    assert lisbon["sources"] == first and written["Alice and Bo talked about books."]["sources"] == second
    assert written["Run summary."]["episode"] == "run:task-7"
    item = m.get(lisbon["id"] or "", include_sources=True)
    assert item["metadata"]["memory_type"] == "episodic" and item["timestamp"] == m.get(first[-1])["timestamp"]
    assert [s.get("memory_id") for s in item["sources"]] == first
    assert m.search("Lisbon trip", user_id="alice", limit=1)["results"][0]["id"] == lisbon["id"]
    assert m.consolidate(user_id="alice")["summaries"] == []  # covered episodes stay covered


def test_a_session_still_going_on_waits(make: Callable[..., Memory], clock: FrozenClock) -> None:
    llm = FakeLLM(default=by_prompt(consolidation={"merges": [], "supersedes": []}, summary={"summary": "S."},
                                    profile={}))  # fmt: skip
    m = make(llm=llm, config={"consolidation": {"profiles": False}})
    said(m, "One thing", "Another thing", "A third thing", "A fourth thing")
    clock.advance(minutes=30)
    assert m.consolidate(user_id="alice")["summaries"] == []
    clock.advance(hours=5)
    assert len(m.consolidate(user_id="alice")["summaries"]) == 1


def test_an_llm_failure_keeps_finished_steps_and_a_rerun_goes_on(make: Callable[..., Memory]) -> None:
    llm = FakeLLM(ProviderError("model down", provider="fake"), default=by_prompt(
        consolidation={"merges": [], "supersedes": []}, summary={"summary": "S."}, profile={}))  # fmt: skip
    m = make(llm=llm, config={"consolidation": {"llm_cosine": 0.0}})
    said(m, "I love sushi!", "i love sushi", "Enjoys hiking", "Likes to go hiking")
    with pytest.raises(ProviderError):
        m.consolidate(user_id="alice")
    assert len(texts(m)) == 3  # the near-exact merge ran before the LLM step and stays
    assert m.consolidate(user_id="alice")["merged"] == []


def test_an_unusable_answer_skips_that_step_and_the_pass_goes_on(make: Callable[..., Memory]) -> None:
    llm = FakeLLM(default=by_prompt(consolidation="no json here", summary={"summary": "S."}, profile="nor here"))
    m = make(llm=llm, config={"consolidation": {"llm_cosine": 0.0, "summaries": False}})
    said(m, "I love sushi!", "i love sushi", "Enjoys hiking", "Likes to go hiking")
    report = m.consolidate(user_id="alice")
    assert len(report["merged"]) == 1  # the near-exact merge
    assert report["skipped"] == [
        "1 group of similar memories: the model gave no usable answer (kept as it was; the next pass asks again)",
        "profile of 'alice': the model gave no usable answer (kept as it was; the next pass asks again)",
    ]
    assert m.store.profile(m.store.scopes(None)[0]) is None


def test_the_profile_is_built_by_the_llm_with_sources(make: Callable[..., Memory]) -> None:
    def profile(request: FakeRequest) -> dict[str, Any]:
        ids = {line.split(": ", 1)[1].rsplit(" (", 1)[0]: line.split(":")[0] for line in request.user.splitlines()}
        return {
            "preferences": [{"text": "Vegetarian", "sources": [ids["Is vegetarian"]]}],
            "people": [{"text": "Sister Ana", "sources": [ids["Has a sister, Ana"], "m404"]}],
            "places": [{"text": "Lives in Porto", "sources": [ids["Lives in Porto"]]}],
            "work": [{"text": "Unfounded", "sources": []}],
            "other": [],
        }

    llm = FakeLLM(default=by_prompt(consolidation={"merges": [], "supersedes": []}, summary={"summary": "S."},
                                    profile=profile))  # fmt: skip
    m = make(llm=llm, config={"consolidation": {"summaries": False}})
    veg, ana, porto = said(m, "Is vegetarian", "Has a sister, Ana", "Lives in Porto")
    report = m.consolidate(user_id="alice")
    assert report["profiles"] == ["alice"]
    p = m.profile(user_id="alice")
    assert p["mode"] == "llm" and p["memories"] == 3
    assert p["sections"]["preferences"] == [{"text": "Vegetarian", "sources": [veg]}]
    assert p["sections"]["people"] == [{"text": "Sister Ana", "sources": [ana]}]
    assert p["sections"]["work"] == []  # an entry resting on nothing shown is dropped
    assert p["text"] == "Preferences: Vegetarian\nPeople: Sister Ana\nPlaces: Lives in Porto"
    calls = len(llm.requests)
    assert m.consolidate(user_id="alice")["profiles"] == [] and len(llm.requests) == calls
    m.delete(porto)  # a profile never keeps what was deleted
    assert m.store.profile(m.store.scopes(None)[0]) is None


def test_without_an_llm_the_profile_comes_from_the_graph(make: Callable[..., Memory]) -> None:
    m = make()
    m.add({"role": "user", "content": "I love climbing with Priya in Lisbon", "name": "Alice"}, user_id="alice",
          infer=False)  # fmt: skip
    p = m.profile(user_id="alice")
    assert p["mode"] == "graph" and p["updated_at"] is not None
    named = [e["text"] for e in p["sections"]["people"] + p["sections"]["other"]]
    assert "Priya" in named and "Lisbon" in named
    assert p["sections"]["preferences"][0]["text"] == "I love climbing with Priya in Lisbon"
    assert m.profile(user_id="nobody")["mode"] == "empty"
    with pytest.raises(InvalidRequest):
        m.profile(user_id="alice", refresh="yes")  # type: ignore[arg-type]


def test_async_memory_awaits_the_same(tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncMemory(tmp_path / "a.db", embedder=HashEmbedder()) as m:
            await m.add("I love sushi!", user_id="u", infer=False)
            gone = (await m.add("i love sushi", user_id="u", infer=False))["results"][0]["id"]
            report = await m.consolidate(user_id="u")
            assert report["merged"][0]["ids"] == [gone]
            assert (await m.profile(user_id="u"))["user_id"] == "u"
            assert (await m.restore(gone))["id"] == gone

    asyncio.run(run())


def test_bad_arguments_are_refused(make: Callable[..., Memory]) -> None:
    m = make()
    with pytest.raises(InvalidRequest):
        m.consolidate(user_id="alice", dry_run="no")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        m.search("x", user_id="alice", include_merged="yes")  # type: ignore[arg-type]
    with pytest.raises(MemoryNotFound):
        m.restore("nope")
