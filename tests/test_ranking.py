"""The ranking core's rules on hand-made candidates: context only for short messages, the length
prior, and the newer tie-break (``memlane.core.ranking``)."""

from __future__ import annotations

import pytest

from memlane.core.ranking import Candidate, RankingParams, length_factor, rank

DAY = 86_400.0
PARAMS = RankingParams()


def _cand(
    cid: str, *, cosine: float = 0.6, words: int = 8, when: float = 0.0, length: int = 0, **kw: object
) -> Candidate:
    terms = ["colour", "favourite", *[f"w{i}" for i in range(max(0, words - 2))]]
    return Candidate(id=cid, cosine=cosine, terms=terms, timestamp_epoch=when, sources=("dense",), length=length, **kw)  # type: ignore[arg-type]


def _rank(cands: list[Candidate], params: RankingParams = PARAMS) -> list[str]:
    ranked = rank(cands, query_terms=["favourit", "colour"], entities=[], df={}, n_docs=100, avg_len=10, params=params)
    return [r.id for r in ranked]


@pytest.mark.parametrize("newer_first", [True, False])
def test_of_two_equally_relevant_memories_the_newer_comes_first(newer_first: bool) -> None:
    old, new = _cand("a", when=0.0), _cand("b", when=90 * DAY)
    order = _rank([new, old] if newer_first else [old, new])
    assert order == ["b", "a"]
    assert _rank([old, new], RankingParams(newer_bonus=0)) == ["a", "b"]  # no bonus: ties by id


def test_a_better_older_match_beats_a_newer_weaker_one() -> None:
    assert _rank([_cand("old", cosine=0.7, when=0.0), _cand("new", cosine=0.6, when=300 * DAY)]) == ["old", "new"]


def test_length_prior() -> None:
    assert length_factor(0, PARAMS) == 1.0 and length_factor(1000, PARAMS) == 1.0
    assert length_factor(4000, PARAMS) == pytest.approx(0.5)
    assert length_factor(2_000_000, PARAMS) == PARAMS.length_floor
    assert length_factor(4000, RankingParams(length_exponent=0)) == 1.0
    short, long = _cand("short", length=300), _cand("long", cosine=0.65, length=4500)
    assert _rank([short, long]) == ["short", "long"]
    assert _rank([short, long], RankingParams(length_exponent=0)) == ["long", "short"]


def test_context_counts_for_short_messages_only() -> None:
    lent = {"context_cosine": 0.95, "context_terms": ["favourit", "colour"]}
    short = rank([_cand("s", cosine=0.2, words=6, **lent)], query_terms=["favourit"], entities=[], df={},
                 n_docs=10, avg_len=10, params=PARAMS)[0]  # fmt: skip
    long = rank([_cand("l", cosine=0.2, words=120, **lent)], query_terms=["favourit"], entities=[], df={},
                n_docs=10, avg_len=10, params=PARAMS)[0]  # fmt: skip
    assert short.explain()["context"] is True and long.explain()["context"] is False
    assert short.explain()["dense"] > long.explain()["dense"]
