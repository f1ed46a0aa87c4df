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
reads (get, get_all, search, history, export), since a write may already have happened; 429 is
retried for every method after ``Retry-After`` (the server refused it before doing anything).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from memlane import errors
from memlane.core.scope import validate_scope_id
from memlane.types import AddResult, HistoryEvent, MemoryItem, SearchResult, Usage

__all__ = ["AsyncMemoryClient", "MemoryClient"]

DEFAULT_URL = "http://127.0.0.1:8420"
_RETRY_STATUS = (502, 503, 504)
_MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class _Call:
    """One API call: what to send, and whether resending it is safe."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    content: bytes | None = None
    read_only: bool = False


def _jsonable(value: Any, what: str) -> Any:
    """Arguments as JSON: datetimes as ISO 8601 (naive = UTC, as ``Memory`` reads them), timedeltas as seconds."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {k: _jsonable(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, what) for v in value]
    return value


_TIMES = ("timestamp", "expires_at", "ttl", "as_of")


def _string_keys(value: object) -> bool:
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _string_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_string_keys(v) for v in value)
    return True


def _body(what: str, **values: Any) -> dict[str, Any]:
    """The non-None arguments, JSON-ready; refuses what JSON cannot carry exactly (as ``Memory`` would)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == "filters":
            out[name] = json.loads(_filters(value) or "null")
            continue
        if name in _TIMES:
            value = _jsonable(value, name)
        if not _string_keys(value):
            raise errors.InvalidRequest(f"{name} keys must be strings (also in nested objects)")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidRequest(f"{what}: {name} must be JSON-serialisable ({exc})") from exc
        out[name] = value
    return out


def _id(memory_id: object) -> str:
    """A memory id for a URL path, checked the way ``Memory`` checks it."""
    if not isinstance(memory_id, str):
        raise errors.InvalidRequest(f"memory_id must be a string, got {type(memory_id).__name__}")
    if not memory_id.strip():
        raise errors.InvalidRequest("memory_id is empty; pass some text")
    return quote(memory_id, safe="")


def _filters(filters: object) -> str | None:
    if filters is None:
        return None
    if not isinstance(filters, Mapping):
        raise errors.InvalidFilter(
            f"filters must be a dict such as {{'category': 'food'}}, got {type(filters).__name__}"
        )
    try:
        return json.dumps(_jsonable(filters, "filters"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidFilter(f"filters must be JSON: strings, finite numbers, booleans, null ({exc})") from exc


def _flag(value: object, name: str) -> str:
    if not isinstance(value, bool):
        raise errors.InvalidRequest(f"{name} must be True or False, got {value!r}")
    return "true" if value else "false"


# -- the calls, written once --------------------------------------------------------------------
def add_call(messages: Any, **kwargs: Any) -> _Call:
    """See :meth:`memlane.Memory.add`."""
    return _Call("POST", "/v1/memories", body=_body("add", messages=messages, **_known("add", kwargs, _ADD)))


def search_call(query: Any, **kwargs: Any) -> _Call:
    """See :meth:`memlane.Memory.search`."""
    return _Call(
        "POST", "/v1/memories/search", body=_body("search", query=query, **_known("search", kwargs, _SEARCH)),
        read_only=True,
    )  # fmt: skip


def get_call(memory_id: str, *, include_sources: bool = False) -> _Call:
    """See :meth:`memlane.Memory.get`."""
    params = {"include_sources": _flag(include_sources, "include_sources")}
    return _Call("GET", f"/v1/memories/{_id(memory_id)}", params=params, read_only=True)


def get_all_call(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    filters: Mapping[str, Any] | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> _Call:
    """See :meth:`memlane.Memory.get_all`."""
    params = _body("get_all", user_id=user_id, agent_id=agent_id, run_id=run_id, limit=limit, cursor=cursor)
    params["filters"] = _filters(filters)
    return _Call("GET", "/v1/memories", params=_query(params), read_only=True)


def update_call(memory_id: str, data: str, *, metadata: Mapping[str, Any] | None = None) -> _Call:
    """See :meth:`memlane.Memory.update`."""
    return _Call("PUT", f"/v1/memories/{_id(memory_id)}", body=_body("update", data=data, metadata=metadata))


def delete_call(memory_id: str, *, purge: bool = False) -> _Call:
    """See :meth:`memlane.Memory.delete`."""
    return _Call("DELETE", f"/v1/memories/{_id(memory_id)}", params={"purge": _flag(purge, "purge")})


def delete_all_call(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    filters: Mapping[str, Any] | None = None,
    purge: bool = False,
) -> _Call:
    """See :meth:`memlane.Memory.delete_all`."""
    params = _body("delete_all", user_id=user_id, agent_id=agent_id, run_id=run_id, purge=_flag(purge, "purge"))
    params["filters"] = _filters(filters)
    return _Call("DELETE", "/v1/memories", params=_query(params))


def history_call(memory_id: str) -> _Call:
    """See :meth:`memlane.Memory.history`."""
    return _Call("GET", f"/v1/memories/{_id(memory_id)}/history", read_only=True)


def export_call(*, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None) -> _Call:
    """See :meth:`memlane.Memory.export_records`."""
    params = _body("export_records", user_id=user_id, agent_id=agent_id, run_id=run_id)
    return _Call("GET", "/v1/export", params=_query(params), read_only=True)


def import_call(records: Iterable[Mapping[str, Any]], *, on_conflict: str = "error") -> tuple[_Call, int]:
    """See :meth:`memlane.Memory.import_records`; also returns how many records it carries."""
    lines = [json.dumps(_jsonable(r, "records"), ensure_ascii=False, allow_nan=False) for r in records]
    content = ("\n".join(lines) + "\n").encode()
    return _Call("POST", "/v1/import", params={"on_conflict": on_conflict}, content=content), len(lines)


_ADD = (
    "user_id", "agent_id", "run_id", "metadata", "filters", "infer", "timestamp", "expires_at", "ttl",
    "instructions", "prompt", "includes", "excludes", "memory_type",
)  # fmt: skip
_SEARCH = (
    "user_id", "agent_id", "run_id", "filters", "limit", "threshold", "explain", "recency_weight",
    "half_life_days", "as_of",
)  # fmt: skip


def _known(method: str, kwargs: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword argument(s) {unknown}")
    return dict(kwargs)


def _query(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters: scope ids checked here, since a URL would turn ``5`` into ``"5"``."""
    for name in ("user_id", "agent_id", "run_id"):
        validate_scope_id(name, params.get(name))
    for name in ("limit",):
        value = params.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise errors.InvalidRequest(f"{name} must be an integer, got {value!r}")
    return {k: v for k, v in params.items() if v is not None}


# -- responses and errors -----------------------------------------------------------------------
def _error(response: httpx.Response) -> errors.MemlaneError:
    """The memlane exception a server error response stands for."""
    try:
        info = response.json()["error"]
        kind, message = str(info["type"]), str(info["message"])
    except (ValueError, KeyError, TypeError):
        info, kind, message = {}, "", f"HTTP {response.status_code} from the memlane server: {response.text[:200]}"
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.MemlaneError)):
        cls = _BY_STATUS.get(response.status_code, errors.MemlaneError)
    if issubclass(cls, errors.RateLimited):
        return cls(message, retry_after=_retry_after(response) or 1.0)
    if issubclass(cls, errors.LLMOutputError):
        return cls(message, provider=str(info.get("provider", "")), raw=str(info.get("raw", "")))
    if issubclass(cls, errors.ProviderError):
        return cls(message, provider=str(info.get("provider", "")), status=None)
    return cls(message)


_BY_STATUS: dict[int, type[errors.MemlaneError]] = {
    400: errors.InvalidRequest,
    401: errors.AuthenticationError,
    403: errors.PermissionDenied,
    404: errors.MemoryNotFound,
    409: errors.MemoryConflict,
    413: errors.RequestTooLarge,
    422: errors.InvalidRequest,
    429: errors.RateLimited,
    502: errors.ServiceUnavailable,
    503: errors.ServiceUnavailable,
    504: errors.RequestTimeout,
}


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


@dataclass
class _Policy:
    """When to resend: shared by both clients."""

    retries: int
    backoff: float = 0.25

    def after_response(self, call: _Call, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before resending, or None to give the response back."""
        if attempt >= self.retries:
            return None
        if response.status_code == 429:
            wait = _retry_after(response) or self.backoff
            return wait if wait <= _MAX_RETRY_AFTER else None
        if response.status_code in _RETRY_STATUS and call.read_only:
            return self._delay(attempt)
        return None

    def after_error(self, call: _Call, exc: httpx.TransportError, attempt: int) -> float | None:
        """Seconds to wait before resending after a transport error, or None to raise it."""
        if attempt >= self.retries:
            return None
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return self._delay(attempt) if never_sent or call.read_only else None

    def _delay(self, attempt: int) -> float:
        return float(self.backoff * (2**attempt) * (0.5 + random.random()))


def _transport_error(exc: httpx.TransportError, url: str) -> errors.MemlaneError:
    if isinstance(exc, httpx.TimeoutException):
        return errors.RequestTimeout(
            f"the memlane server at {url} did not answer in time ({type(exc).__name__}); "
            "a write may still have completed: check before retrying, or raise timeout="
        )
    return errors.ServiceUnavailable(f"cannot reach the memlane server at {url}: {exc or type(exc).__name__}")


def _result(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    raise _error(response)


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
        self._policy = _Policy(retries)
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

    def _send(self, call: _Call, *, stream: bool = False) -> httpx.Response:
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
                    raise _transport_error(exc, self.url) from exc
            else:
                wait = self._policy.after_response(call, response, attempt)
                if wait is None:
                    return response
                response.close()
            time.sleep(wait)
            attempt += 1

    def _do(self, call: _Call) -> Any:
        return _result(self._send(call))

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

    def update(self, memory_id: str, data: str, **kwargs: Any) -> MemoryItem:
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

    def reset(self) -> None:
        """See :meth:`memlane.Memory.reset` (admin keys only)."""
        self._do(_Call("POST", "/v1/reset"))

    def export_records(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """See :meth:`memlane.Memory.export_records`; streamed from the server."""
        response = self._send(export_call(**kwargs), stream=True)
        try:
            if not response.is_success:
                response.read()
                raise _error(response)
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
        result: dict[str, str] = self._do(_Call("GET", "/v1/version", read_only=True))
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

    async def _send(self, call: _Call, *, stream: bool = False) -> httpx.Response:
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
                    raise _transport_error(exc, self.url) from exc
            else:
                wait = self._policy.after_response(call, response, attempt)
                if wait is None:
                    return response
                await response.aclose()
            await asyncio.sleep(wait)
            attempt += 1

    async def _do(self, call: _Call) -> Any:
        response = await self._send(call)
        return _result(response)

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

    async def update(self, memory_id: str, data: str, **kwargs: Any) -> MemoryItem:
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

    async def reset(self) -> None:
        """See :meth:`memlane.Memory.reset` (admin keys only)."""
        await self._do(_Call("POST", "/v1/reset"))

    async def export_records(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """See :meth:`memlane.Memory.export_records`; streamed from the server."""
        response = await self._send(export_call(**kwargs), stream=True)
        try:
            if not response.is_success:
                await response.aread()
                raise _error(response)
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
        result: dict[str, str] = await self._do(_Call("GET", "/v1/version", read_only=True))
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
