"""Graph memory on ``Memory``: a scope's entities and relations, traversal, graph-expanded search.

The entities and relations live in the store, written with the memories that name and state them
(see :mod:`memlane.core.graph`); this module reads them. :class:`GraphMethods` is the part of
``Memory``'s API that does (``Memory`` inherits it, ``AsyncMemory`` awaits it), and
:func:`graph_candidates` / :func:`graph_rescore` are the two steps ``Memory.search(graph=True)`` adds.

``search(graph=True)``: the entities the query names (:func:`memlane.core.graph.query_entities`)
and those one relation away from them lead to the memories naming any of them. Those reached
through a relation join the candidates, and every candidate's score becomes ``(1 - GRAPH_WEIGHT)
* score + GRAPH_WEIGHT * graph`` with ``graph`` 1.0 for a memory naming a query entity, 0.5 for
one naming a neighbour, else 0: the weighted mean of the signals with one more signal. A query
naming no entity of the scope is ranked exactly as without ``graph``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from memlane.core.candidates import CandidatePool, selective
from memlane.core.filters import RESERVED_FIELDS, Node, evaluate, to_iso
from memlane.core.graph import (
    Entity,
    EntityMention,
    Relation,
    detect_names,
    entity_candidates,
    find_entity,
    normalise_name,
    query_entities,
)
from memlane.core.graph_walk import Direction, neighbours, path, relations_of
from memlane.core.inputs import check_text, parse_time
from memlane.core.ranking import Scored
from memlane.core.scope import resolve_scope
from memlane.errors import EntityNotFound, InvalidRequest
from memlane.protocols import Store, Vector
from memlane.types import (
    EntityItem,
    EntityList,
    EntityRef,
    GraphExplain,
    NeighbourItem,
    NeighbourList,
    PathResult,
    RelationItem,
    RelationList,
    Scope,
)

__all__ = [
    "GRAPH_WEIGHT",
    "GraphLinks",
    "GraphMethods",
    "edited_mentions",
    "graph_candidates",
    "graph_rescore",
    "verbatim_mentions",
]

GRAPH_WEIGHT = 0.15  # the graph signal's share of a score when the query names an entity
GRAPH_VALUE = {0: 1.0, 1: 0.5}  # by distance from a query entity
MAX_GRAPH_MEMORIES = 50  # memories reached through a relation that may join one search's candidates
MAX_DEPTH = 6


# -- result shapes ---------------------------------------------------------------------------------
def entity_item(entity: Entity) -> EntityItem:
    """The public dict of an entity."""
    return EntityItem(
        id=entity.id, name=entity.name, type=entity.type, aliases=list(entity.aliases), user_id=entity.user_id,
        agent_id=entity.agent_id, run_id=entity.run_id, created_at=entity.created_at, updated_at=entity.updated_at,
    )  # fmt: skip


def relation_item(relation: Relation, names: dict[str, str]) -> RelationItem:
    """The public dict of a relation, its ends named (``names``: entity id -> canonical name)."""
    return RelationItem(
        id=relation.id,
        subject=EntityRef(id=relation.subject_id, name=names.get(relation.subject_id, "")),
        predicate=relation.predicate,
        object=EntityRef(id=relation.object_id, name=names.get(relation.object_id, "")),
        valid_from=relation.valid_from,
        valid_until=relation.valid_until,
        memory_id=relation.memory_id,
    )


# -- arguments -------------------------------------------------------------------------------------
def _scope(user_id: str | None, agent_id: str | None, run_id: str | None, operation: str) -> Scope:
    scope, _ = resolve_scope(
        user_id=user_id, agent_id=agent_id, run_id=run_id, filters=None, required=True, operation=operation
    )
    return scope


def _at(as_of: datetime | str | float | None) -> str | None:
    return None if as_of is None else to_iso(parse_time(as_of, "as_of"))


def _depth(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DEPTH:
        raise InvalidRequest(f"{what} must be a whole number from 1 to {MAX_DEPTH}, got {value!r}")
    return value


def _where(scope: Scope) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in scope.as_dict().items() if v is not None)


def pick_entity(ref: object, known: Sequence[Entity], scope: Scope) -> Entity:
    """The entity ``ref`` names among ``known``: by id, else by name as :func:`find_entity` resolves it.

    Raises:
        InvalidRequest: ``ref`` is not a non-blank string, or the name fits several entities.
        EntityNotFound: nothing fits.
    """
    text = check_text(ref, "entity")
    for entity in known:
        if entity.id == text:
            return entity
    found = find_entity(text, known)
    if found is not None:
        return found
    fits = entity_candidates(text, known)
    if len(fits) > 1:
        listed = "; ".join(f"{e.name!r} (id {e.id}, {_where(Scope(e.user_id, e.agent_id, e.run_id))})" for e in fits)
        raise InvalidRequest(f"{text!r} could be several entities: {listed}; pass the id or the full name")
    raise EntityNotFound(
        f"no entity {text!r} in the scope {_where(scope)}; entities(...) lists the scope's entities by name"
    )


class GraphMethods:
    """The graph part of ``Memory``'s API; ``Memory`` supplies the store and the clock."""

    def _open(self) -> Store:
        raise NotImplementedError

    def entities(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> EntityList:
        """The entities of a scope (named by its memories), by name.

        Returns:
            ``{"results": [{"id", "name", "type", "aliases", "user_id", "agent_id", "run_id",
            "created_at", "updated_at"}]}``.
        Raises:
            ScopeRequired, InvalidRequest.
        """
        scope = _scope(user_id, agent_id, run_id, "entities")
        return EntityList(results=[entity_item(e) for e in self._open().entities(scope)])

    def entity(self, entity_id: str) -> EntityItem:
        """One entity by id.

        Raises:
            EntityNotFound: no entity has this id.
        """
        check_text(entity_id, "entity_id")
        found = self._open().entity(entity_id)
        if found is None:
            raise EntityNotFound(f"no entity with id {entity_id!r}; entities(user_id=...) lists a scope's entities")
        return entity_item(found)

    def relations(
        self,
        entity: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        predicate: str | None = None,
        direction: Direction = "both",
        as_of: datetime | str | float | None = None,
    ) -> RelationList:
        """The relations of one entity of the scope that hold now (or at ``as_of``), oldest first.

        Args:
            entity: its id, or a name as memories use it ("Alice", "alice chen", "my manager Alice").
            predicate: only this one ("reports_to"; "Reports to" is the same).
            direction: ``"out"`` (the entity is the subject), ``"in"`` (the object), ``"both"``.
            as_of: what held at that time, relations since closed by a contradicting one included.
        Returns:
            ``{"results": [{"id", "subject": {"id", "name"}, "predicate", "object": {...},
            "valid_from", "valid_until", "memory_id"}]}``.
        Raises:
            ScopeRequired, InvalidRequest (a bad argument, or a name that fits several entities:
            the message lists them), EntityNotFound.
        """
        scope = _scope(user_id, agent_id, run_id, "relations")
        if direction not in ("out", "in", "both"):
            raise InvalidRequest(f"direction must be 'out', 'in' or 'both', got {direction!r}")
        if predicate is not None:
            check_text(predicate, "predicate")
        at = _at(as_of)
        store = self._open()
        known = store.entities(scope)
        target = pick_entity(entity, known, scope)
        names = {e.id: e.name for e in known}
        found = relations_of(target.id, store.relations(scope), predicate=predicate, as_of=at, direction=direction)
        return RelationList(results=[relation_item(r, names) for r in found])

    def neighbours(
        self,
        entity: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        depth: int = 1,
        as_of: datetime | str | float | None = None,
    ) -> NeighbourList:
        """The entities within ``depth`` relations of one entity (either direction), nearest first.

        Args:
            entity: its id or a name, as in ``relations``.
            depth: how many relations away, 1 to 6.
            as_of: walk the relations that held at that time.
        Returns:
            ``{"results": [entity dicts with "distance"]}``, by distance then name.
        Raises:
            ScopeRequired, InvalidRequest, EntityNotFound.
        """
        scope = _scope(user_id, agent_id, run_id, "neighbours")
        hops = _depth(depth, "depth")
        at = _at(as_of)
        store = self._open()
        known = store.entities(scope)
        target = pick_entity(entity, known, scope)
        by_id = {e.id: e for e in known}
        near = neighbours(target.id, store.relations(scope), depth=hops, as_of=at)
        items = [NeighbourItem(**entity_item(by_id[i]), distance=d) for i, d in near.items() if i in by_id]
        items.sort(key=lambda n: (n["distance"], n["name"].casefold(), n["id"]))
        return NeighbourList(results=items)

    def path(
        self,
        a: str,
        b: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        as_of: datetime | str | float | None = None,
    ) -> PathResult:
        """The shortest chain of relations joining two entities of the scope (at most 6).

        Args:
            a, b: ids or names, as in ``relations``.
            as_of: over the relations that held at that time.
        Returns:
            ``{"found": bool, "results": [relation dicts from a towards b]}``; each relation may
            read either way ("Bob reports_to Alice" joins Alice to Bob).
        Raises:
            ScopeRequired, InvalidRequest, EntityNotFound.
        """
        scope = _scope(user_id, agent_id, run_id, "path")
        at = _at(as_of)
        store = self._open()
        known = store.entities(scope)
        start, end = pick_entity(a, known, scope), pick_entity(b, known, scope)
        chain = path(start.id, end.id, store.relations(scope), as_of=at, max_depth=MAX_DEPTH)
        names = {e.id: e.name for e in known}
        return PathResult(found=chain is not None, results=[relation_item(r, names) for r in chain or []])


def verbatim_mentions(text: str, speaker: str | None) -> tuple[EntityMention, ...]:
    """A verbatim message's mentions: its speaker (the "I" of the message, a person), then the
    names its text holds (:func:`detect_names`)."""
    first = [EntityMention(speaker, "person")] if speaker and normalise_name(speaker) else []
    seen = {normalise_name(m.name) for m in first}
    return (*first, *(m for m in detect_names(text) if normalise_name(m.name) not in seen))


def edited_mentions(store: Store, memory_id: str, text: str) -> tuple[EntityMention, ...]:
    """The entity mentions of a memory's edited text: the entities it named that the text still
    names (with their types), then the names the text adds (:func:`detect_names`)."""
    linked = store.memory_entities([memory_id]).get(memory_id, [])
    before = [e for e in (store.entity(i) for i in linked) if e is not None]
    kept = query_entities(text, before)
    names = {n for e in kept for n in e.names()}
    added = [m for m in detect_names(text) if normalise_name(m.name) not in names]
    return (*(EntityMention(e.name, e.type) for e in kept), *added)


# -- search(graph=True) ----------------------------------------------------------------------------
@dataclass
class GraphLinks:
    """What ``search(graph=True)`` found: memory id -> why it is linked to the query, and the row
    ids of the memories that joined the candidates through a relation."""

    by_memory: dict[str, GraphExplain] = field(default_factory=dict)
    joined: dict[int, str] = field(default_factory=dict)


def _reach(
    query: Sequence[Entity], known: Sequence[Entity], relations: list[Relation], at: str | None
) -> dict[str, GraphExplain]:
    """The query's entities (distance 0) and those one relation away (distance 1), each with how it was reached."""
    names = {e.id: e.name for e in known}
    reach: dict[str, GraphExplain] = {}
    for entity in query:
        reach[entity.id] = GraphExplain(
            entity=entity.name, via=entity.name, relation=None, distance=0, value=GRAPH_VALUE[0]
        )
    for entity in query:
        for r in relations_of(entity.id, relations, as_of=at) if relations else []:
            other = r.object_id if r.subject_id == entity.id else r.subject_id
            if other not in reach and other in names:
                reach[other] = GraphExplain(
                    entity=names[other], via=entity.name, relation=r.predicate, distance=1, value=GRAPH_VALUE[1]
                )
    return reach


def graph_candidates(
    store: Store,
    scope: Scope,
    node: Node | None,
    query: str,
    qvec: Vector,
    terms: list[str],
    pool: CandidatePool,
    visible_after: datetime,
    as_of: datetime | None,
) -> GraphLinks:
    """The memories linked to the query's entities; those reached through a relation join ``pool``.

    Args:
        pool: the search's candidate pool; joining memories get their rows, cosines, context and
            best passage there, as ``compose_pool`` would give them.
        visible_after, as_of: as in the search: an expired memory or, with ``as_of``, one stated
            later, does not join.
    Returns:
        The links (empty when the query names no entity of the scope).
    """
    known = store.entities(scope)
    asked = query_entities(query, known) if known else []
    if not asked:
        return GraphLinks()
    at = to_iso(as_of) if as_of is not None else None
    reach = _reach(asked, known, store.relations(scope), at)
    links = GraphLinks()
    for entity_id, memory_ids in store.entity_memories(reach).items():
        for memory_id in memory_ids:
            best = links.by_memory.get(memory_id)
            if best is None or reach[entity_id]["distance"] < best["distance"]:
                links.by_memory[memory_id] = reach[entity_id]
    # Only what a relation reaches joins: a memory naming the query's entity holds the name, which
    # keyword search proposes when it is rare enough to tell memories apart (LoCoMo dev, names
    # alone: joining up to 100 of them per search changed no answer and doubled search time).
    reached = sorted(m for m, why in links.by_memory.items() if why["distance"] > 0)[:MAX_GRAPH_MEMORIES]
    links.joined = _joiners(store, scope, node, reached, visible_after, at, set(pool.rows))
    for rid in links.joined:
        pool.sources[rid] = ["graph"]
    _fill(store, pool, qvec, terms, list(links.joined))
    return links


def _joiners(
    store: Store,
    scope: Scope,
    node: Node | None,
    memory_ids: list[str],
    visible_after: datetime,
    at: str | None,
    present: set[int],
) -> dict[int, str]:
    """Row id -> memory id of the memories that join: not candidates yet, in the scope, matching the filter, visible."""
    out: dict[int, str] = {}
    live_after = to_iso(visible_after)
    for memory_id in memory_ids:
        row = store.get(memory_id)
        if row is None or row.rid in present or (row.expires_at is not None and row.expires_at <= live_after):
            continue
        if any(v is not None and getattr(row, k) != v for k, v in scope.as_dict().items()):
            continue
        if at is not None and row.timestamp > at:
            continue
        record = {f: getattr(row, f) for f in RESERVED_FIELDS} | {"metadata": row.metadata}
        if node is not None and not evaluate(node, record):
            continue
        out[row.rid] = memory_id
    return out


def _fill(store: Store, pool: CandidatePool, qvec: Vector, terms: list[str], rids: list[int]) -> None:
    """The joined memories' rows, context rows, cosines and best passages, into the pool."""
    if not rids:
        return
    rows = store.search_rows(rids)
    pool.rows.update(rows)
    prev = {r.prev_rid for r in rows.values() if r.prev_rid is not None} - pool.rows.keys() - pool.context.keys()
    pool.context.update(store.search_rows(prev))
    pool.cosine.update(store.cosines(qvec, (rows.keys() | prev) - pool.cosine.keys()))
    proposing = selective(terms, pool.df, pool.n_docs)
    pool.passages.update(store.best_passages(qvec, proposing, [rid for rid, r in rows.items() if r.passages]))


def graph_rescore(
    store: Store, ranked: list[Scored], links: GraphLinks | None, limit: int
) -> tuple[list[Scored], dict[int, GraphExplain]]:
    """Blend the graph signal into the scores (see the module docstring); best first again.

    Only candidates that could reach the top ``limit`` are looked up (their memory ids read from
    the store): with the graph's share ``w``, one scoring more than ``w / (1 - w)`` below the
    ``limit``-th cannot pass it, whatever its link, so its graph signal is taken as 0.

    Returns:
        The candidates in their new order, and the graph links of those looked up, by row id.
    """
    if not links or not links.by_memory or not ranked:
        return ranked, {}
    w = GRAPH_WEIGHT
    floor = ranked[min(limit, len(ranked)) - 1].score - w / (1 - w)
    near = [int(hit.id) for hit in ranked if hit.score >= floor]
    ids = {rid: links.joined[rid] for rid in near if rid in links.joined}
    ids |= {rid: row.id for rid, row in store.fetch(r for r in near if r not in ids).items()}
    found = {rid: links.by_memory[mid] for rid, mid in ids.items() if mid in links.by_memory}
    share = {k: round(v * (1 - w), 6) for k, v in ranked[0].share.items()} | {"graph": w}
    for hit in ranked:
        why = found.get(int(hit.id))
        if why is not None and "graph" not in hit.candidate.sources:
            hit.candidate.sources = (*hit.candidate.sources, "graph")
        hit.score = round(min(1.0, max(0.0, (1 - w) * hit.score + w * (why["value"] if why else 0.0))), 6)
        hit.share = share
    return sorted(ranked, key=lambda r: (-r.score, r.id)), found
