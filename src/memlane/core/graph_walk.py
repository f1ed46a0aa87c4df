"""Walking the relations of one scope (pure): an entity's relations, its neighbours, a path.

Split from :mod:`memlane.core.graph` (records and resolution); every function takes the scope's
relations as a list, closed ones included, and an optional ``as_of``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Literal

from memlane.core.graph import Relation, normalise_predicate

__all__ = ["Direction", "neighbours", "path", "relations_of"]

Direction = Literal["out", "in", "both"]


def relations_of(
    entity_id: str,
    relations: Iterable[Relation],
    *,
    predicate: str | None = None,
    as_of: str | None = None,
    direction: Direction = "both",
) -> list[Relation]:
    """The relations of one entity that hold at ``as_of`` (None: now), oldest first.

    Args:
        predicate: only this predicate (normalised, so "Reports to" is ``reports_to``).
        direction: ``"out"`` where the entity is the subject, ``"in"`` the object, ``"both"``.
    Raises:
        ValueError: an unknown direction.
    """
    if direction not in ("out", "in", "both"):
        raise ValueError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
    pred = normalise_predicate(predicate) if predicate is not None else None
    out = [
        r
        for r in relations
        if r.open_at(as_of)
        and (pred is None or r.predicate == pred)
        and ((direction != "in" and r.subject_id == entity_id) or (direction != "out" and r.object_id == entity_id))
    ]
    return sorted(out, key=lambda r: (r.valid_from, r.id))


def _adjacency(relations: Iterable[Relation], as_of: str | None) -> dict[str, list[tuple[str, Relation]]]:
    """Each entity's neighbours over the relations holding at ``as_of``, either direction, in a stable order."""
    adj: dict[str, list[tuple[str, Relation]]] = {}
    for r in sorted(relations, key=lambda r: (r.valid_from, r.id)):
        if r.open_at(as_of):
            adj.setdefault(r.subject_id, []).append((r.object_id, r))
            adj.setdefault(r.object_id, []).append((r.subject_id, r))
    return adj


def neighbours(
    entity_id: str, relations: Iterable[Relation], *, depth: int = 1, as_of: str | None = None
) -> dict[str, int]:
    """Entities within ``depth`` relations of ``entity_id`` (either direction) -> their distance.

    Raises:
        ValueError: ``depth`` below 1.
    """
    if depth < 1:
        raise ValueError(f"depth must be 1 or more, got {depth}")
    adj = _adjacency(relations, as_of)
    dist = {entity_id: 0}
    queue = deque([entity_id])
    while queue:
        node = queue.popleft()
        if dist[node] == depth:
            continue
        for other, _ in adj.get(node, ()):
            if other not in dist:
                dist[other] = dist[node] + 1
                queue.append(other)
    del dist[entity_id]
    return dist


def path(
    a: str, b: str, relations: Iterable[Relation], *, as_of: str | None = None, max_depth: int = 6
) -> list[Relation] | None:
    """The shortest chain of relations from ``a`` to ``b`` (each may be walked either way), or None.

    ``[]`` when ``a == b``; None when no chain of at most ``max_depth`` relations joins them.
    Among equally short chains, the one through older relations wins (a stable answer).
    """
    if a == b:
        return []
    adj = _adjacency(relations, as_of)
    parent: dict[str, tuple[str, Relation] | None] = {a: None}
    frontier = [a]
    for _ in range(max_depth):
        nxt: list[str] = []
        for node in frontier:
            for other, rel in adj.get(node, ()):
                if other in parent:
                    continue
                parent[other] = (node, rel)
                if other == b:
                    return _walk_back(parent, b)
                nxt.append(other)
        frontier = nxt
    return None


def _walk_back(parent: dict[str, tuple[str, Relation] | None], node: str) -> list[Relation]:
    chain: list[Relation] = []
    step = parent[node]
    while step is not None:
        node, rel = step
        chain.append(rel)
        step = parent[node]
    return chain[::-1]
