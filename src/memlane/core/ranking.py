"""Hybrid ranking: dense similarity, keyword (BM25) coverage, entities, conversation context,
message length, time.

Every signal is mapped onto an absolute [0, 1] scale that does not depend on the other results of
the query, so the fused score means the same thing for every query and ``threshold`` can be set
once:

- dense: the embedder's cosine, mapped linearly from ``[dense_floor, dense_ceiling]`` onto [0, 1]
  (a cosine at the floor is "unrelated", at the ceiling "says the same thing");
- keyword: BM25 with each query term's contribution capped at what one occurrence in a document
  of average length earns, divided by the query's total IDF: the rarity-weighted share of the
  query the memory matches (1.0 = every term present);
- entity: the share of the query's names and numbers that the memory contains;
- context: a short chat message is understood through the message it answers ("Adoption
  agencies." is the answer to "What did you research?"), so for messages of at most
  ``context_max_terms`` words the dense and keyword signals blend in, with weight
  ``context_weight``, those of the message before it in the same conversation. A longer message
  stands on its own: blending a user's question into the long reply that follows it made every
  reply look like an answer (BEAM user-assistant chats: dense recall_all@10 30.1 -> 20.3 with
  context on every message; LoCoMo: 46.4 -> 51.7 with context on short turns only). The neighbour
  is read at query time: deleting it removes its influence at once;
- recency (only when asked for): ``0.5 ** (age / half_life)`` of the memory's timestamp, the age
  being its distance from "now" (or from ``reference_date``) either way.

The score is the weighted mean of the signals, then two priors that hold for any conversation:

- length: a long message is about many things, and any one question about a small part of it,
  yet it matches more query words and its embedding sits near many queries. Past
  ``length_pivot`` characters the score is multiplied by ``(length_pivot / length) **
  length_exponent``, never below ``length_floor`` (a 4,000-character reply keeps half its score).
  A document long enough to be cut into passages is judged on its best passage's length: the
  passage, not the document, is what answered. This is what lets user-assistant chats rank a user's
  short statement above the assistant's long explanation around it (BEAM dev, all ten chats:
  33.5 -> 41.9).
- newer: among the candidates of one query, the newest gains up to ``newer_bonus`` (1 %) over the
  oldest, in proportion to its place in their time span: a tie-break. Two memories about the
  same thing often score alike; the later one is more likely to be current, so a changed fact
  comes first while an old but better match still wins (BEAM dev: the update outranks its
  original in 13 of 19 knowledge-update questions, 12 without; a 3-5 % bonus won no more
  updates and cost 1.7 points of recall).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from memlane.core.passages import PassageHit
from memlane.types import Explain

__all__ = ["Candidate", "RankingParams", "Scored", "Signals", "keyword_score", "length_factor", "rank", "term_idf"]


@dataclass(frozen=True)
class RankingParams:
    """Weights and calibration of the ranking signals."""

    dense_weight: float = 0.40
    keyword_weight: float = 0.50
    entity_weight: float = 0.10
    context_weight: float = 0.30
    context_max_terms: int = 40
    dense_floor: float = 0.10
    dense_ceiling: float = 0.80
    length_pivot: int = 1000
    length_exponent: float = 0.5
    length_floor: float = 0.3
    newer_bonus: float = 0.01
    k1: float = 1.2
    b: float = 0.75
    candidates: int = 100


@dataclass
class Candidate:
    """One memory under consideration, with its conversation neighbour's signals if it has one.

    For a long memory, ``cosine`` is the best of its own vector's and its passages', ``terms``
    are those of ``passage``: the passage that best answers the query (see ``Store.best_passages``).
    ``length`` is, in characters, the memory's text, or for a memory with passages the best
    passage's (0: unknown, no length prior).
    """

    id: str
    cosine: float
    terms: Sequence[str]
    timestamp_epoch: float
    sources: tuple[str, ...]
    context_cosine: float | None = None
    context_terms: Sequence[str] = ()
    passage: PassageHit | None = None
    length: int = 0


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
    oldest = min((c.timestamp_epoch for c in candidates), default=0.0)
    time_span = max((c.timestamp_epoch for c in candidates), default=0.0) - oldest
    out: list[Scored] = []
    for cand in candidates:
        dense_cos, kw, matched, with_context = _own_and_context(cand, idf, avg_len, params)
        dense = min(1.0, max(0.0, (dense_cos - params.dense_floor) / span))
        ent = sum(1 for e in entities if e in cand.terms) / len(entities) if entities else 0.0
        recency = 0.0
        if share["recency"] > 0:
            # Distance either way: seen from a past reference date (search's reference_date), a later memory is far too.
            age_days = abs(now_epoch - cand.timestamp_epoch) / 86400.0
            recency = 0.5 ** (age_days / max(half_life_days, 1e-6))
        score = share["dense"] * dense + share["keyword"] * kw + share["entity"] * ent
        score += share["recency"] * recency
        length = length_factor(cand.length, params)
        newer = (cand.timestamp_epoch - oldest) / time_span if time_span > 0 else 0.0
        score *= length * (1.0 + params.newer_bonus * newer)
        signals = Signals(dense, kw, ent, recency, length, newer, with_context)
        out.append(Scored(cand.id, round(min(1.0, max(0.0, score)), 6), signals, matched, cand, share))
    out.sort(key=lambda r: (-r.score, r.id))
    return out


def length_factor(length: int, params: RankingParams) -> float:
    """The length prior: 1.0 up to ``length_pivot`` characters, then a power-law decline to a floor."""
    if length <= params.length_pivot or params.length_exponent <= 0:
        return 1.0
    factor: float = (params.length_pivot / length) ** params.length_exponent
    return max(params.length_floor, factor)


def _own_and_context(
    cand: Candidate, idf: Mapping[str, float], avg_len: float, params: RankingParams
) -> tuple[float, float, list[str], bool]:
    """(cosine, keyword score, matched terms, whether context counted): a short message's
    signals blend in its conversation neighbour's; a long one's are its own."""
    cosine = cand.cosine
    kw, matched = keyword_score(idf, cand.terms, avg_len, params)
    if cand.context_cosine is None or len(cand.terms) > params.context_max_terms:
        return cosine, kw, matched, False
    ctx = params.context_weight
    cosine = (1 - ctx) * cosine + ctx * cand.context_cosine
    if cand.context_terms:
        joint, _ = keyword_score(idf, [*cand.context_terms, *cand.terms], avg_len, params)
        kw = (1 - ctx) * kw + ctx * joint
    return cosine, kw, matched, True


class Signals(NamedTuple):
    """A candidate's signals (each in [0, 1]) and priors, as ``explain`` shows them."""

    dense: float
    keyword: float
    entity: float
    recency: float
    length: float
    newer: float
    context: bool


@dataclass
class Scored:
    """A ranked candidate; ``explain()`` builds the public breakdown (only for returned hits)."""

    id: str
    score: float
    signals: Signals
    matched: list[str]
    candidate: Candidate
    share: dict[str, float]

    def explain(self) -> Explain:
        """Each signal's value, the weights, the priors, matched terms and which searches proposed it."""
        sig = self.signals
        return Explain(
            dense=round(sig.dense, 4),
            keyword=round(sig.keyword, 4),
            entity=round(sig.entity, 4),
            recency=round(sig.recency, 4),
            context=sig.context,
            length=round(sig.length, 4),
            newer=round(sig.newer, 4),
            weights={k: round(v, 4) for k, v in self.share.items()},
            matched_terms=self.matched,
            sources=list(self.candidate.sources),
        )
