"""Hybrid ranking: dense similarity, keyword (BM25) coverage, entity overlap and recency.

Every signal is mapped onto an absolute [0, 1] scale that does not depend on the other results of
the query, so the fused score means the same thing for every query and ``threshold`` can be set
once:

- dense: the embedder's cosine, mapped linearly from ``[dense_floor, dense_ceiling]`` onto [0, 1]
  (a cosine at the floor is "unrelated", at the ceiling "says the same thing");
- keyword: the document's BM25 divided by the BM25 an ideal document would get (one that holds
  every query term with a saturated term frequency): the share of the query's information the
  document matches, weighted by rarity;
- entity: the share of the query's names and numbers that the document contains;
- recency (only when asked for): ``0.5 ** (age / half_life)`` of the memory's timestamp.

The fused score is the weighted mean of the signals, then shaped by agreement: a memory that both
the dense and the keyword signal like is more likely relevant than one only one of them likes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from memlane.types import Explain

__all__ = ["Candidate", "RankingParams", "rank"]


@dataclass(frozen=True)
class RankingParams:
    """Weights and calibration of the ranking signals."""

    dense_weight: float = 0.55
    keyword_weight: float = 0.35
    entity_weight: float = 0.10
    dense_floor: float = 0.10
    dense_ceiling: float = 0.80
    k1: float = 1.2
    b: float = 0.75
    candidates: int = 100


@dataclass
class Candidate:
    """One memory under consideration: its cosine to the query and its analysed text."""

    id: str
    cosine: float
    terms: Sequence[str]
    timestamp_epoch: float
    sources: tuple[str, ...]


def _idf(n_docs: int, df: int) -> float:
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def keyword_score(
    query: Sequence[str],
    doc_terms: Sequence[str],
    df: Mapping[str, int],
    n_docs: int,
    avg_len: float,
    params: RankingParams,
) -> tuple[float, list[str]]:
    """Normalised BM25 of one document; returns (score in [0, 1], matched query terms)."""
    if not query or not doc_terms:
        return 0.0, []
    counts: dict[str, int] = {}
    wanted = set(query)
    for term in doc_terms:
        if term in wanted:
            counts[term] = counts.get(term, 0) + 1
    if not counts:
        return 0.0, []
    length_norm = 1.0 - params.b + params.b * len(doc_terms) / max(avg_len, 1.0)
    got = ideal = 0.0
    for term in query:
        idf = _idf(n_docs, df.get(term, 0))
        ideal += idf
        tf = counts.get(term, 0)
        if tf:
            got += idf * tf / (tf + params.k1 * length_norm)
    # An ideal document saturates every term: tf / (tf + k1 * norm) -> 1.
    return min(1.0, got / ideal) if ideal > 0 else 0.0, sorted(counts)


def _entity_score(entities: Sequence[str], doc_terms: Sequence[str]) -> float:
    if not entities:
        return 0.0
    present = set(doc_terms)
    return sum(1 for e in entities if e in present) / len(entities)


def rank(
    candidates: Sequence[Candidate],
    *,
    query_terms: Sequence[str],
    entities: Sequence[str],
    df: Mapping[str, int],
    n_docs: int,
    avg_len: float,
    params: RankingParams,
    recency_weight: float = 0.0,
    half_life_days: float = 30.0,
    now_epoch: float = 0.0,
) -> list[tuple[str, float, Explain]]:
    """Score candidates; returns (id, score in [0, 1], explain) sorted best first."""
    span = max(params.dense_ceiling - params.dense_floor, 1e-6)
    w_dense, w_kw = params.dense_weight, params.keyword_weight if query_terms else 0.0
    w_ent = params.entity_weight if entities else 0.0
    weights = {"dense": w_dense, "keyword": w_kw, "entity": w_ent, "recency": max(0.0, recency_weight)}
    total = sum(weights.values()) or 1.0
    out: list[tuple[str, float, Explain]] = []
    for cand in candidates:
        dense = min(1.0, max(0.0, (cand.cosine - params.dense_floor) / span))
        kw, matched = keyword_score(query_terms, cand.terms, df, n_docs, avg_len, params)
        ent = _entity_score(entities, cand.terms)
        recency = 0.0
        if weights["recency"] > 0:
            age_days = max(0.0, now_epoch - cand.timestamp_epoch) / 86400.0
            recency = 0.5 ** (age_days / max(half_life_days, 1e-6))
        mean = (w_dense * dense + w_kw * kw + w_ent * ent + weights["recency"] * recency) / total
        # Agreement: the geometric mean of dense and keyword lifts results both signals support,
        # without letting either signal alone reach the top of the scale.
        agree = math.sqrt(dense * kw) if w_kw else dense
        score = min(1.0, max(0.0, 0.75 * mean + 0.25 * agree))
        explain = Explain(
            dense=round(dense, 4),
            keyword=round(kw, 4),
            entity=round(ent, 4),
            recency=round(recency, 4),
            weights={k: round(v / total, 4) for k, v in weights.items()},
            matched_terms=matched,
            sources=list(cand.sources),
        )
        out.append((cand.id, score, explain))
    out.sort(key=lambda r: (-r[1], r[0]))
    return out
