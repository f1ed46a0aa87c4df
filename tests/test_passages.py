"""Long verbatim messages: stored whole, searched passage by passage, returned once with their best passage.

The store-level behaviour (indexes, scope, writes) is in the store contract
(``memlane.testing._passage_contract``); here the public API: ``Memory`` on SQLite and
PostgreSQL, ``MemoryClient`` over the REST server, export and import, limits, the MCP renderer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from server_harness import remote

from memlane import ConfigError, InvalidRequest, LLMRequired, Memory, MemoryItem, RequestTooLarge
from memlane.core.inputs import MAX_TEXT_CHARS
from memlane.integrations._common import format_memories
from memlane.mcp._render import render_memories
from memlane.protocols import Embedder
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder

NEEDLE = "The lighthouse keeper hides the spare key under the blue stone by the north door."
QUERY = "Where does the lighthouse keeper hide the spare key?"
_WORDS = (
    "report revenue costs hiring quarter growth market product team customer sales plan budget forecast "
    "meeting agenda office travel invoice supplier contract review schedule training"
).split()


def document(chars: int, needle: str = NEEDLE, seed: int = 7) -> str:
    """``chars`` characters of plain paragraphs about business, with ``needle`` as a paragraph in the middle."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    size = 0
    while size < chars:
        sentences = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 16))) for _ in range(rng.randint(2, 7))]
        paragraphs.append(" ".join(s.capitalize() + "." for s in sentences))
        size += len(paragraphs[-1]) + 2
    paragraphs.insert(len(paragraphs) // 2, needle)
    text = "\n\n".join(paragraphs)
    cut = text[: chars - 1].rstrip() + "."
    return cut + "x" * (chars - len(cut))


def _hit(results: list[MemoryItem], memory_id: str) -> MemoryItem:
    """The one result for ``memory_id`` (a long memory is never returned twice)."""
    mine = [r for r in results if r["id"] == memory_id]
    assert len(mine) == 1, f"{len(mine)} results for {memory_id}"
    return mine[0]


def _rows(memory: Memory, table: str) -> int:
    store: Any = memory.store  # a SQL store: count its rows directly
    return int(store._read(f"SELECT count(*) FROM {table}")[0][0])


# -- the public API on every backend -----------------------------------------------------------------
def test_a_long_message_is_one_memory_found_through_its_passage(memory: Memory) -> None:
    text = document(30_000)
    memory.add("I drink green tea every morning", user_id="u", infer=False)
    (added,) = memory.add(text, user_id="u", infer=False)["results"]
    assert added["event"] == "ADD" and added["memory"] == text
    results = memory.search(QUERY, user_id="u")["results"]
    assert results[0]["id"] == added["id"]
    hit = _hit(results, added["id"])
    passage = hit["passage"]
    assert NEEDLE in passage["text"] and text[passage["start"] : passage["end"]] == passage["text"]
    assert len(passage["text"]) <= 2000 and hit["memory"] == text
    tea = memory.search("green tea in the morning", user_id="u")["results"]
    assert tea[0]["memory"] == "I drink green tea every morning" and "passage" not in tea[0]
    got = memory.get(added["id"])
    assert got["memory"] == text and "passage" not in got
    assert memory.add(text, user_id="u", infer=False)["results"][0]["event"] == "NONE"  # an exact duplicate
    memory.delete(added["id"])
    assert all(r["id"] != added["id"] for r in memory.search(QUERY, user_id="u")["results"])


def test_update_cuts_the_new_text_into_passages(memory: Memory) -> None:
    mid = memory.add("a short note", user_id="u", infer=False)["results"][0]["id"]
    other = "The ferry to the island now leaves hourly from pier nine."
    memory.update(mid, document(20_000, needle=other))
    hit = _hit(memory.search("when does the ferry to the island leave?", user_id="u")["results"], mid)
    assert other in hit["passage"]["text"]
    assert all(r["id"] != mid for r in memory.search(QUERY, user_id="u", threshold=0.3)["results"])
    memory.update(mid, "short again")
    hit = _hit(memory.search("short again", user_id="u")["results"], mid)
    assert "passage" not in hit
    assert [e["event"] for e in memory.history(mid)] == ["ADD", "UPDATE", "UPDATE"]


@pytest.mark.parametrize("backend", ["embedded", "postgres"])
def test_two_million_characters(
    memory: Memory, reopen: Callable[..., Memory], tmp_path: Path, clock: FrozenClock
) -> None:
    text = document(2_000_000)
    assert len(text) == 2_000_000
    began = time.perf_counter()
    (added,) = memory.add(text, user_id="u", infer=False, metadata={"kind": "log"})["results"]
    ingest = time.perf_counter() - began
    mid = added["id"]
    passages = _rows(memory, "passages")
    assert 2000 <= passages <= 3200  # 1,000-character passages reaching back ~12 %
    hit = _hit(memory.search(QUERY, user_id="u")["results"], mid)
    assert memory.search(QUERY, user_id="u")["results"][0]["id"] == mid
    assert NEEDLE in hit["passage"]["text"] and hit["memory"] == text
    assert memory.search(QUERY, user_id="u", filters={"kind": "mail"})["results"] == []
    with reopen(embedder=HashEmbedder(), clock=clock) as again:
        assert NEEDLE in _hit(again.search(QUERY, user_id="u")["results"], mid)["passage"]["text"]
    records = list(memory.export_records())
    assert not any("passages" in r for r in records)  # re-derived on import, not exported
    with Memory(tmp_path / "copy.db", embedder=HashEmbedder(), clock=clock) as copy:
        assert copy.import_records(records)["imported"] == 1
        assert _rows(copy, "passages") == passages
        assert NEEDLE in _hit(copy.search(QUERY, user_id="u")["results"], mid)["passage"]["text"]
    memory.delete(mid)
    assert _rows(memory, "passages") == 0 and memory.search(QUERY, user_id="u")["results"] == []
    assert ingest < 120


def test_the_default_embedder_finds_the_passage(tmp_path: Path, real_embedder: Embedder) -> None:
    needle = "Our cat Miso is allergic to chicken, so she only eats salmon."
    text = document(60_000, needle=needle)
    with Memory(tmp_path / "m.db", embedder=real_embedder) as memory:
        mid = memory.add(text, user_id="u", infer=False)["results"][0]["id"]
        memory.add("I started learning the cello last spring", user_id="u", infer=False)
        hit = _hit(memory.search("what food can the cat not eat?", user_id="u")["results"], mid)
        assert needle in hit["passage"]["text"]
        assert memory.search("what food can the cat not eat?", user_id="u")["results"][0]["id"] == mid


def test_postgres_searches_many_passages_through_hnsw(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    from memlane.stores import postgres

    monkeypatch.setattr(postgres, "EXACT_SEARCH_ROWS", 8)  # every scope here is "large"
    store = postgres.PostgresStore(postgres_url, max_size=2, timeout=10.0)
    with Memory(store=store, embedder=HashEmbedder(), clock=clock) as memory:
        for i in range(12):
            memory.add(f"note {i} about the weekly team meeting", user_id="u", infer=False)
        mid = memory.add(document(30_000), user_id="u", infer=False)["results"][0]["id"]
        other = memory.add(document(30_000, needle="Nothing about keys here.", seed=3), user_id="u", infer=False)
        memory.add(document(30_000), user_id="other", infer=False)
        results = memory.search(QUERY, user_id="u", limit=20)["results"]
        assert NEEDLE in _hit(results, mid)["passage"]["text"]
        ids = [r["id"] for r in results]
        assert other["results"][0]["id"] not in ids[: ids.index(mid)]
        assert all(r["user_id"] == "u" for r in results)


# -- configuration, limits, bad input ----------------------------------------------------------------
def test_the_passage_size_is_configurable(tmp_path: Path) -> None:
    config = {"passages": {"max_chars": 500, "overlap": 0.1}}
    with Memory(tmp_path / "m.db", embedder=HashEmbedder(), config=config) as memory:
        mid = memory.add(document(20_000), user_id="u", infer=False)["results"][0]["id"]
        passage = _hit(memory.search(QUERY, user_id="u")["results"], mid)["passage"]
        assert NEEDLE in passage["text"] and len(passage["text"]) <= 500
        assert 40 <= _rows(memory, "passages") <= 100
        memory.add("x" * 400 + " and a short tail", user_id="u", infer=False)
        assert _rows(memory, "passages") <= 100  # at most max_chars: indexed whole
    for bad in ({"max_chars": 50}, {"overlap": 0.3}, {"size": 1000}):
        with pytest.raises(ConfigError, match="passages"):
            Memory(tmp_path / "m.db", embedder=HashEmbedder(), config={"passages": bad})


def test_extraction_keeps_its_limit_with_a_clear_error(tmp_path: Path) -> None:
    llm = FakeLLM()
    with Memory(tmp_path / "m.db", embedder=HashEmbedder(), llm=llm) as memory:
        long = document(MAX_TEXT_CHARS + 1)
        with pytest.raises(InvalidRequest, match="infer=False to store it verbatim"):
            memory.add(long, user_id="u")
        with pytest.raises(InvalidRequest, match="message 1 has"):
            memory.add([{"content": "hi"}, {"content": long}], user_id="u")
        assert llm.requests == [] and memory.get_all(user_id="u")["results"] == []
        assert memory.add(long, user_id="u", infer=False)["mode"] == "verbatim"
    with Memory(tmp_path / "n.db", embedder=HashEmbedder()) as memory, pytest.raises(LLMRequired):
        memory.add("x", user_id="u", infer=True)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("log line\x00\x01binary", "NUL characters"),
        ("bytes \udcff\udcfe decoded badly", "lone surrogate"),
        ("\x1b\x02\x03\x04\x05\x06\x07\x08 ok " * 50, "control characters"),
        (" \n\t\r ", "empty"),
        ("y" * 2_000_001, "the limit is 2000000"),
    ],
)
def test_binary_blank_and_oversized_messages_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        with pytest.raises(InvalidRequest, match=problem):
            memory.add(text, user_id="u", infer=False)
        with pytest.raises(InvalidRequest, match=problem):
            memory.add([{"role": "user", "content": text}], user_id="u", infer=False)
        coloured = "\x1b[31mERROR\x1b[0m disk full on /var\n" * 100  # a coloured log is text
        assert memory.add(coloured, user_id="u", infer=False)["results"][0]["event"] == "ADD"


# -- the REST server, MCP and framework adapters -------------------------------------------------------
def test_the_server_takes_two_million_characters_when_configured(tmp_path: Path) -> None:
    text = document(2_000_000)
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        # The defaults refuse it before anything runs: first the 1 MiB body limit, then max_text_chars.
        body_limit = pytest.raises(RequestTooLarge, match="limit of 1048576 bytes")
        with remote(memory, tmp_path / "defaults") as client, body_limit:
            client.add(text, user_id="u", infer=False)
        text_limit = pytest.raises(RequestTooLarge, match="2000000 characters; this server takes at most 32000")
        with remote(memory, tmp_path / "body", max_body_bytes=8 << 20) as client, text_limit:
            client.add(text, user_id="u", infer=False)
        assert memory.get_all(user_id="u")["results"] == []
        raised = {"max_body_bytes": 8 << 20, "max_text_chars": 2_000_000}
        with remote(memory, tmp_path / "raised", **raised) as client:
            mid = client.add(text, user_id="u", infer=False)["results"][0]["id"]
            hit = _hit(client.search(QUERY, user_id="u")["results"], mid)
            assert NEEDLE in hit["passage"]["text"] and hit["memory"] == text


def _item(memory: str, **extra: Any) -> MemoryItem:
    item = MemoryItem(
        id="m1", memory=memory, hash="h", user_id="u", agent_id=None, run_id=None, role="user", actor_id=None,
        metadata={}, created_at="2026-01-01T00:00:00+00:00", updated_at="2026-01-01T00:00:00+00:00",
        timestamp="2026-01-01T00:00:00+00:00", expires_at=None,
    )  # fmt: skip
    item.update(extra)  # type: ignore[typeddict-item]
    return item


def test_mcp_and_adapters_show_the_passage_not_the_document() -> None:
    text = document(50_000)
    start = text.index(NEEDLE)
    passage = {"start": start, "end": start + len(NEEDLE), "text": NEEDLE}
    shown, structured = render_memories([_item(text, passage=passage, score=0.8)], "Memories", None)
    assert NEEDLE in shown and len(shown) < 2000 and "of 50000" in shown
    out = structured["memories"][0]
    assert out["memory"] == NEEDLE and out["passage"] == {"start": start, "end": start + len(NEEDLE), "of_chars": 50000}
    listed, structured = render_memories([_item(text), _item("a short one")], "Stored memories", None)
    head = structured["memories"][0]
    assert len(listed) < 5000 and head["passage"] is not None and head["passage"]["of_chars"] == 50000
    assert text[: head["passage"]["end"]] == head["memory"] and 1000 <= len(head["memory"]) <= 2000
    assert structured["memories"][1]["passage"] is None and structured["memories"][1]["memory"] == "a short one"
    block = format_memories([_item(text, passage=passage)], {"user_id": "u"})
    assert NEEDLE in block and len(block) < 1000 and "excerpt of memory m1" in block


def test_chat_length_messages_are_indexed_whole_unless_split_above_is_lowered(tmp_path: Path) -> None:
    reply = " ".join(f"Step {i}: check the ferry timetable before leaving the harbour." for i in range(80))
    assert 4_000 < len(reply) < 8_000
    with Memory(tmp_path / "a.db", embedder=HashEmbedder()) as memory:
        memory.add(reply, user_id="u", infer=False)
        assert _rows(memory, "passages") == 0
    config = {"passages": {"split_above": 3_000}}
    with Memory(tmp_path / "b.db", embedder=HashEmbedder(), config=config) as memory:
        memory.add(reply, user_id="u", infer=False)
        assert _rows(memory, "passages") >= 3
