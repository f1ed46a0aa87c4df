"""What explore_entity reads: an entity of a granted scope, its relations and its neighbours."""

from __future__ import annotations

from memlane import (
    EntityItem,
    EntityNotFound,
    Memory,
    MemoryClient,
    NeighbourItem,
    RelationItem,
    Scope,
)
from memlane.core.quoting import quote_data

__all__ = ["explore"]

MAX_KNOWN_NAMES = 100  # names an unknown-entity message lists


def explore(
    backend: Memory | MemoryClient, ref: str, scope: Scope, depth: int, as_of: str | None
) -> tuple[EntityItem | None, list[RelationItem], list[NeighbourItem]]:
    """An entity of the scope (by id or name), its relations and its neighbours.

    The entity record is told by its relations (the subject of those going out, the object of
    those coming in), else by its id or exact name among the scope's entities.

    Raises:
        EntityNotFound: no entity fits ``ref``; the message lists the scope's entities, so the
            model can ask again by one of their names.
    """
    ids = scope.as_dict()
    try:
        out = backend.relations(ref, **ids, direction="out", as_of=as_of)["results"]
    except EntityNotFound:
        names = sorted({e["name"] for e in backend.entities(**ids)["results"]}, key=str.casefold)
        known = ", ".join(quote_data(n) for n in names[:MAX_KNOWN_NAMES]) if names else "none yet"
        raise EntityNotFound(f"no entity {quote_data(ref)} in this scope; its entities: {known}") from None
    came = backend.relations(ref, **ids, direction="in", as_of=as_of)["results"]
    near = backend.neighbours(ref, **ids, depth=depth, as_of=as_of)["results"]
    target = out[0]["subject"]["id"] if out else came[0]["object"]["id"] if came else None
    entity = next((e for e in backend.entities(**ids)["results"] if _is(e, target, ref)), None)
    relations = sorted([*out, *(r for r in came if r not in out)], key=lambda r: (r["valid_from"], r["id"]))
    return entity, relations, near


def _is(entity: EntityItem, target: str | None, ref: str) -> bool:
    """Whether ``entity`` is the one explored: the relations' end, else the id or a name asked for."""
    if target is not None:
        return entity["id"] == target
    names = (entity["name"], *entity["aliases"])
    return entity["id"] == ref or ref.casefold() in (n.casefold() for n in names)
