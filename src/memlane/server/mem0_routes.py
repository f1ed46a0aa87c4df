"""mem0's self-hosted REST paths, so an app written against mem0's server works with a new base URL.

mem0's OSS server (``server/main.py`` in mem0ai/mem0) serves ``/memories``, ``/search``,
``/reset`` and ``/configure`` without a version prefix. Here each path calls the same operation as
its ``/v1`` twin (:mod:`memlane.server.operations`): same authentication (``Authorization: Bearer``,
``Token`` or ``X-API-Key``), rate limit, namespace checks, audit, timeout and error table. The
bodies are memlane's, which take mem0's fields (``messages``, ``user_id``, ``agent_id``,
``run_id``, ``metadata``, ``infer``, ``memory_type``, ``prompt``, ``filters``, ``top_k``,
``threshold``, ``rerank``, ...) as ``Memory`` does.

Differences from mem0's server, on purpose:

- errors are memlane's body (``{"error": {"type", "message", "status"}}``) with a meaningful status
  (400, 401, 403, 404, 409, 413, 429, 503), where mem0 answered 500 with ``detail`` for almost
  everything;
- ``POST /configure`` is refused: memlane is configured when the server starts;
- ``PUT /memories/{id}`` takes ``{"text": ...}`` (mem0 2.x), ``{"data": ...}`` or
  ``{"memory": ...}`` (plus ``metadata`` and ``expiration_date``) and answers mem0's
  ``{"message": "Memory updated successfully!"}``; any other field is refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from memlane import AddResult, HistoryEvent, InvalidRequest, MemoryItem, SearchResult
from memlane.server import operations as ops
from memlane.server.operations import Allowed, FiltersQuery, ListQuery, ScopeQuery
from memlane.server.schemas import AddBody, Mem0UpdateBody, SearchBody

__all__ = ["UPDATED", "mem0_routes", "update_args"]

# What mem0's PUT /memories/{memory_id} answers.
UPDATED = {"message": "Memory updated successfully!"}

Listing = Annotated[ListQuery, Depends(ops.list_query)]


def update_args(body: Mem0UpdateBody) -> dict[str, Any]:
    """``Memory.update``'s arguments from mem0's update body: ``memory`` is one more name for the text.

    Raises:
        InvalidRequest: the text given under two names.
    """
    args = body.model_dump(exclude_unset=True)
    if "memory" in args:
        named = [name for name in ("text", "data") if args.get(name) is not None]
        if named and args["memory"] is not None:
            raise InvalidRequest(f"give the new text once, as text, data or memory (got memory and {named[0]})")
        memory = args.pop("memory")
        if memory is not None:
            args["text"] = memory
    return args


def _memories(router: APIRouter) -> None:
    @router.post("/memories", summary="Add memories (mem0's POST /memories; Memory.add)")
    async def add(body: AddBody, request: Request, allowed: Allowed) -> AddResult:
        return await ops.add(request, allowed, body)

    @router.get("/memories", summary="List a scope (mem0's GET /memories; Memory.get_all)")
    async def get_all(request: Request, allowed: Allowed, query: Listing) -> SearchResult:
        return await ops.get_all(request, allowed, query)

    @router.delete("/memories", summary="Delete a whole scope (mem0's DELETE /memories; Memory.delete_all)")
    async def delete_all(
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
        filters: FiltersQuery = None,
        purge: bool = False,
    ) -> dict[str, Any]:
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return await ops.delete_all(request, allowed, ids, filters, purge)

    @router.get("/memories/{memory_id}", summary="One memory (mem0's GET /memories/{memory_id}; Memory.get)")
    async def get(memory_id: str, request: Request, allowed: Allowed, include_sources: bool = False) -> MemoryItem:
        return await ops.get(request, allowed, memory_id, include_sources)

    @router.put(
        "/memories/{memory_id}", summary="Change a memory's text, metadata or expiry (mem0's PUT; Memory.update)"
    )
    async def update(memory_id: str, body: Mem0UpdateBody, request: Request, allowed: Allowed) -> dict[str, str]:
        await ops.update(request, allowed, memory_id, update_args(body))
        return dict(UPDATED)

    @router.delete("/memories/{memory_id}", summary="Delete a memory (mem0's DELETE; Memory.delete)")
    async def delete(memory_id: str, request: Request, allowed: Allowed, purge: bool = False) -> dict[str, str]:
        return await ops.delete(request, allowed, memory_id, purge)

    @router.get("/memories/{memory_id}/history", summary="A memory's changes (mem0's; Memory.history)")
    async def history(memory_id: str, request: Request, allowed: Allowed) -> list[HistoryEvent]:
        return await ops.history(request, allowed, memory_id)


def mem0_routes(router: APIRouter) -> None:
    """Declare mem0's self-hosted server paths on ``router``."""
    _memories(router)

    @router.post("/search", summary="Search a scope (mem0's POST /search; Memory.search)")
    async def search(body: SearchBody, request: Request, allowed: Allowed) -> SearchResult:
        return await ops.search(request, allowed, body)

    @router.post("/reset", summary="Delete everything (mem0's POST /reset; admin keys only)")
    async def reset(request: Request, allowed: Allowed) -> dict[str, str]:
        return await ops.reset(request, allowed)

    @router.post("/configure", summary="Refused: memlane is configured when the server starts")
    async def configure(allowed: Allowed) -> dict[str, str]:
        raise InvalidRequest(
            "POST /configure (mem0's) cannot change a running memlane server: its store, embedder and LLM "
            "come from its config at start; edit the config (memlane serve --config FILE) and restart"
        )
