"""The consolidation routes: ``Memory.consolidate``, ``profile`` and ``restore`` over REST.

- ``POST /v1/consolidate`` tidies a scope (body: ``user_id`` / ``agent_id`` / ``run_id``,
  ``dry_run``) and answers the report. A tenant key names a scope in its namespace; only an admin
  key may send no ids at all, which consolidates the whole store.
- ``GET /v1/profile?user_id=...&refresh=false`` is a user's profile.
- ``POST /v1/memories/{memory_id}/restore`` brings a merged or archived memory back.

Each calls its operation in :mod:`memlane.server.operations`: the same key, rate limit, namespace
checks, request timeout and error table as the memory routes. ``include_merged`` and
``include_archived`` on search and listing live with those routes. A pass over a large store can
outlast the request timeout (503 ``RequestTimeout``; the pass goes on and finishes its steps): run
those with ``memlane serve --consolidate-every`` or ``memlane consolidate`` on the store's host.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from memlane import ConsolidationReport, MemoryItem, Profile
from memlane.server import operations as ops
from memlane.server.operations import Allowed, ScopeQuery
from memlane.server.schemas import ConsolidateBody

__all__ = ["consolidate_routes"]


def consolidate_routes(router: APIRouter) -> None:
    """Declare the consolidation routes on ``router`` (tag ``consolidation``); their writes are
    audited through ``middleware.WRITE_ROUTES``."""

    @router.post(
        "/v1/consolidate", tags=["consolidation"],
        summary="Tidy a scope: merge duplicates, archive idle memories, rebuild profiles (Memory.consolidate)",
    )  # fmt: skip
    async def consolidate(body: ConsolidateBody, request: Request, allowed: Allowed) -> ConsolidationReport:
        return await ops.consolidate(request, allowed, body)

    @router.get("/v1/profile", tags=["consolidation"], summary="A user's stable facts, with sources (Memory.profile)")
    async def profile(
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        refresh: Annotated[bool, Query(description="rebuild it now if its memories changed")] = False,
    ) -> Profile:
        return await ops.profile(request, allowed, user_id, refresh)

    @router.post(
        "/v1/memories/{memory_id}/restore", tags=["consolidation"],
        summary="Bring a merged or archived memory back (Memory.restore)",
    )  # fmt: skip
    async def restore(memory_id: str, request: Request, allowed: Allowed) -> MemoryItem:
        return await ops.restore(request, allowed, memory_id)
