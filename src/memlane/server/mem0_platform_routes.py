"""The paths mem0's platform client (``from mem0 import MemoryClient``, mem0ai 2.x) calls.

With them an app keeps mem0's own client and points it at memlane::

    client = mem0.MemoryClient(api_key="mlk_...", host="http://memory:8420")

The client sends the key as ``Authorization: Token <key>``, which memlane's key check accepts. Each
path calls the same operation as its ``/v1`` twin (:mod:`memlane.server.operations`), so keys,
rate limits, namespaces, audit, limits and errors are the same. What the client needs and memlane
serves:

==========================================  =================================================
mem0 ``MemoryClient``                       path
==========================================  =================================================
construction (checks the key)               ``GET /v1/ping/``
``add(messages, user_id=..., ...)``         ``POST /v3/memories/add/``
``search(query, filters=..., top_k=...)``   ``POST /v3/memories/search/``
``get_all(filters=...)``                    ``POST /v3/memories/`` (``page`` / ``page_size``: 400)
``get(id)``, ``update(id, text=...)``,      ``GET`` / ``PUT`` / ``DELETE /v1/memories/{id}/``
``delete(id)``
``delete_all(user_id=...)``                 ``DELETE /v1/memories/``
``history(id)``                             ``GET /v1/memories/{id}/history/``
==========================================  =================================================

``users()``, ``delete_users()`` and ``reset()`` (entities), batch operations, exports, webhooks and
project settings are platform features memlane does not have: those paths answer 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from memlane import AddResult, HistoryEvent, MemoryItem, SearchResult
from memlane.core.compat import UNMAPPED
from memlane.server import operations as ops
from memlane.server.operations import Allowed, FiltersQuery, ListQuery, ScopeQuery
from memlane.server.schemas import AddBody, ListBody, SearchBody, UpdateBody

__all__ = ["mem0_platform_routes"]


def _reads(router: APIRouter) -> None:
    @router.get("/v1/ping/", summary="Check the key (mem0 MemoryClient's construction)")
    async def ping(allowed: Allowed) -> dict[str, str]:
        # mem0's client refuses to start without an organisation and project; memlane has neither.
        return {"status": "ok", "org_id": "memlane", "project_id": "memlane"}

    @router.post("/v3/memories/search/", summary="Search a scope (mem0 MemoryClient.search; Memory.search)")
    async def search(body: SearchBody, request: Request, allowed: Allowed) -> SearchResult:
        return await ops.search(request, allowed, body)

    @router.post("/v3/memories/", summary="List a scope (mem0 MemoryClient.get_all; Memory.get_all)")
    async def get_all(body: ListBody, request: Request, allowed: Allowed) -> SearchResult:
        unmapped = {k: v for k, v in request.query_params.items() if k in UNMAPPED} | body.mem0_unmapped
        query = ListQuery(
            body.user_id, body.agent_id, body.run_id, body.filters, body.limit, body.cursor, body.top_k,
            body.show_expired, unmapped,
        )  # fmt: skip
        return await ops.get_all(request, allowed, query)

    @router.get("/v1/memories/{memory_id}/", summary="One memory (mem0 MemoryClient.get; Memory.get)")
    async def get(memory_id: str, request: Request, allowed: Allowed) -> MemoryItem:
        return await ops.get(request, allowed, memory_id, False)

    @router.get(
        "/v1/memories/{memory_id}/history/", summary="A memory's changes (mem0 MemoryClient.history; Memory.history)"
    )
    async def history(memory_id: str, request: Request, allowed: Allowed) -> list[HistoryEvent]:
        return await ops.history(request, allowed, memory_id)


def mem0_platform_routes(router: APIRouter) -> None:
    """Declare the paths of mem0's platform client on ``router``."""
    _reads(router)

    @router.post("/v3/memories/add/", summary="Add memories (mem0 MemoryClient.add; Memory.add)")
    async def add(body: AddBody, request: Request, allowed: Allowed) -> AddResult:
        return await ops.add(request, allowed, body)

    @router.put(
        "/v1/memories/{memory_id}/", summary="Change a memory's text, metadata or expiry (mem0 MemoryClient.update)"
    )
    async def update(memory_id: str, body: UpdateBody, request: Request, allowed: Allowed) -> MemoryItem:
        return await ops.update(request, allowed, memory_id, body.model_dump(exclude_unset=True))

    @router.delete("/v1/memories/{memory_id}/", summary="Delete a memory (mem0 MemoryClient.delete; Memory.delete)")
    async def delete(memory_id: str, request: Request, allowed: Allowed) -> dict[str, str]:
        return await ops.delete(request, allowed, memory_id, False)

    @router.delete("/v1/memories/", summary="Delete a whole scope (mem0 MemoryClient.delete_all)")
    async def delete_all(
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
        filters: FiltersQuery = None,
    ) -> dict[str, Any]:
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return await ops.delete_all(request, allowed, ids, filters, False)
