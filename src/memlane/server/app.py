"""The FastAPI app: every route calls the public ``Memory`` API and nothing else.

The memory routes are declared here (``/v1``) and in ``mem0_routes.py`` (mem0's paths), the graph
routes in ``graph_routes.py``, the consolidation routes in ``consolidate_routes.py``; all call the
one implementation of each operation in ``operations.py``. With ``consolidate_every`` set, each
server process also runs the scheduled consolidation pass (``scheduler.py``) while it serves.

Each request is authenticated and rate limited by the key store (on PostgreSQL: shared by every
server, in one statement), checked against the key's namespace, and run in a worker thread under
the request timeout. The sync ``Memory`` is shared by all threads of a worker
(it serialises its store access); several workers or servers share one store safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import StreamingResponse

import memlane
from memlane import (
    AddResult,
    HistoryEvent,
    InvalidRequest,
    Memory,
    MemoryItem,
    MemoryNotFound,
    SearchResult,
    ServiceUnavailable,
)
from memlane.server import operations as ops
from memlane.server.auth import Guard
from memlane.server.consolidate_routes import consolidate_routes
from memlane.server.errors import ERROR_RESPONSES, install_handlers
from memlane.server.graph_routes import graph_routes
from memlane.server.keys import KeyStore
from memlane.server.mem0_platform_routes import mem0_platform_routes
from memlane.server.mem0_routes import mem0_routes
from memlane.server.middleware import AuditMiddleware, BodyLimitMiddleware
from memlane.server.operations import Allowed, FiltersQuery, ListQuery, ScopeQuery, State
from memlane.server.scheduler import ConsolidationScheduler
from memlane.server.schemas import AddBody, SearchBody, UpdateBody
from memlane.server.settings import ServerSettings

__all__ = ["create_app"]

Listing = Annotated[ListQuery, Depends(ops.list_query)]


def _memory_routes(router: APIRouter) -> None:
    @router.post("/v1/memories", tags=["memories"], summary="Add memories (Memory.add)")
    async def add(body: AddBody, request: Request, allowed: Allowed) -> AddResult:
        return await ops.add(request, allowed, body)

    @router.post("/v1/memories/search", tags=["memories"], summary="Search a scope (Memory.search)")
    async def search(body: SearchBody, request: Request, allowed: Allowed) -> SearchResult:
        return await ops.search(request, allowed, body)

    @router.get("/v1/memories", tags=["memories"], summary="List a scope, newest first (Memory.get_all)")
    async def get_all(request: Request, allowed: Allowed, query: Listing) -> SearchResult:
        return await ops.get_all(request, allowed, query)

    @router.delete("/v1/memories", tags=["memories"], summary="Delete a whole scope (Memory.delete_all)")
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

    @router.get("/v1/memories/{memory_id}", tags=["memories"], summary="One memory (Memory.get)")
    async def get(memory_id: str, request: Request, allowed: Allowed, include_sources: bool = False) -> MemoryItem:
        return await ops.get(request, allowed, memory_id, include_sources)

    @router.put(
        "/v1/memories/{memory_id}", tags=["memories"],
        summary="Change a memory's text, metadata or expiry (Memory.update)",
    )  # fmt: skip
    async def update(memory_id: str, body: UpdateBody, request: Request, allowed: Allowed) -> MemoryItem:
        return await ops.update(request, allowed, memory_id, body.model_dump(exclude_unset=True))

    @router.delete("/v1/memories/{memory_id}", tags=["memories"], summary="Delete a memory (Memory.delete)")
    async def delete(memory_id: str, request: Request, allowed: Allowed, purge: bool = False) -> dict[str, str]:
        return await ops.delete(request, allowed, memory_id, purge)

    @router.get("/v1/memories/{memory_id}/history", tags=["memories"], summary="A memory's changes (Memory.history)")
    async def history(memory_id: str, request: Request, allowed: Allowed) -> list[HistoryEvent]:
        return await ops.history(request, allowed, memory_id)


async def _drop_hidden_links(request: Request, allowed: Guard, records: list[dict[str, Any]]) -> None:
    """Unlink a tenant's messages from memories it cannot see, as import unlinks unknown ``prev_id``s.

    Search scores a message with the text of the one it follows: a link into another namespace
    would let a tenant probe that memory's words by searching its own.
    """
    if allowed.key.is_admin:
        return
    imported = {record.get("id") for record in records}
    for record in records:
        prev = record.get("prev_id")
        if isinstance(prev, str) and prev.strip() and prev not in imported:
            try:
                allowed.check_memory(await ops.run(request, ops.state_of(request).memory.get, prev))
            except MemoryNotFound:
                record["prev_id"] = None


# The body of an export and of an import (read as raw bytes, so FastAPI cannot describe it itself).
_NDJSON: dict[str, Any] = {
    "description": "JSON lines: a memlane-export header, then one memory or history record per line",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
}


def _admin_routes(router: APIRouter) -> None:
    @router.post("/v1/reset", tags=["admin"], summary="Delete everything (Memory.reset; admin keys only)")
    async def reset(request: Request, allowed: Allowed) -> dict[str, str]:
        return await ops.reset(request, allowed)

    @router.get(
        "/v1/export", tags=["admin"], summary="Export memories and history as JSON lines",
        response_class=StreamingResponse, responses={200: _NDJSON},
    )  # fmt: skip
    async def export(
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
    ) -> StreamingResponse:
        scoped = any(i is not None for i in (user_id, agent_id, run_id))
        if scoped or not allowed.key.is_admin:
            # required=False: a tenant's unscoped export is the whole store, an admin call (403, not 400).
            allowed.check_scope(
                user_id=user_id, agent_id=agent_id, run_id=run_id, operation="export_records", required=False
            )
        memory = ops.state_of(request).memory
        records = memory.export_records(user_id=user_id, agent_id=agent_id, run_id=run_id)
        first = await ops.run(request, next, records)  # errors surface as JSON before streaming starts

        def lines() -> Iterator[bytes]:
            yield (json.dumps(first, ensure_ascii=False) + "\n").encode()
            for record in records:
                yield (json.dumps(record, ensure_ascii=False) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @router.post(
        "/v1/import", tags=["admin"], summary="Import JSON lines from an export (all or nothing)",
        openapi_extra={"requestBody": {"required": True, "content": _NDJSON["content"]}},
    )  # fmt: skip
    async def import_records(
        request: Request, allowed: Allowed, on_conflict: Literal["error", "skip"] = "error"
    ) -> dict[str, int]:
        records = []
        for number, line in enumerate((await request.body()).splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InvalidRequest(f"line {number} is not JSON: send the file `memlane export` wrote") from exc
            if not isinstance(record, dict):
                raise InvalidRequest(f"line {number} is not a JSON object")
            records.append(record)
        allowed.check_records(records)
        await _drop_hidden_links(request, allowed, records)
        result = await ops.run(request, ops.state_of(request).memory.import_records, records, on_conflict=on_conflict)
        request.state.audit = {"result": result}
        return result


def _probe_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["probes"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["probes"], summary="Readiness: store open and embedder loaded",
        responses={503: ERROR_RESPONSES[503]},
    )  # fmt: skip
    async def readyz(request: Request) -> dict[str, str]:
        state = ops.state_of(request)
        if not state.ready:
            raise ServiceUnavailable(state.problem or "starting: loading the embedder and opening the store")
        return {"status": "ready"}

    @app.get("/v1/version", tags=["probes"], summary="Server and API version")
    async def version() -> dict[str, str]:
        return {"memlane": memlane.__version__, "api": "v1"}


def create_app(
    memory: Memory | Callable[[], Memory], settings: ServerSettings | None = None, *, keys: KeyStore | None = None
) -> FastAPI:
    """The REST app over one ``Memory`` (or a factory that builds it at startup).

    Args:
        memory: the engine every route calls, or a zero-argument callable returning it.
        settings: limits, auth and paths (default: ``ServerSettings()``).
        keys: API keys, rate limits and the audit log (default: ``keys.db`` and ``audit.log`` in
            ``settings.home``; ``memlane serve`` on PostgreSQL passes the database's). The app
            closes it at shutdown, after the last request, so no audit record is lost.

    With ``settings.consolidate_every``, a :class:`~memlane.server.scheduler.ConsolidationScheduler`
    runs from startup to shutdown.
    """
    settings = settings or ServerSettings()
    state = State(memory, settings, keys)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(state.warm_up)
        scheduler = None
        if settings.consolidate_every is not None:
            scheduler = ConsolidationScheduler(lambda: state.memory, settings.consolidate_every, audit=state.keys.audit)
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await asyncio.to_thread(scheduler.stop)  # before the keys close: its last audit record
            await asyncio.to_thread(state.keys.close)

    app = FastAPI(
        title="memlane",
        version=memlane.__version__,
        summary="A memory layer for LLM agents",
        description=(
            "Memory endpoints need `Authorization: Bearer <API key>` unless the server runs with --no-auth. "
            "The `mem0` paths serve apps written for mem0's self-hosted REST server, with memlane's checks and errors."
        ),
        lifespan=lifespan,
    )
    app.state.memlane = state
    install_handlers(app)
    api = APIRouter(responses=ERROR_RESPONSES)  # every /v1 route may answer these, all in one shape
    _memory_routes(api)
    graph_routes(api)
    consolidate_routes(api)
    _admin_routes(api)
    app.include_router(api)
    mem0 = APIRouter(responses=ERROR_RESPONSES, tags=["mem0"])  # mem0's self-hosted server paths
    mem0_routes(mem0)
    mem0_platform_routes(mem0)  # and those mem0's platform client calls
    app.include_router(mem0)
    _probe_routes(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(AuditMiddleware, log=state.keys.audit)
    return app
