"""Search quality with the real default embedder (all-MiniLM-L6-v2): meaning and rare tokens both count."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memlane import Memory
from memlane.testing import FrozenClock

pytestmark = pytest.mark.slow

FOOD = ["I'm vegetarian", "I don't eat meat or fish", "I love spicy Thai curries"]
UNRELATED = [
    "My car is a blue Toyota",
    "I work as a software engineer in Berlin",
    "My sister's birthday is in March",
    "The wifi password is on the fridge",
    "I prefer aisle seats on flights",
]
TARGET = "Grandma's lasagne recipe card is filed in the blue kitchen binder under ZX-4471"


@pytest.fixture
def real_memory(tmp_path: Path, real_embedder: Any) -> Iterator[Memory]:
    with Memory(path=tmp_path / "real.db", embedder=real_embedder, clock=FrozenClock()) as mem:
        yield mem


def _add(memory: Memory, texts: list[str], **scope: str) -> None:
    memory.add([{"role": "user", "content": t} for t in texts], **scope)


def test_meaning_without_shared_words(real_memory: Memory) -> None:
    _add(real_memory, [*UNRELATED[:3], *FOOD, *UNRELATED[3:]], user_id="alice")
    hits = real_memory.search("what should I cook tonight?", user_id="alice", explain=True)["results"]
    rank = {h["memory"]: i for i, h in enumerate(hits)}
    score = {h["memory"]: h["score"] for h in hits}
    assert set(rank) == set(FOOD + UNRELATED)
    assert max(rank[t] for t in FOOD) < min(rank[t] for t in UNRELATED), [h["memory"] for h in hits]
    assert min(score[t] for t in FOOD) > max(score[t] for t in UNRELATED)
    # No query word occurs in these memories: the ranking comes from meaning alone.
    for hit in hits:
        assert hit["explain"]["keyword"] == 0.0


def test_paraphrase_finds_the_fact(real_memory: Memory) -> None:
    _add(real_memory, [*FOOD, *UNRELATED], user_id="alice")
    top = real_memory.search("where does she keep the internet code?", user_id="alice")["results"][0]
    assert top["memory"] == "The wifi password is on the fridge"
    top = real_memory.search("which automobile do I drive?", user_id="alice")["results"][0]
    assert top["memory"] == "My car is a blue Toyota"


def _parcels() -> list[str]:
    """120 memories about parcels with tracking codes: closer to a parcel question than TARGET is."""
    items = [
        "shoes",
        "laptop",
        "books",
        "headphones",
        "jacket",
        "camera",
        "lamp",
        "kettle",
        "backpack",
        "watch",
        "blender",
        "printer",
    ]
    shops = ["Amazon", "Zalando", "eBay", "IKEA", "a local shop"]
    forms = [
        "My package with the {i} from {s} has tracking code ZX-{n} and has not arrived",
        "Where is my {i} from {s}? Its tracking code is ZX-{n}",
    ]
    return [
        form.format(i=item, s=shop, n=5000 + 37 * k)
        for k, (form, item, shop) in enumerate(itertools.product(forms, items, shops))
    ]


def test_keyword_only_hit_enters_results(real_memory: Memory) -> None:
    parcels = _parcels()
    assert not any("4471" in p for p in parcels)
    _add(real_memory, parcels, user_id="alice")
    real_memory.add(TARGET, user_id="alice")
    hits = real_memory.search("where is my parcel ZX-4471?", user_id="alice", limit=5, explain=True)["results"]
    assert len(hits) == 5
    found = [h for h in hits if h["memory"] == TARGET]
    assert found, f"the only memory holding ZX-4471 is missing: {[h['memory'] for h in hits]}"
    why = found[0]["explain"]
    # More than 100 parcel memories are nearer in embedding space: only the keyword index proposed it.
    # Proposed by keyword search (and as the follower of another hit), never by dense search.
    assert "keyword" in why["sources"] and "dense" not in why["sources"]
    assert "4471" in why["matched_terms"]
    assert why["keyword"] > 0 and why["entity"] == 1.0
    assert why["dense"] > 0, "a keyword-only candidate still gets its dense score"
    assert hits[0]["memory"] == TARGET
    assert all("dense" in h["explain"]["sources"] for h in hits if h["memory"] != TARGET)


def test_explain_shows_both_signals(real_memory: Memory) -> None:
    _add(real_memory, ["My order ZX-4471 has not arrived yet", *FOOD, *UNRELATED], user_id="alice")
    hits = real_memory.search("has order ZX-4471 arrived?", user_id="alice", explain=True)["results"]
    top = hits[0]
    assert top["memory"] == "My order ZX-4471 has not arrived yet"
    why = top["explain"]
    assert set(why["sources"]) == {"dense", "keyword"}
    assert why["dense"] > 0.3 and why["keyword"] > 0.1
    assert {"order", "4471", "arriv"} <= set(why["matched_terms"])
    assert why["weights"]["dense"] > 0 and why["weights"]["keyword"] > 0
    assert top["score"] > 2 * hits[1]["score"]
