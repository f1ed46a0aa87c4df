"""Hybrid ranking: dense similarity, keyword (BM25) coverage, entities, conversation context, recency.

Every signal is mapped onto an absolute [0, 1] scale that does not depend on the other results of
the query, so the fused score means the same thing for every query and ``threshold`` can be set
once:

- dense: the embedder's cosine, mapped linearly from ``[dense_floor, dense_ceiling]`` onto [0, 1]
  (a cosine at the floor is "unrelated", at the ceiling "says the same thing");
- keyword: BM25 with each query term's contribution capped at what one occurrence in a document
  of average length earns, divided by the query's total IDF: the rarity-weighted share of the
  query the memory matches (1.0 = every term present);
- entity: the share of the query's names and numbers that the memory contains;
- context: a chat message is understood through the message it answers ("Adoption agencies." is
  the answer to "What did you research?"), so the dense and keyword signals blend in, with weight
  ``context_weight``, those of the message before it in the same conversation. The neighbour is
  read at query time: deleting it removes its influence at once, and nothing derived from one
  memory is stored in another;
- recency (only when asked for): ``0.5 ** (age / half_life)`` of the memory's timestamp.

The score is the weighted mean of the signals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from memlane.core.passages import PassageHit
from memlane.types import Explain

__all__ = ["Candidate", "RankingParams", "Scored", "keyword_score", "rank", "term_idf"]


@dataclass(frozen=True)
class RankingParams:
    """Weights and calibration of the ranking signals."""

    dense_weight: float = 0.45
    keyword_weight: float = 0.45
    entity_weight: float = 0.10
    context_weight: float = 0.30
    dense_floor: float = 0.10
    dense_ceiling: float = 0.80
    k1: float = 1.2
    b: float = 0.75
    candidates: int = 100


@dataclass
class Candidate:
    """One memory under consideration, with its conversation neighbour's signals if it has one.

    For a long memory, ``cosine`` is the best of its own vector's and its passages', ``terms``
    are those of ``passage``: the passage that best answers the query (see ``Store.best_passages``).
    """

    id: str
    cosine: float
    terms: Sequence[str]
    timestamp_epoch: float
    sources: tuple[str, ...]
    context_cosine: float | None = None
    context_terms: Sequence[str] = ()
    passage: PassageHit | None = None


def term_idf(query: Sequence[str], df: Mapping[str, int], n_docs: int) -> dict[str, float]:
    """BM25 inverse document frequency of each query term."""
    return {t: math.log(1.0 + (max(n_docs, df.get(t, 0)) - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in query}


def keyword_score(
    idf: Mapping[str, float], doc_terms: Sequence[str], avg_len: float, params: RankingParams
) -> tuple[float, list[str]]:
    """Normalised BM25 of one document for a query given as ``{term: idf}``.

    Returns:
        (score in [0, 1], the query terms the document contains).
    """
    if not idf or not doc_terms:
        return 0.0, []
    counts: dict[str, int] = {}
    for term in doc_terms:
        if term in idf:
            counts[term] = counts.get(term, 0) + 1
    if not counts:
        return 0.0, []
    total = sum(idf.values())
    length_norm = 1.0 - params.b + params.b * len(doc_terms) / max(avg_len, 1.0)
    k1 = params.k1
    # (k1 + 1) rescales BM25's term weight so one occurrence at average length earns 1.
    got = sum(idf[t] * min(1.0, tf * (k1 + 1) / (tf + k1 * length_norm)) for t, tf in counts.items())
    return (got / total if total > 0 else 0.0), sorted(counts)


def _entity_score(entities: Sequence[str], terms: set[str]) -> float:
    return sum(1 for e in entities if e in terms) / len(entities) if entities else 0.0


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
) -> list[Scored]:
    """Score candidates; returns them best first (ties broken by id for a stable order)."""
    span = max(params.dense_ceiling - params.dense_floor, 1e-6)
    weights = {
        "dense": params.dense_weight,
        "keyword": params.keyword_weight if query_terms else 0.0,
        "entity": params.entity_weight if entities else 0.0,
        "recency": max(0.0, recency_weight),
    }
    total = sum(weights.values()) or 1.0
    share = {k: v / total for k, v in weights.items()}
    idf = term_idf(query_terms, df, n_docs)
    ctx = params.context_weight
    out: list[Scored] = []
    for cand in candidates:
        cosine = cand.cosine
        kw, matched = keyword_score(idf, cand.terms, avg_len, params)
        if cand.context_cosine is not None:
            cosine = (1 - ctx) * cosine + ctx * cand.context_cosine
            if cand.context_terms:
                joint, _ = keyword_score(idf, [*cand.context_terms, *cand.terms], avg_len, params)
                kw = (1 - ctx) * kw + ctx * joint
        dense = min(1.0, max(0.0, (cosine - params.dense_floor) / span))
        ent = sum(1 for e in entities if e in cand.terms) / len(entities) if entities else 0.0
        recency = 0.0
        if share["recency"] > 0:
            age_days = max(0.0, now_epoch - cand.timestamp_epoch) / 86400.0
            recency = 0.5 ** (age_days / max(half_life_days, 1e-6))
        score = share["dense"] * dense + share["keyword"] * kw + share["entity"] * ent
        score += share["recency"] * recency
        signals = (dense, kw, ent, recency)
        out.append(Scored(cand.id, round(min(1.0, max(0.0, score)), 6), signals, matched, cand, share))
    out.sort(key=lambda r: (-r.score, r.id))
    return out


@dataclass
class Scored:
    """A ranked candidate; ``explain()`` builds the public breakdown (only for returned hits)."""

    id: str
    score: float
    signals: tuple[float, float, float, float]
    matched: list[str]
    candidate: Candidate
    share: dict[str, float]

    def explain(self) -> Explain:
        """Each signal's value, the weights, matched terms and which searches proposed it."""
        dense, kw, ent, recency = self.signals
        return Explain(
            dense=round(dense, 4),
            keyword=round(kw, 4),
            entity=round(ent, 4),
            recency=round(recency, 4),
            context=self.candidate.context_cosine is not None,
            weights={k: round(v, 4) for k, v in self.share.items()},
            matched_terms=self.matched,
            sources=list(self.candidate.sources),
        )
