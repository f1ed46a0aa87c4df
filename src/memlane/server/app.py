"""The FastAPI app: every route calls the public ``Memory`` API and nothing else.

Each request is authenticated and rate limited by the key store (on PostgreSQL: shared by every
server, in one statement), checked against the key's namespace, and run in a worker thread under
the request timeout. The sync ``Memory`` is shared by all threads of a worker
(it serialises its store access); several workers or servers share one store safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse

import memlane
from memlane import (
    AddResult,
    HistoryEvent,
    InvalidRequest,
    Memory,
    MemoryItem,
    MemoryNotFound,
    RequestTimeout,
    RequestTooLarge,
    Scope,
    SearchResult,
    ServiceUnavailable,
)
from memlane.server.auth import Guard, admit
from memlane.server.errors import ERROR_RESPONSES, install_handlers
from memlane.server.keys import KeyStore
from memlane.server.keys_sqlite import SQLiteKeyStore
from memlane.server.middleware import AuditMiddleware, BodyLimitMiddleware
from memlane.server.schemas import AddBody, SearchBody, UpdateBody
from memlane.server.settings import ServerSettings

__all__ = ["create_app"]

log = logging.getLogger("memlane.server")
T = TypeVar("T")

ScopeQuery = Annotated[str | None, Query(description="a scope id")]
FiltersQuery = Annotated[str | None, Query(description='a JSON filter object, e.g. {"topic": "food"}')]


class _State:
    """What every request needs: the engine, the guards' inputs, and readiness."""

    def __init__(self, memory: Memory | Callable[[], Memory], settings: ServerSettings, keys: KeyStore | None) -> None:
        self._memory = memory if isinstance(memory, Memory) else None
        self._factory = None if isinstance(memory, Memory) else memory
        self.settings = settings
        self.keys = keys or SQLiteKeyStore(settings.keys_path, audit_path=settings.audit_path)
        self.ready = False
        self.problem: str | None = None

    @property
    def memory(self) -> Memory:
        if self._memory is None:
            raise ServiceUnavailable("the server is still starting; retry in a moment (see /readyz)")
        return self._memory

    def use(self, memory: Memory) -> None:
        """Serve another engine from now on (the test suite swaps one in per test)."""
        self._memory = memory

    def warm_up(self) -> None:
        """Build the engine, open the store and load the embedder, so the first request is not slow."""
        try:
            if self._memory is None and self._factory is not None:
                self._memory = self._factory()
            self.memory.embedder.embed(["warm up"], kind="query")
            self.memory.get_all(user_id="memlane:readiness-probe", limit=1)
            self.ready = True
        except Exception as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
            log.error("memlane could not start: %s", self.problem)
            raise  # fail fast: a server that cannot serve should not pretend to


def _state(request: Request) -> _State:
    state: _State = request.app.state.memlane
    return state


def guard(request: Request) -> Guard:
    """Authenticate the request and spend one token of its key's rate limit."""
    state = _state(request)
    key = admit(request.headers if state.settings.auth else None, state.keys, state.settings)
    request.state.key = key
    return Guard(key)


Allowed = Annotated[Guard, Depends(guard)]


async def _run(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a Memory call in a thread under the request timeout."""
    timeout = _state(request).settings.request_timeout
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout)
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the request took longer than {timeout:g} s; a write may still complete, check before retrying"
        ) from exc


def _filters(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f'filters must be a JSON object, e.g. {{"topic": "food"}} ({exc.msg})') from exc
    if not isinstance(value, dict):
        raise InvalidRequest('filters must be a JSON object, e.g. {"topic": "food"}')
    return value


async def _check_id(request: Request, allowed: Guard, memory_id: str) -> None:
    """Raise MemoryNotFound unless the key may touch this memory.

    A memory reconciliation retired (only reachable through ``as_of``) is judged by its history,
    whose events carry the scope.
    """
    if allowed.key.is_admin:
        return
    memory = _state(request).memory
    try:
        allowed.check_memory(await _run(request, memory.get, memory_id))
    except MemoryNotFound:
        if not allowed.check_history(await _run(request, memory.history, memory_id)):
            raise
        return


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
                allowed.check_memory(await _run(request, _state(request).memory.get, prev))
            except MemoryNotFound:
                record["prev_id"] = None


def _body_scope(allowed: Guard, body: AddBody | SearchBody, operation: str) -> Scope:
    return allowed.check_scope(
        user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id, filters=body.filters, operation=operation
    )


def _check_sizes(settings: ServerSettings, body: AddBody) -> None:
    messages = body.messages if isinstance(body.messages, list) else [body.messages]
    if len(messages) > settings.max_messages:
        raise RequestTooLarge(
            f"{len(messages)} messages in one add; this server takes at most {settings.max_messages}: split the call"
        )
    for i, message in enumerate(messages):
        text = message if isinstance(message, str) else message.content
        if len(text) > settings.max_text_chars:
            raise RequestTooLarge(
                f"message {i} has {len(text)} characters; this server takes at most {settings.max_text_chars}"
            )


def _check_text(settings: ServerSettings, text: str, what: str) -> None:
    if len(text) > settings.max_text_chars:
        raise RequestTooLarge(f"{what} has {len(text)} characters; this server takes at most {settings.max_text_chars}")


def _memory_routes(router: APIRouter) -> None:
    @router.post("/v1/memories", tags=["memories"], summary="Add memories (Memory.add)")
    async def add(body: AddBody, request: Request, allowed: Allowed) -> AddResult:
        state = _state(request)
        _check_sizes(state.settings, body)
        args = body.model_dump(exclude_unset=True, exclude={"messages"})
        scope = _body_scope(allowed, body, "add")
        request.state.audit = {"scope": scope.as_dict()}
        messages = body.model_dump(include={"messages"})["messages"]
        result = await _run(request, state.memory.add, messages, **args)
        request.state.audit["events"] = [[r["id"], r["event"]] for r in result["results"]]
        return result

    @router.post("/v1/memories/search", tags=["memories"], summary="Search a scope (Memory.search)")
    async def search(body: SearchBody, request: Request, allowed: Allowed) -> SearchResult:
        _check_text(_state(request).settings, body.query, "query")
        args = body.model_dump(exclude_unset=True)
        _body_scope(allowed, body, "search")
        return await _run(request, _state(request).memory.search, args.pop("query"), **args)

    @router.get("/v1/memories", tags=["memories"], summary="List a scope, newest first (Memory.get_all)")
    async def get_all(
        request: Request,
        allowed: Allowed,
        user_id: ScopeQuery = None,
        agent_id: ScopeQuery = None,
        run_id: ScopeQuery = None,
        filters: FiltersQuery = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SearchResult:
        parsed = _filters(filters)
        allowed.check_scope(user_id=user_id, agent_id=agent_id, run_id=run_id, filters=parsed, operation="get_all")
        memory = _state(request).memory
        return await _run(
            request, memory.get_all, user_id=user_id, agent_id=agent_id, run_id=run_id, filters=parsed, limit=limit,
            cursor=cursor,
        )  # fmt: skip

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
        parsed = _filters(filters)
        scope = allowed.check_scope(
            user_id=user_id, agent_id=agent_id, run_id=run_id, filters=parsed, operation="delete_all"
        )
        request.state.audit = {"scope": scope.as_dict(), "purge": purge}
        memory = _state(request).memory
        result = await _run(
            request, memory.delete_all, user_id=user_id, agent_id=agent_id, run_id=run_id, filters=parsed, purge=purge
        )
        request.state.audit["deleted"] = result.get("deleted")
        return result

    @router.get("/v1/memories/{memory_id}", tags=["memories"], summary="One memory (Memory.get)")
    async def get(memory_id: str, request: Request, allowed: Allowed, include_sources: bool = False) -> MemoryItem:
        item = await _run(request, _state(request).memory.get, memory_id, include_sources=include_sources)
        return allowed.check_memory(item)

    @router.put("/v1/memories/{memory_id}", tags=["memories"], summary="Replace a memory's text (Memory.update)")
    async def update(memory_id: str, body: UpdateBody, request: Request, allowed: Allowed) -> MemoryItem:
        _check_text(_state(request).settings, body.data, "data")
        memory = _state(request).memory
        await _check_id(request, allowed, memory_id)
        return await _run(request, memory.update, memory_id, body.data, **body.model_dump(exclude={"data"}))

    @router.delete("/v1/memories/{memory_id}", tags=["memories"], summary="Delete a memory (Memory.delete)")
    async def delete(memory_id: str, request: Request, allowed: Allowed, purge: bool = False) -> dict[str, str]:
        await _check_id(request, allowed, memory_id)
        request.state.audit = {"purge": purge}
        memory = _state(request).memory
        return await _run(request, memory.delete, memory_id, purge=purge)

    @router.get("/v1/memories/{memory_id}/history", tags=["memories"], summary="A memory's changes (Memory.history)")
    async def history(memory_id: str, request: Request, allowed: Allowed) -> list[HistoryEvent]:
        return allowed.check_history(await _run(request, _state(request).memory.history, memory_id))


# The body of an export and of an import (read as raw bytes, so FastAPI cannot describe it itself).
_NDJSON: dict[str, Any] = {
    "description": "JSON lines: a memlane-export header, then one memory or history record per line",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
}


def _admin_routes(router: APIRouter) -> None:
    @router.post("/v1/reset", tags=["admin"], summary="Delete everything (Memory.reset; admin keys only)")
    async def reset(request: Request, allowed: Allowed) -> dict[str, str]:
        allowed.require_admin("reset")
        await _run(request, _state(request).memory.reset)
        return {"message": "the store was reset"}

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
        memory = _state(request).memory
        records = memory.export_records(user_id=user_id, agent_id=agent_id, run_id=run_id)
        first = await _run(request, next, records)  # errors surface as JSON before streaming starts

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
        result = await _run(request, _state(request).memory.import_records, records, on_conflict=on_conflict)
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
        state = _state(request)
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
    """
    settings = settings or ServerSettings()
    state = _State(memory, settings, keys)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(state.warm_up)
        yield
        await asyncio.to_thread(state.keys.close)

    app = FastAPI(
        title="memlane",
        version=memlane.__version__,
        summary="A memory layer for LLM agents",
        description="Memory endpoints need `Authorization: Bearer <API key>` unless the server runs with --no-auth.",
        lifespan=lifespan,
    )
    app.state.memlane = state
    install_handlers(app)
    api = APIRouter(responses=ERROR_RESPONSES)  # every /v1 route may answer these, all in one shape
    _memory_routes(api)
    _admin_routes(api)
    app.include_router(api)
    _probe_routes(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(AuditMiddleware, log=state.keys.audit)
    return app
