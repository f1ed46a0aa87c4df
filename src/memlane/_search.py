"""The candidate side of ``Memory.search``: which memories are scored, with what they bring along.

Dense and keyword search propose candidates; the messages that follow them join (a reply can be
the answer when only the message it answers matches); each gets its conversation neighbour's
signals and, for a long memory, its best passage. ``core.ranking`` then scores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from memlane.core.filters import Node, to_iso
from memlane.core.ranking import Candidate
from memlane.protocols import Store, Vector
from memlane.types import MemoryItem, Passage, Scope

__all__ = ["add_passage", "gather_candidates", "selective"]


def selective(terms: list[str], df: Mapping[str, int], n_docs: int) -> list[str]:
    """The query terms worth proposing keyword candidates: those in at most 5% of memories.

    A term that common barely moves the keyword score and cannot single out a memory, but OR-ing
    it into the full-text query would make a large share of the store candidates (~10 ms per 100k
    memories). Every term still counts when the candidates (from dense search and from the rarer
    terms) are scored.
    """
    limit = max(50, n_docs // 20)
    return [t for t in terms if df.get(t, 0) <= limit]


def add_passage(item: MemoryItem, candidate: Candidate) -> None:
    """A hit on a long memory: the passage that answered the query, next to the whole text."""
    hit = candidate.passage
    if hit is not None:
        item["passage"] = Passage(start=hit.start, end=hit.end, text=item["memory"][hit.start : hit.end])


def gather_candidates(
    store: Store,
    scope: Scope,
    node: Node | None,
    qvec: Vector,
    terms: list[str],
    k: int,
    now: datetime,
    as_of: datetime | None,
) -> dict[str, Candidate]:
    """Dense and keyword candidates, plus the messages that follow them, with their context."""
    sources: dict[int, list[str]] = {}
    cosine: dict[int, float] = {}
    for rid, cos in store.dense(scope, node, qvec, k, now, as_of):
        cosine[rid] = cos
        sources.setdefault(rid, []).append("dense")
    for rid in store.keyword(scope, node, terms, k, now, as_of):
        sources.setdefault(rid, []).append("keyword")
    # A reply can be the answer even when only the message it answers matches the query.
    for rid in store.followers(list(sources), scope, node, now, as_of):
        sources.setdefault(rid, []).append("context")
    rows = store.search_rows(sources)
    prev_ids = {r.prev_rid for r in rows.values() if r.prev_rid is not None}
    context = {**store.search_rows(prev_ids - rows.keys()), **rows}
    now_iso = to_iso(now)
    live = {rid: r for rid, r in context.items() if r.expires_at is None or r.expires_at > now_iso}
    cosine.update(store.cosines(qvec, (rows.keys() | live.keys()) - cosine.keys()))
    # A long memory is ranked on its best passage's terms (its cosine is already its best).
    best = store.best_passages(qvec, terms, [rid for rid, r in rows.items() if r.passages])
    out: dict[str, Candidate] = {}
    for rid, row in rows.items():
        prev = live.get(row.prev_rid) if row.prev_rid is not None else None
        passage = best.get(rid)
        out[str(rid)] = Candidate(
            id=str(rid),
            cosine=cosine.get(rid, 0.0),
            terms=(passage.search_text if passage else row.search_text).split(),
            timestamp_epoch=datetime.fromisoformat(row.timestamp).timestamp(),
            sources=tuple(sources[rid]),
            context_cosine=cosine.get(prev.rid) if prev is not None else None,
            context_terms=prev.search_text.split() if prev is not None else (),
            passage=passage,
            # A long memory is judged on the passage that answered, not on the whole document.
            length=(passage.end - passage.start) if passage else row.length,
        )
    return out
