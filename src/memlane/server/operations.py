"""Each memory operation of the REST API, written once for every path that serves it.

``/v1/...`` (memlane's API, ``app.py``) and mem0's self-hosted paths (``mem0_routes.py``) declare
their own routes, and both call these functions: the same namespace checks, size limits, audit
details, request timeout and ``Memory`` call, so an operation cannot behave differently by path.
Authentication and the rate limit are the :data:`Allowed` dependency every route takes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request

from memlane import (
    AddResult,
    ConsolidationReport,
    EntityItem,
    EntityList,
    HistoryEvent,
    InvalidRequest,
    Memory,
    MemoryItem,
    MemoryNotFound,
    NeighbourList,
    PathResult,
    Profile,
    RelationList,
    RequestTimeout,
    RequestTooLarge,
    Scope,
    SearchResult,
    ServiceUnavailable,
)
from memlane.core.compat import UNMAPPED, refuse_unknown
from memlane.core.inputs import check_text
from memlane.server.auth import Guard, admit
from memlane.server.keys import KeyStore
from memlane.server.keys_sqlite import SQLiteKeyStore
from memlane.server.schemas import AddBody, ConsolidateBody, SearchBody
from memlane.server.settings import ServerSettings

__all__ = [
    "Allowed",
    "FiltersQuery",
    "ListQuery",
    "ScopeQuery",
    "State",
    "TimeQuery",
    "add",
    "check_id",
    "consolidate",
    "delete",
    "delete_all",
    "entities",
    "entity",
    "get",
    "get_all",
    "guard",
    "history",
    "list_query",
    "neighbours",
    "parse_filters",
    "path",
    "profile",
    "refuse_unmapped",
    "relations",
    "reset",
    "restore",
    "run",
    "search",
    "state_of",
    "time_query",
    "update",
]

log = logging.getLogger("memlane.server")
T = TypeVar("T")

ScopeQuery = Annotated[str | None, Query(description="a scope id")]
TimeQuery = Annotated[str | None, Query(description="ISO 8601 (naive = UTC) or epoch seconds")]
FiltersQuery = Annotated[str | None, Query(description='a JSON filter object, e.g. {"topic": "food"}')]


class State:
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
        """The engine (ServiceUnavailable while the server is starting)."""
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


def state_of(request: Request) -> State:
    """The app's :class:`State`."""
    state: State = request.app.state.memlane
    return state


def guard(request: Request) -> Guard:
    """Authenticate the request and spend one token of its key's rate limit."""
    state = state_of(request)
    key = admit(request.headers if state.settings.auth else None, state.keys, state.settings)
    request.state.key = key
    return Guard(key)


Allowed = Annotated[Guard, Depends(guard)]


async def run(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a Memory call in a thread under the request timeout."""
    timeout = state_of(request).settings.request_timeout
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout)
    except TimeoutError as exc:
        raise RequestTimeout(
            f"the request took longer than {timeout:g} s; a write may still complete, check before retrying"
        ) from exc


def parse_filters(raw: str | None) -> dict[str, Any] | None:
    """The ``filters`` query parameter: a JSON object."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f'filters must be a JSON object, e.g. {{"topic": "food"}} ({exc.msg})') from exc
    if not isinstance(value, dict):
        raise InvalidRequest('filters must be a JSON object, e.g. {"topic": "food"}')
    return value


def time_query(raw: str | None) -> str | float | None:
    """A time query parameter as ``Memory`` takes it: epoch seconds as a number, anything else as text.

    Text ISO 8601 reads first ("20260101" is a date, as in Python), so only what is not ISO becomes
    a number; ``Memory`` then refuses what is neither, with its own message.
    """
    if raw is None:
        return None
    try:
        datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        try:
            number = float(raw)
        except ValueError:
            return raw
        return number if math.isfinite(number) else raw
    return raw


def refuse_unmapped(operation: str, given: Mapping[str, Any]) -> None:
    """Refuse mem0's arguments with no memlane meaning, with ``Memory``'s own message (a 400)."""
    refuse_unknown(operation, {name: value for name, value in given.items() if name in UNMAPPED})


async def check_id(request: Request, allowed: Guard, memory_id: str) -> None:
    """Raise MemoryNotFound unless the key may touch this memory.

    A memory reconciliation retired (only reachable through ``as_of``) is judged by its history,
    whose events carry the scope.
    """
    if allowed.key.is_admin:
        return
    memory = state_of(request).memory
    try:
        allowed.check_memory(await run(request, memory.get, memory_id))
    except MemoryNotFound:
        if not allowed.check_history(await run(request, memory.history, memory_id)):
            raise
        return


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


def _check_text(settings: ServerSettings, text: object, what: str) -> None:
    if isinstance(text, str) and len(text) > settings.max_text_chars:
        raise RequestTooLarge(f"{what} has {len(text)} characters; this server takes at most {settings.max_text_chars}")


# -- the operations -------------------------------------------------------------------------------
async def add(request: Request, allowed: Guard, body: AddBody) -> AddResult:
    """``Memory.add`` for the key: audited with the scope and the ids written."""
    refuse_unmapped("add", body.mem0_unmapped)
    state = state_of(request)
    _check_sizes(state.settings, body)
    args = body.model_dump(exclude_unset=True, exclude={"messages"})
    scope = _body_scope(allowed, body, "add")
    request.state.audit = {"scope": scope.as_dict()}
    messages = body.model_dump(include={"messages"})["messages"]
    result = await run(request, state.memory.add, messages, **args)
    request.state.audit["events"] = [[r["id"], r["event"]] for r in result["results"]]
    return result


async def search(request: Request, allowed: Guard, body: SearchBody) -> SearchResult:
    """``Memory.search`` within the key's namespace."""
    refuse_unmapped("search", body.mem0_unmapped)
    _check_text(state_of(request).settings, body.query, "query")
    args = body.model_dump(exclude_unset=True)
    _body_scope(allowed, body, "search")
    return await run(request, state_of(request).memory.search, args.pop("query"), **args)


@dataclass(frozen=True)
class ListQuery:
    """A listing's (``get_all``) arguments, and any of mem0's it cannot honour.

    ``filters`` is the JSON text of a query parameter, or the object of a request body.
    """

    user_id: str | None
    agent_id: str | None
    run_id: str | None
    filters: str | dict[str, Any] | None
    limit: int | None
    cursor: str | None
    top_k: int | None
    show_expired: bool
    unmapped: dict[str, str]
    include_merged: bool = False
    include_archived: bool = False


def list_query(
    request: Request,
    user_id: ScopeQuery = None,
    agent_id: ScopeQuery = None,
    run_id: ScopeQuery = None,
    filters: FiltersQuery = None,
    limit: Annotated[int | None, Query(description="at most this many memories (default 100)")] = None,
    cursor: Annotated[str | None, Query(description="the previous page's next_cursor")] = None,
    top_k: Annotated[int | None, Query(description="mem0's name for limit (give one of them)")] = None,
    show_expired: Annotated[bool, Query(description="include memories whose expires_at has passed")] = False,
    include_merged: Annotated[bool, Query(description="include memories consolidation merged into another")] = False,
    include_archived: Annotated[bool, Query(description="include memories consolidation archived")] = False,
) -> ListQuery:
    """The listing's query parameters (a FastAPI dependency)."""
    unmapped = {name: value for name, value in request.query_params.items() if name in UNMAPPED}
    return ListQuery(
        user_id, agent_id, run_id, filters, limit, cursor, top_k, show_expired, unmapped, include_merged,
        include_archived,
    )  # fmt: skip


async def get_all(request: Request, allowed: Guard, query: ListQuery) -> SearchResult:
    """``Memory.get_all`` within the key's namespace."""
    refuse_unmapped("get_all", query.unmapped)
    parsed = query.filters if isinstance(query.filters, dict) else parse_filters(query.filters)
    ids = {"user_id": query.user_id, "agent_id": query.agent_id, "run_id": query.run_id}
    allowed.check_scope(user_id=query.user_id, agent_id=query.agent_id, run_id=query.run_id, filters=parsed,
                        operation="get_all")  # fmt: skip
    memory = state_of(request).memory
    return await run(
        request, memory.get_all, **ids, filters=parsed, limit=query.limit, cursor=query.cursor, top_k=query.top_k,
        show_expired=query.show_expired, include_merged=query.include_merged, include_archived=query.include_archived,
    )  # fmt: skip


async def delete_all(
    request: Request, allowed: Guard, ids: Mapping[str, str | None], filters: str | None, purge: bool
) -> dict[str, Any]:
    """``Memory.delete_all`` of a scope within the key's namespace, audited with the count.

    A mem0 argument in the query (``app_id``, ...) is refused rather than ignored: ignored, it would
    widen the deletion to the whole of the other ids' scope.
    """
    refuse_unmapped("delete_all", request.query_params)
    parsed = parse_filters(filters)
    scope = allowed.check_scope(
        user_id=ids.get("user_id"), agent_id=ids.get("agent_id"), run_id=ids.get("run_id"), filters=parsed,
        operation="delete_all",
    )  # fmt: skip
    request.state.audit = {"scope": scope.as_dict(), "purge": purge}
    result = await run(request, state_of(request).memory.delete_all, **ids, filters=parsed, purge=purge)
    request.state.audit["deleted"] = result.get("deleted")
    return result


async def get(request: Request, allowed: Guard, memory_id: str, include_sources: bool) -> MemoryItem:
    """``Memory.get``; another namespace's memory is exactly an unknown id."""
    item = await run(request, state_of(request).memory.get, memory_id, include_sources=include_sources)
    return allowed.check_memory(item)


async def update(request: Request, allowed: Guard, memory_id: str, args: Mapping[str, Any]) -> MemoryItem:
    """``Memory.update`` with the fields the body gave (an absent expiry keeps it, a null one clears it)."""
    settings = state_of(request).settings
    _check_text(settings, args.get("data"), "data")
    _check_text(settings, args.get("text"), "text")
    await check_id(request, allowed, memory_id)
    return await run(request, state_of(request).memory.update, memory_id, **args)


async def delete(request: Request, allowed: Guard, memory_id: str, purge: bool) -> dict[str, str]:
    """``Memory.delete`` of a memory the key may see, audited."""
    refuse_unmapped("delete", request.query_params)
    await check_id(request, allowed, memory_id)
    request.state.audit = {"purge": purge}
    return await run(request, state_of(request).memory.delete, memory_id, purge=purge)


async def history(request: Request, allowed: Guard, memory_id: str) -> list[HistoryEvent]:
    """``Memory.history``; another namespace's memory has none."""
    return allowed.check_history(await run(request, state_of(request).memory.history, memory_id))


async def reset(request: Request, allowed: Guard) -> dict[str, str]:
    """``Memory.reset`` (admin keys only)."""
    allowed.require_admin("reset")
    await run(request, state_of(request).memory.reset)
    return {"message": "the store was reset"}


# -- the graph ------------------------------------------------------------------------------------
# Entities are read by scope, and relations, neighbours and paths resolve their entities (by id or
# name) inside the scope the key named, so a tenant reaches no other namespace's graph; an entity
# by id (unscoped, like ``get``) is checked against the namespace as a memory is.
def _graph_scope(allowed: Guard, ids: Mapping[str, str | None], operation: str) -> dict[str, str | None]:
    allowed.check_scope(user_id=ids.get("user_id"), agent_id=ids.get("agent_id"), run_id=ids.get("run_id"),
                        operation=operation)  # fmt: skip
    return {name: ids.get(name) for name in ("user_id", "agent_id", "run_id")}


async def entities(request: Request, allowed: Guard, ids: Mapping[str, str | None]) -> EntityList:
    """``Memory.entities`` of a scope within the key's namespace."""
    scope = _graph_scope(allowed, ids, "entities")
    return await run(request, state_of(request).memory.entities, **scope)


async def entity(request: Request, allowed: Guard, entity_id: str) -> EntityItem:
    """``Memory.entity``; another namespace's entity is exactly an unknown id."""
    return allowed.check_entity(await run(request, state_of(request).memory.entity, entity_id))


async def relations(
    request: Request,
    allowed: Guard,
    ref: str,
    ids: Mapping[str, str | None],
    predicate: str | None,
    direction: str,
    as_of: str | None,
) -> RelationList:
    """``Memory.relations`` of an entity of a scope within the key's namespace."""
    scope = _graph_scope(allowed, ids, "relations")
    memory = state_of(request).memory
    return await run(
        request, memory.relations, ref, **scope, predicate=predicate, direction=direction, as_of=time_query(as_of)
    )


async def neighbours(
    request: Request, allowed: Guard, ref: str, ids: Mapping[str, str | None], depth: int, as_of: str | None
) -> NeighbourList:
    """``Memory.neighbours`` of an entity of a scope within the key's namespace."""
    scope = _graph_scope(allowed, ids, "neighbours")
    memory = state_of(request).memory
    return await run(request, memory.neighbours, ref, **scope, depth=depth, as_of=time_query(as_of))


async def path(
    request: Request, allowed: Guard, a: str, b: str, ids: Mapping[str, str | None], as_of: str | None
) -> PathResult:
    """``Memory.path`` between two entities of a scope within the key's namespace."""
    scope = _graph_scope(allowed, ids, "path")
    return await run(request, state_of(request).memory.path, a, b, **scope, as_of=time_query(as_of))


# -- consolidation --------------------------------------------------------------------------------
# A tenant key tidies, reads the profile of and restores only what its namespace holds; the whole
# store (no scope ids) is an operator's pass, for admin keys only. The report's texts are those of
# memories in the scope the key named, which it may read anyway.
async def consolidate(request: Request, allowed: Guard, body: ConsolidateBody) -> ConsolidationReport:
    """``Memory.consolidate`` of a scope within the key's namespace, audited with the counts."""
    ids = {"user_id": body.user_id, "agent_id": body.agent_id, "run_id": body.run_id}
    if all(value is None for value in ids.values()):
        allowed.require_admin("consolidating the whole store (no user_id, agent_id or run_id)")
        request.state.audit = {"scope": Scope().as_dict(), "dry_run": body.dry_run}
    else:
        scope = allowed.check_scope(
            user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id, operation="consolidate"
        )
        request.state.audit = {"scope": scope.as_dict(), "dry_run": body.dry_run}
    report = await run(request, state_of(request).memory.consolidate, **ids, dry_run=body.dry_run)
    request.state.audit |= {
        "scopes": report["scopes"], "merged": sum(len(m["ids"]) for m in report["merged"]),
        "superseded": len(report["superseded"]), "summaries": len(report["summaries"]),
        "archived": len(report["archived"]),
    }  # fmt: skip
    return report


async def profile(request: Request, allowed: Guard, user_id: str | None, refresh: bool) -> Profile:
    """``Memory.profile`` of a user within the key's namespace."""
    if user_id is None:
        raise InvalidRequest("profile needs a user: GET /v1/profile?user_id=...")
    check_text(user_id, "user_id")  # Memory's own message for a blank id
    allowed.check_scope(user_id=user_id, operation="profile")
    return await run(request, state_of(request).memory.profile, user_id=user_id, refresh=refresh)


async def restore(request: Request, allowed: Guard, memory_id: str) -> MemoryItem:
    """``Memory.restore`` of a memory the key may see (merged and archived ones included), audited."""
    await check_id(request, allowed, memory_id)
    return await run(request, state_of(request).memory.restore, memory_id)
