"""The candidate side of ``Memory.search``: which memories are scored, with what they bring along.

Dense and keyword search propose candidates; the messages that follow them join (a reply can be
the answer when only the message it answers matches); each gets its conversation neighbour's
signals and, for a long memory, its best passage. ``core.ranking`` then scores them.

A store that gathers all of it at once (:class:`memlane.protocols.CandidateStore`, e.g.
PostgreSQL in one round trip) is asked for the whole :class:`CandidatePool`; any other store is
asked piece by piece (:func:`compose_pool`), which is cheap when the store is in process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memlane.core.candidates import CandidatePool, selective
from memlane.core.filters import Node, to_iso
from memlane.core.ranking import Candidate
from memlane.core.records import SearchRow
from memlane.protocols import CandidateStore, Store, Vector
from memlane.types import MemoryItem, Passage, Scope

__all__ = ["add_passage", "candidates_of", "compose_pool", "gather_candidates", "selective"]


def add_passage(item: MemoryItem, candidate: Candidate) -> None:
    """A hit on a long memory: the passage that answered the query, next to the whole text."""
    hit = candidate.passage
    if hit is not None:
        item["passage"] = Passage(start=hit.start, end=hit.end, text=item["memory"][hit.start : hit.end])


def compose_pool(
    store: Store,
    scope: Scope,
    node: Node | None,
    qvec: Vector,
    terms: list[str],
    k: int,
    now: datetime,
    as_of: datetime | None,
    include: Sequence[str] = (),
) -> CandidatePool:
    """The candidate pool from the store's single-purpose calls (see ``CandidateStore.candidates``)."""
    n_docs, avg_len, df = store.term_stats(terms)
    proposing = selective(terms, df, n_docs)
    sources: dict[int, list[str]] = {}
    cosine: dict[int, float] = {}
    # Merged / archived memories only when asked for: a store without consolidation never is.
    extra: dict[str, Any] = {"include": tuple(include)} if include else {}
    for rid, cos in store.dense(scope, node, qvec, k, now, as_of, **extra):
        cosine[rid] = cos
        sources.setdefault(rid, []).append("dense")
    for rid in store.keyword(scope, node, proposing, k, now, as_of, **extra):
        sources.setdefault(rid, []).append("keyword")
    # A reply can be the answer even when only the message it answers matches the query.
    for rid in store.followers(list(sources), scope, node, now, as_of, **extra):
        sources.setdefault(rid, []).append("context")
    rows = store.search_rows(sources)
    prev_ids = {r.prev_rid for r in rows.values() if r.prev_rid is not None}
    context = store.search_rows(prev_ids - rows.keys())
    live = _live({**context, **rows}, now)
    cosine.update(store.cosines(qvec, (rows.keys() | live) - cosine.keys()))
    # A long memory is ranked on its best passage's terms (its cosine is already its best).
    best = store.best_passages(qvec, proposing, [rid for rid, r in rows.items() if r.passages])
    return CandidatePool(n_docs, avg_len, df, sources, rows, context, cosine, best)


def _live(rows: dict[int, SearchRow], now: datetime) -> set[int]:
    now_iso = to_iso(now)
    return {rid for rid, r in rows.items() if r.expires_at is None or r.expires_at > now_iso}


def gather_candidates(
    store: Store,
    scope: Scope,
    node: Node | None,
    qvec: Vector,
    terms: list[str],
    k: int,
    now: datetime,
    as_of: datetime | None,
    include: Sequence[str] = (),
) -> tuple[CandidatePool, dict[str, Candidate]]:
    """Dense and keyword candidates, plus the messages that follow them, with their context.

    Args:
        terms: every query term (those common enough to propose nothing still count in ranking).
    Returns:
        The pool the store gathered (with the collection's BM25 statistics), and its candidates.
    """
    if isinstance(store, CandidateStore):
        extra: dict[str, Any] = {"include": tuple(include)} if include else {}
        pool = store.candidates(scope, node, qvec, terms, k, now, as_of, **extra)
    else:
        pool = compose_pool(store, scope, node, qvec, terms, k, now, as_of, include)
    return pool, candidates_of(pool, now)


def candidates_of(pool: CandidatePool, now: datetime) -> dict[str, Candidate]:
    """The pool's candidates as ranking reads them, each with its live conversation neighbour."""
    context = {**pool.context, **pool.rows}
    live = _live(context, now)
    out: dict[str, Candidate] = {}
    for rid, row in pool.rows.items():
        prev = context.get(row.prev_rid) if row.prev_rid is not None and row.prev_rid in live else None
        passage = pool.passages.get(rid)
        out[str(rid)] = Candidate(
            id=str(rid),
            cosine=pool.cosine.get(rid, 0.0),
            terms=(passage.search_text if passage else row.search_text).split(),
            timestamp_epoch=datetime.fromisoformat(row.timestamp).timestamp(),
            sources=tuple(pool.sources[rid]),
            context_cosine=pool.cosine.get(prev.rid) if prev is not None else None,
            context_terms=prev.search_text.split() if prev is not None else (),
            passage=passage,
            # A long memory is judged on the passage that answered, not on the whole document.
            length=(passage.end - passage.start) if passage else row.length,
        )
    return out
