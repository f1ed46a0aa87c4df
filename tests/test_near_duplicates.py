"""Near-exact duplicate merging (``consolidate()`` without an LLM) against a labelled set.

``tests/data/near_duplicates.json`` holds pairs of memory texts written for this project, each
labelled ``duplicate`` or not with a ``kind``: positives differ only in case, punctuation,
articles, fillers, intensifiers, number words, inflection, whitespace or trailing emoji; hard
negatives differ in negation, a number, a role, a name, tense, one word or a qualifier; and
``paraphrase`` positives say the same fact in other words (only an LLM is expected to merge them).

Each pair is two memories in a scope of its own, stored with the default embedder
(all-MiniLM-L6-v2), and one ``consolidate()`` pass at the default configuration runs over them all.

The rule of ``memlane.core.consolidate`` gets a few pairs wrong today; they are listed below with
the reason, so that a new mistake fails here while the known ones wait for a change to the rule
(the strict xfail tests turn red once the rule is fixed: then empty the lists).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memlane import Memory
from memlane.core.consolidate import near_exact_key

DATA = Path(__file__).parent / "data" / "near_duplicates.json"

# Hard negatives merged at the default configuration, and why.
KNOWN_FALSE_MERGES = {
    ("The price went up 5%.", "The price went up $5."): "symbols ($ % €) are dropped as punctuation",
    ("It was -5 degrees this morning.", "It was 5 degrees this morning."): "a minus sign is dropped as punctuation",
    ("Tom got an A+ in maths.", "Tom got an A- in maths."): "'+'/'-' dropped, and 'a' is an article",
    ("Bob works at Google.", "Bob worked at Google."): "Snowball folds the past tense: worked -> work",
    ("Alice lives in Oslo.", "Alice lived in Oslo."): "Snowball folds the past tense: lived -> live",
    ("Maya owns a restaurant.", "Maya owned a restaurant."): "Snowball folds the past tense: owned -> own",
    ("The user uses Vim.", "The user used Vim."): "Snowball folds the past tense: used -> use",
    ("I play tennis on Saturdays.", "I played tennis on Saturdays."): "Snowball folds the past tense",
    ("Tom coaches the youth team.", "Tom coached the youth team."): "Snowball folds the past tense",
    ("Diego works in marketing.", "Diego works in a market."): "Snowball: marketing -> market",
    ("Maya sells paintings.", "Maya sells paints."): "Snowball: paintings -> paint",
    ("Alice needs glasses.", "Alice needs a glass."): "article dropped and plural folded",
    ("Alice has a cat.", "Alice has cats."): "article dropped and plural folded: one cat = several",
    ("Tom has a brother.", "Tom has brothers."): "article dropped and plural folded: one brother = several",
    ("I bought a new tyre.", "I bought new tyres."): "article dropped and plural folded",
}

# Positives (not paraphrases) left unmerged at the default configuration, and why.
KNOWN_MISSES = {
    ("I have twenty houseplants.", "I have 20 houseplants."): "number words stop at twelve",
    ("Hana is turning thirty this year.", "Hana is turning 30 this year."): "number words stop at twelve",
    ("The course lasts fifteen weeks.", "The course lasts 15 weeks."): "number words stop at twelve",
    ("Rent is $1,200 a month.", "Rent is $1200 a month."): "a thousands separator splits the number",
    ("I passed the exam", "I passed the exam :D"): "the emoticon ':D' leaves a word 'd'",
    ("Alice doesn't like tea.", "Alice does not like tea."): "contractions are not expanded",
    ("I'm a teacher.", "I am a teacher."): "contractions are not expanded",
    ("We've got a new car.", "We have got a new car."): "contractions are not expanded",
    ("I can't swim.", "I cannot swim."): "contractions are not expanded",
    ("Clara loves board games.", "Clara loves boardgames."): "a compound written as one word",
    ("I sent an e-mail to the landlord.", "I sent an email to the landlord."): "a hyphenated compound",
    ("Um, I just bought a new laptop!!!", "I bought a new laptop."): "same words, vectors 0.80 < merge_cosine 0.85",
}


def _pairs() -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = json.loads(DATA.read_text(encoding="utf-8"))["pairs"]
    return pairs


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> set[tuple[str, str]]:
    """The pairs that end up as one memory: one scope per pair, one pass over the whole store."""
    pairs = _pairs()
    pair_of: dict[str, tuple[str, str]] = {}
    out: set[tuple[str, str]] = set()
    with Memory(tmp_path_factory.mktemp("near-dup") / "m.db", embedder=real_embedder) as mem:
        for i, p in enumerate(pairs):
            first = mem.add(p["a"], user_id=f"pair-{i:03d}", infer=False)["results"][0]["id"]
            second = mem.add(p["b"], user_id=f"pair-{i:03d}", infer=False)["results"][0]["id"]
            if first == second:
                out.add((p["a"], p["b"]))  # equal once whitespace is collapsed: add kept one already
            pair_of[first] = pair_of[second] = (p["a"], p["b"])
        report = mem.consolidate()
        assert report["scopes"] == len(pairs)
        for m in report["merged"]:
            assert len(m["ids"]) == 1
            assert mem.get(m["ids"][0])["merged_into"] == m["into"]
            out.add(pair_of[m["into"]])
    return out


def _false_merges(merged: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(p["a"], p["b"]) for p in _pairs() if not p["duplicate"]} & merged


def _misses(merged: set[tuple[str, str]]) -> set[tuple[str, str]]:
    exact = {(p["a"], p["b"]) for p in _pairs() if p["duplicate"] and p["kind"] != "paraphrase"}
    return exact - merged


def test_the_labelled_set_is_large_and_labelled() -> None:
    pairs = _pairs()
    assert len(pairs) >= 250
    assert all(set(p) == {"a", "b", "duplicate", "kind"} and isinstance(p["duplicate"], bool) for p in pairs)
    kinds = {p["kind"] for p in pairs}
    assert {"negation", "swapped_roles", "modality", "antonym", "qualifier", "paraphrase", "number_word"} <= kinds
    assert len({(p["a"], p["b"]) for p in pairs}) == len(pairs)
    assert set(KNOWN_FALSE_MERGES) | set(KNOWN_MISSES) <= {(p["a"], p["b"]) for p in pairs}


def test_no_false_merge_beyond_the_known_gaps_of_the_rule(merged: set[tuple[str, str]]) -> None:
    assert _false_merges(merged) - set(KNOWN_FALSE_MERGES) == set()


def test_every_near_exact_positive_merges_but_the_known_gaps(merged: set[tuple[str, str]]) -> None:
    assert _misses(merged) - set(KNOWN_MISSES) == set()


@pytest.mark.xfail(strict=True, reason="the rule still merges the pairs in KNOWN_FALSE_MERGES")
def test_zero_false_merges(merged: set[tuple[str, str]]) -> None:
    assert _false_merges(merged) == set()


@pytest.mark.xfail(strict=True, reason="the rule still misses the pairs in KNOWN_MISSES")
def test_every_near_exact_positive_merges(merged: set[tuple[str, str]]) -> None:
    assert _misses(merged) == set()


def test_paraphrases_are_left_to_an_llm(merged: set[tuple[str, str]]) -> None:
    paraphrases = {(p["a"], p["b"]) for p in _pairs() if p["kind"] == "paraphrase"}
    assert paraphrases & merged == set()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Oh, I REALLY love the beach!!", "i love the beach"),
        ("haha my two dogs are named Rex and Luna 🐶", "My 2 dogs are named Rex and Luna."),
        ("The user's dentist is Dr. Okafor.", "User's dentist is Dr Okafor"),
        ("User prefer dark mode.", "User prefers dark mode."),
        ("I’m moving to Tallinn", "I'm moving to Tallinn :)"),
        ("Cafe\u0301 Lumen is my office", "Café Lumen is my office"),
    ],
)
def test_near_exact_key_sets_aside_what_says_nothing(a: str, b: str) -> None:
    assert near_exact_key(a) == near_exact_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("User likes coffee.", "User doesn't like coffee."),
        ("Tom will come.", "Tom won't come."),
        ("Alice reports to Bob.", "Bob reports to Alice."),
        ("I live in Bergen.", "I used to live in Bergen."),
        ("User smokes.", "User no longer smokes."),
        ("I have two kids.", "I have three kids."),
        ("The wedding is on 14 June.", "The wedding is on 14 July."),
        ("User likes coffee.", "User likes coffee without sugar."),
        ("Ravi's best friend is Lukas.", "Ravi's best friend is Lucas."),
        ("Flat 12 is ours.", "Flat 21 is ours."),
    ],
)
def test_near_exact_key_keeps_what_changes_the_fact(a: str, b: str) -> None:
    assert near_exact_key(a) != near_exact_key(b)


def test_near_exact_key_of_nothing_but_fillers_is_empty() -> None:
    assert near_exact_key("Oh! haha... 🎉") == ()
