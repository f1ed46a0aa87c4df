"""``MemoryClient`` and ``AsyncMemoryClient``: the ``Memory`` API over HTTP, against ``memlane serve``.

Switching an app from embedded to remote is one line::

    memory = Memory()                                          # embedded
    memory = MemoryClient("http://memory:8420", api_key=KEY)   # remote, same calls and results

Methods, arguments and return shapes are ``Memory``'s, and server errors come back as the same
exception classes (``MemoryNotFound``, ``ScopeRequired``, ...). Each call is written once, as a
request description (:class:`_Call`); the two clients only differ in how they send it, the way
httpx drives one auth flow from its sync and async clients.

Retries: a request that never reached the server (connection refused or reset before sending) is
retried for every method; timeouts, 502/503/504 and dropped connections are retried only for
reads (get, get_all, search, history, export, profile, the graph reads), since a write may already have happened; 429 is
retried for every method after ``Retry-After`` (the server refused it before doing anything).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from memlane import errors
from memlane._http import (
    DEFAULT_URL,
    Call,
    Policy,
    add_call,
    consolidate_call,
    delete_all_call,
    delete_call,
    entities_call,
    entity_call,
    error_for,
    export_call,
    get_all_call,
    get_call,
    history_call,
    import_call,
    neighbours_call,
    path_call,
    profile_call,
    relations_call,
    restore_call,
    result_of,
    search_call,
    transport_error,
    update_call,
)
from memlane.types import (
    AddResult,
    ConsolidationReport,
    EntityItem,
    EntityList,
    HistoryEvent,
    MemoryItem,
    NeighbourList,
    PathResult,
    Profile,
    RelationList,
    SearchResult,
    Usage,
)

__all__ = ["AsyncMemoryClient", "MemoryClient"]


class _Base:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        host: str | None,
        timeout: float,
        retries: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        if url is not None and host is not None:
            raise errors.InvalidRequest("give url or host (mem0's name for it), not both")
        self.url = (url or host or os.environ.get("MEMLANE_URL") or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise errors.InvalidRequest(f"url must start with http:// or https://, got {self.url!r}")
        key = api_key if api_key is not None else os.environ.get("MEMLANE_API_KEY")
        self._headers = {"user-agent": "memlane-client", **(headers or {})}
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        if not isinstance(retries, int) or retries < 0:
            raise errors.InvalidRequest(f"retries must be a non-negative integer, got {retries!r}")
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._policy = Policy(retries)
        self._usage_lock = threading.Lock()
        self._usage = Usage(llm_calls=0, prompt_tokens=0, completion_tokens=0)

    @property
    def usage(self) -> Usage:
        """LLM calls and tokens spent by this client's adds so far (as the server reported them)."""
        with self._usage_lock:
            return Usage(**self._usage)

    def _count(self, result: AddResult) -> AddResult:
        spent = result["usage"]
        with self._usage_lock:
            self._usage["llm_calls"] += spent["llm_calls"]
            self._usage["prompt_tokens"] += spent["prompt_tokens"]
            self._usage["completion_tokens"] += spent["completion_tokens"]
        return result


def _progressed(report: ConsolidationReport, progress: Callable[[int, int], None] | None) -> ConsolidationReport:
    """The report, after telling ``progress`` the pass is done (the server does not stream it)."""
    if progress is not None:
        progress(report["scopes"], report["scopes"])
    return report


class MemoryClient(_Base):
    """``Memory``'s API against a memlane server.

    Args:
        url: the server (default ``$MEMLANE_URL``, else ``http://127.0.0.1:8420``); ``host`` is
            accepted as mem0's name for it.
        api_key: the key (default ``$MEMLANE_API_KEY``).
        timeout: seconds per request (connecting: at most 10).
        retries: resends of a failed request (see the module docstring for which are resent).
        transport: an httpx transport (tests, proxies, unix sockets).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        host: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, host, timeout, retries, headers)
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=self._timeout, transport=transport)

    def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method, call.path, params=call.params, json=call.body, content=call.content
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                wait = self._policy.after_error(call, exc, attempt)
                if wait is None:
                    raise transport_error(exc, self.url) from exc
            else:
                wait = self._policy.after_response(call, response, attempt)
                if wait is None:
                    return response
                response.close()
            time.sleep(wait)
            attempt += 1

    def _do(self, call: Call) -> Any:
        return result_of(self._send(call))

    def add(self, messages: Any, **kwargs: Any) -> AddResult:
        """See :meth:`memlane.Memory.add`."""
        result: AddResult = self._do(add_call(messages, **kwargs))
        return self._count(result)

    def search(self, query: str, **kwargs: Any) -> SearchResult:
        """See :meth:`memlane.Memory.search`."""
        result: SearchResult = self._do(search_call(query, **kwargs))
        return result

    def get(self, memory_id: str, *, include_sources: bool = False) -> MemoryItem:
        """See :meth:`memlane.Memory.get`."""
        result: MemoryItem = self._do(get_call(memory_id, include_sources=include_sources))
        return result

    def get_all(self, **kwargs: Any) -> SearchResult:
        """See :meth:`memlane.Memory.get_all`."""
        result: SearchResult = self._do(get_all_call(**kwargs))
        return result

    def update(self, memory_id: str, data: str | None = None, **kwargs: Any) -> MemoryItem:
        """See :meth:`memlane.Memory.update`."""
        result: MemoryItem = self._do(update_call(memory_id, data, **kwargs))
        return result

    def delete(self, memory_id: str, **kwargs: Any) -> dict[str, str]:
        """See :meth:`memlane.Memory.delete`."""
        result: dict[str, str] = self._do(delete_call(memory_id, **kwargs))
        return result

    def delete_all(self, **kwargs: Any) -> dict[str, Any]:
        """See :meth:`memlane.Memory.delete_all`."""
        result: dict[str, Any] = self._do(delete_all_call(**kwargs))
        return result

    def history(self, memory_id: str) -> list[HistoryEvent]:
        """See :meth:`memlane.Memory.history`."""
        result: list[HistoryEvent] = self._do(history_call(memory_id))
        return result

    def entities(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> EntityList:
        """See :meth:`memlane.Memory.entities`."""
        result: EntityList = self._do(entities_call(user_id=user_id, agent_id=agent_id, run_id=run_id))
        return result

    def entity(self, entity_id: str) -> EntityItem:
        """See :meth:`memlane.Memory.entity`."""
        result: EntityItem = self._do(entity_call(entity_id))
        return result

    def relations(self, entity: str, **kwargs: Any) -> RelationList:
        """See :meth:`memlane.Memory.relations` (``user_id``, ..., ``predicate``, ``direction``, ``as_of``)."""
        result: RelationList = self._do(relations_call(entity, **kwargs))
        return result

    def neighbours(self, entity: str, **kwargs: Any) -> NeighbourList:
        """See :meth:`memlane.Memory.neighbours` (``user_id``, ..., ``depth``, ``as_of``)."""
        result: NeighbourList = self._do(neighbours_call(entity, **kwargs))
        return result

    def path(self, a: str, b: str, **kwargs: Any) -> PathResult:
        """See :meth:`memlane.Memory.path` (``user_id``, ..., ``as_of``)."""
        result: PathResult = self._do(path_call(a, b, **kwargs))
        return result

    def consolidate(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ConsolidationReport:
        """See :meth:`memlane.Memory.consolidate`: the server runs the pass (no ids: the whole store,
        admin keys only); ``progress`` is called once, with ``(scopes, scopes)``, when it is done."""
        call = consolidate_call(user_id=user_id, agent_id=agent_id, run_id=run_id, dry_run=dry_run)
        result: ConsolidationReport = self._do(call)
        return _progressed(result, progress)

    def profile(self, *, user_id: str, refresh: bool = False) -> Profile:
        """See :meth:`memlane.Memory.profile`."""
        result: Profile = self._do(profile_call(user_id=user_id, refresh=refresh))
        return result

    def restore(self, memory_id: str) -> MemoryItem:
        """See :meth:`memlane.Memory.restore`."""
        result: MemoryItem = self._do(restore_call(memory_id))
        return result

    def reset(self) -> None:
        """See :meth:`memlane.Memory.reset` (admin keys only)."""
        self._do(Call("POST", "/v1/reset"))

    def export_records(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """See :meth:`memlane.Memory.export_records`; streamed from the server."""
        response = self._send(export_call(**kwargs), stream=True)
        try:
            if not response.is_success:
                response.read()
                raise error_for(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)
        finally:
            response.close()

    def import_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        on_conflict: str = "error",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """See :meth:`memlane.Memory.import_records` (all or nothing, on the server)."""
        call, count = import_call(records, on_conflict=on_conflict)
        result: dict[str, int] = self._do(call)
        if progress is not None:
            progress(count)
        return result

    def version(self) -> dict[str, str]:
        """The server's memlane and API versions (no key needed)."""
        result: dict[str, str] = self._do(Call("GET", "/v1/version", read_only=True))
        return result

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncMemoryClient(_Base):
    """``AsyncMemory``'s API against a memlane server; arguments as :class:`MemoryClient`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        host: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, host, timeout, retries, headers)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=self._timeout, transport=transport
        )

    async def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method, call.path, params=call.params, json=call.body, content=call.content
            )
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                wait = self._policy.after_error(call, exc, attempt)
                if wait is None:
                    raise transport_error(exc, self.url) from exc
            else:
                wait = self._policy.after_response(call, response, attempt)
                if wait is None:
                    return response
                await response.aclose()
            await asyncio.sleep(wait)
            attempt += 1

    async def _do(self, call: Call) -> Any:
        response = await self._send(call)
        return result_of(response)

    async def add(self, messages: Any, **kwargs: Any) -> AddResult:
        """See :meth:`memlane.Memory.add`."""
        result: AddResult = await self._do(add_call(messages, **kwargs))
        return self._count(result)

    async def search(self, query: str, **kwargs: Any) -> SearchResult:
        """See :meth:`memlane.Memory.search`."""
        result: SearchResult = await self._do(search_call(query, **kwargs))
        return result

    async def get(self, memory_id: str, *, include_sources: bool = False) -> MemoryItem:
        """See :meth:`memlane.Memory.get`."""
        result: MemoryItem = await self._do(get_call(memory_id, include_sources=include_sources))
        return result

    async def get_all(self, **kwargs: Any) -> SearchResult:
        """See :meth:`memlane.Memory.get_all`."""
        result: SearchResult = await self._do(get_all_call(**kwargs))
        return result

    async def update(self, memory_id: str, data: str | None = None, **kwargs: Any) -> MemoryItem:
        """See :meth:`memlane.Memory.update`."""
        result: MemoryItem = await self._do(update_call(memory_id, data, **kwargs))
        return result

    async def delete(self, memory_id: str, **kwargs: Any) -> dict[str, str]:
        """See :meth:`memlane.Memory.delete`."""
        result: dict[str, str] = await self._do(delete_call(memory_id, **kwargs))
        return result

    async def delete_all(self, **kwargs: Any) -> dict[str, Any]:
        """See :meth:`memlane.Memory.delete_all`."""
        result: dict[str, Any] = await self._do(delete_all_call(**kwargs))
        return result

    async def history(self, memory_id: str) -> list[HistoryEvent]:
        """See :meth:`memlane.Memory.history`."""
        result: list[HistoryEvent] = await self._do(history_call(memory_id))
        return result

    async def entities(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> EntityList:
        """See :meth:`memlane.Memory.entities`."""
        result: EntityList = await self._do(entities_call(user_id=user_id, agent_id=agent_id, run_id=run_id))
        return result

    async def entity(self, entity_id: str) -> EntityItem:
        """See :meth:`memlane.Memory.entity`."""
        result: EntityItem = await self._do(entity_call(entity_id))
        return result

    async def relations(self, entity: str, **kwargs: Any) -> RelationList:
        """See :meth:`memlane.Memory.relations` (``user_id``, ..., ``predicate``, ``direction``, ``as_of``)."""
        result: RelationList = await self._do(relations_call(entity, **kwargs))
        return result

    async def neighbours(self, entity: str, **kwargs: Any) -> NeighbourList:
        """See :meth:`memlane.Memory.neighbours` (``user_id``, ..., ``depth``, ``as_of``)."""
        result: NeighbourList = await self._do(neighbours_call(entity, **kwargs))
        return result

    async def path(self, a: str, b: str, **kwargs: Any) -> PathResult:
        """See :meth:`memlane.Memory.path` (``user_id``, ..., ``as_of``)."""
        result: PathResult = await self._do(path_call(a, b, **kwargs))
        return result

    async def consolidate(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ConsolidationReport:
        """See :meth:`MemoryClient.consolidate`."""
        call = consolidate_call(user_id=user_id, agent_id=agent_id, run_id=run_id, dry_run=dry_run)
        result: ConsolidationReport = await self._do(call)
        return _progressed(result, progress)

    async def profile(self, *, user_id: str, refresh: bool = False) -> Profile:
        """See :meth:`memlane.Memory.profile`."""
        result: Profile = await self._do(profile_call(user_id=user_id, refresh=refresh))
        return result

    async def restore(self, memory_id: str) -> MemoryItem:
        """See :meth:`memlane.Memory.restore`."""
        result: MemoryItem = await self._do(restore_call(memory_id))
        return result

    async def reset(self) -> None:
        """See :meth:`memlane.Memory.reset` (admin keys only)."""
        await self._do(Call("POST", "/v1/reset"))

    async def export_records(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """See :meth:`memlane.Memory.export_records`; streamed from the server."""
        response = await self._send(export_call(**kwargs), stream=True)
        try:
            if not response.is_success:
                await response.aread()
                raise error_for(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield json.loads(line)
        finally:
            await response.aclose()

    async def import_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        on_conflict: str = "error",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """See :meth:`memlane.Memory.import_records` (all or nothing, on the server)."""
        call, count = import_call(records, on_conflict=on_conflict)
        result: dict[str, int] = await self._do(call)
        if progress is not None:
            progress(count)
        return result

    async def version(self) -> dict[str, str]:
        """The server's memlane and API versions (no key needed)."""
        result: dict[str, str] = await self._do(Call("GET", "/v1/version", read_only=True))
        return result

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
