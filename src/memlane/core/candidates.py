"""What a store hands ``Memory.search`` to rank: the candidate pool, and the rule choosing which
query terms may propose keyword candidates.

A store either answers :meth:`memlane.protocols.CandidateStore.candidates` with a whole
:class:`CandidatePool` at once (PostgreSQL: one round trip) or ``memlane._search`` composes the
pool from the store's single-purpose calls (``term_stats``, ``dense``, ``keyword``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from memlane.core.passages import PassageHit
from memlane.core.records import SearchRow

__all__ = ["SELECTIVE_MIN_DOCS", "SELECTIVE_SHARE", "CandidatePool", "selective", "selective_limit"]

# A query term proposes keyword candidates when it is in at most max(50, n / 20) memories.
SELECTIVE_MIN_DOCS = 50
SELECTIVE_SHARE = 20


def selective_limit(n_docs: int) -> int:
    """The document frequency above which a query term proposes no keyword candidates."""
    return max(SELECTIVE_MIN_DOCS, n_docs // SELECTIVE_SHARE)


def selective(terms: list[str], df: Mapping[str, int], n_docs: int) -> list[str]:
    """The query terms worth proposing keyword candidates: those in at most 5% of memories.

    A term that common barely moves the keyword score and cannot single out a memory, but OR-ing
    it into the full-text query would make a large share of the store candidates (~10 ms per 100k
    memories). Every term still counts when the candidates (from dense search and from the rarer
    terms) are scored.
    """
    limit = selective_limit(n_docs)
    return [t for t in terms if df.get(t, 0) <= limit]


@dataclass
class CandidatePool:
    """Everything ranking reads for one query, gathered by the store.

    Attributes:
        n_docs, avg_len, df: the collection's BM25 statistics (``Store.term_stats`` of every
            query term; ``df`` leaves out terms in no memory).
        sources: each candidate's row id -> which searches proposed it, in the order
            ``"dense"``, ``"keyword"``, ``"context"`` (a follower of a dense or keyword hit).
        rows: each candidate's ranking columns.
        context: the rows that candidates follow in their conversation (those not already
            candidates), expired ones included: ranking reads only the live ones.
        cosine: the query's cosine to every candidate and every live context row (a memory's
            best of its own vector's and its passages').
        passages: for each candidate with passages, the one that best answers the query.
    """

    n_docs: int = 0
    avg_len: float = 0.0
    df: dict[str, int] = field(default_factory=dict)
    sources: dict[int, list[str]] = field(default_factory=dict)
    rows: dict[int, SearchRow] = field(default_factory=dict)
    context: dict[int, SearchRow] = field(default_factory=dict)
    cosine: dict[int, float] = field(default_factory=dict)
    passages: dict[int, PassageHit] = field(default_factory=dict)
