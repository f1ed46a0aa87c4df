"""The graph routes (``/v1/entities``, ``/v1/graph/path``): ``Memory``'s graph API over REST.

Every route is a read with the scope in the query, like ``GET /v1/memories``, and calls its
operation in :mod:`memlane.server.operations`: the same key, rate limit, namespace checks and
request timeout as the memory routes. An entity is named in the path by its id or by a name as
memories use it (URL-encoded: ``/v1/entities/Alice%20Chen/relations``); a name holding ``/`` is
matched too, as the ``path`` converter takes the rest of the path up to the last segment.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from memlane import EntityItem, EntityList, NeighbourList, PathResult, RelationList
from memlane.server import operations as ops
from memlane.server.operations import Allowed, ScopeQuery, TimeQuery

__all__ = ["graph_routes"]

EntityRef = Annotated[str, Query(description="an entity id, or a name as memories use it")]


def graph_routes(router: APIRouter) -> None:
    """Declare the graph routes on ``router`` (tag ``graph``)."""

    @router.get("/v1/entities", tags=["graph"], summary="The entities of a scope, by name (Memory.entities)")
    async def entities(
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
    ) -> EntityList:
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return await ops.entities(request, allowed, ids)

    # Declared before /v1/entities/{entity_id}: the entity of these two may be a name holding "/".
    @router.get(
        "/v1/entities/{entity:path}/relations", tags=["graph"],
        summary="An entity's relations, now or at as_of (Memory.relations)",
    )  # fmt: skip
    async def relations(
        entity: str,
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
        predicate: Annotated[str | None, Query(description='only this predicate, e.g. "reports_to"')] = None,
        direction: Annotated[str, Query(description="out (the entity is the subject), in, or both")] = "both",
        as_of: TimeQuery = None,
    ) -> RelationList:
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return await ops.relations(request, allowed, entity, ids, predicate, direction, as_of)

    @router.get(
        "/v1/entities/{entity:path}/neighbours", tags=["graph"],
        summary="The entities within depth relations of one, nearest first (Memory.neighbours)",
    )  # fmt: skip
    async def neighbours(
        entity: str,
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
        depth: Annotated[int, Query(description="how many relations away, 1 to 6")] = 1,
        as_of: TimeQuery = None,
    ) -> NeighbourList:
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return await ops.neighbours(request, allowed, entity, ids, depth, as_of)

    @router.get("/v1/entities/{entity_id}", tags=["graph"], summary="One entity by id (Memory.entity)")
    async def entity(entity_id: str, request: Request, allowed: Allowed) -> EntityItem:
        return await ops.entity(request, allowed, entity_id)

    @router.get(
        "/v1/graph/path", tags=["graph"], summary="The shortest chain of relations joining two entities (Memory.path)"
    )
    async def path(
        request: Request,
        allowed: Allowed,
        a: EntityRef,
        b: EntityRef,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
        as_of: TimeQuery = None,
    ) -> PathResult:
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return await ops.path(request, allowed, a, b, ids, as_of)
