"""The HTTP side of ``MemoryClient``, written once for both clients.

Each ``Memory`` method becomes a :class:`Call` (what to send, and whether resending is safe);
:class:`Policy` decides retries; :func:`error_for` turns a server error body back into the memlane
exception it names. ``client.py`` only sends calls, synchronously or awaited.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import httpx

from memlane import errors
from memlane.core.compat import refuse_unknown
from memlane.core.inputs import check_text, has_string_keys, parse_time
from memlane.core.scope import resolve_scope, validate_scope_id

__all__ = [
    "DEFAULT_URL",
    "Call",
    "Policy",
    "add_call",
    "consolidate_call",
    "delete_all_call",
    "delete_call",
    "entities_call",
    "entity_call",
    "error_for",
    "export_call",
    "get_all_call",
    "get_call",
    "history_call",
    "import_call",
    "neighbours_call",
    "path_call",
    "profile_call",
    "relations_call",
    "restore_call",
    "result_of",
    "search_call",
    "transport_error",
    "update_call",
]

DEFAULT_URL = "http://127.0.0.1:8420"
_RETRY_STATUS = (502, 503, 504)
_MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Call:
    """One API call: what to send, and whether resending it is safe."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    content: bytes | None = None
    read_only: bool = False


def _jsonable(value: Any) -> Any:
    """Arguments as JSON: datetimes as ISO 8601 (naive = UTC, as ``Memory`` reads them), timedeltas as seconds."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


_TIMES = ("timestamp", "expires_at", "ttl", "as_of", "reference_date", "expiration_date")
_KEEP: Final[Any] = object()  # update_call(): an expiry argument not given (None clears the expiry)


def _day(value: Any) -> Any:
    """mem0's ``expiration_date`` given as a datetime: its date (in UTC when aware), as ``Memory`` reads it."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is None else value.astimezone(UTC)).date()
    return value


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
            value = _jsonable(_day(value) if name == "expiration_date" else value)
        if not has_string_keys(value):
            raise errors.InvalidRequest(f"{name} keys must be strings (also in nested objects)")
        try:
            json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: text that was bytes, not Unicode
            raise errors.InvalidRequest(
                f"{what}: {name} is not valid Unicode (it holds a lone surrogate, {exc.object[exc.start]!r}: bytes "
                "that were not UTF-8?); decode the data as text first"
            ) from exc
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
        return json.dumps(_jsonable(filters), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidFilter(f"filters must be JSON: strings, finite numbers, booleans, null ({exc})") from exc


def _flag(value: object, name: str) -> str:
    if not isinstance(value, bool):
        raise errors.InvalidRequest(f"{name} must be True or False, got {value!r}")
    return "true" if value else "false"


# -- the calls, written once --------------------------------------------------------------------
def add_call(messages: Any, **kwargs: Any) -> Call:
    """See :meth:`memlane.Memory.add`."""
    return Call("POST", "/v1/memories", body=_body("add", messages=messages, **_known("add", kwargs, _ADD)))


def _includes(args: dict[str, Any], as_text: bool) -> dict[str, Any]:
    """``include_merged`` / ``include_archived`` checked as ``Memory`` checks them (query: as text)."""
    for name in ("include_merged", "include_archived"):
        if name in args:
            flag = _flag(args[name], name)
            if as_text:
                args[name] = flag
    return args


def search_call(query: Any, **kwargs: Any) -> Call:
    """See :meth:`memlane.Memory.search`."""
    args = _includes(_known("search", kwargs, _SEARCH), as_text=False)
    return Call("POST", "/v1/memories/search", body=_body("search", query=query, **args), read_only=True)


def get_call(memory_id: str, *, include_sources: bool = False) -> Call:
    """See :meth:`memlane.Memory.get`."""
    params = {"include_sources": _flag(include_sources, "include_sources")}
    return Call("GET", f"/v1/memories/{_id(memory_id)}", params=params, read_only=True)


def get_all_call(**kwargs: Any) -> Call:
    """See :meth:`memlane.Memory.get_all`."""
    args = _includes(_known("get_all", kwargs, _GET_ALL), as_text=True)
    filters = args.pop("filters", None)
    if "show_expired" in args:
        args["show_expired"] = _flag(args["show_expired"], "show_expired")
    params = _body("get_all", **args)
    params["filters"] = _filters(filters)
    return Call("GET", "/v1/memories", params=_query(params), read_only=True)


def update_call(
    memory_id: str,
    data: str | None = None,
    *,
    text: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    expires_at: Any = _KEEP,
    expiration_date: Any = _KEEP,
) -> Call:
    """See :meth:`memlane.Memory.update`: an expiry argument given as None is sent as null (clear it)."""
    body = _body("update", data=data, text=text, metadata=metadata)
    for name, value in (("expires_at", expires_at), ("expiration_date", expiration_date)):
        if value is not _KEEP:
            body[name] = None if value is None else _body("update", **{name: value})[name]
    return Call("PUT", f"/v1/memories/{_id(memory_id)}", body=body)


def delete_call(memory_id: str, *, purge: bool = False, **unsupported: Any) -> Call:
    """See :meth:`memlane.Memory.delete`."""
    refuse_unknown("delete", unsupported)
    return Call("DELETE", f"/v1/memories/{_id(memory_id)}", params={"purge": _flag(purge, "purge")})


def delete_all_call(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    filters: Mapping[str, Any] | None = None,
    purge: bool = False,
    **unsupported: Any,
) -> Call:
    """See :meth:`memlane.Memory.delete_all`."""
    refuse_unknown("delete_all", unsupported)
    params = _body("delete_all", user_id=user_id, agent_id=agent_id, run_id=run_id, purge=_flag(purge, "purge"))
    params["filters"] = _filters(filters)
    return Call("DELETE", "/v1/memories", params=_query(params))


def history_call(memory_id: str) -> Call:
    """See :meth:`memlane.Memory.history`."""
    return Call("GET", f"/v1/memories/{_id(memory_id)}/history", read_only=True)


def export_call(*, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None) -> Call:
    """See :meth:`memlane.Memory.export_records`."""
    params = _body("export_records", user_id=user_id, agent_id=agent_id, run_id=run_id)
    return Call("GET", "/v1/export", params=_query(params), read_only=True)


def import_call(records: Iterable[Mapping[str, Any]], *, on_conflict: str = "error") -> tuple[Call, int]:
    """See :meth:`memlane.Memory.import_records`; also returns how many records it carries."""
    lines = [json.dumps(_jsonable(r), ensure_ascii=False, allow_nan=False) for r in records]
    content = ("\n".join(lines) + "\n").encode()
    return Call("POST", "/v1/import", params={"on_conflict": on_conflict}, content=content), len(lines)


# -- consolidation ------------------------------------------------------------------------------
def consolidate_call(
    *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None, dry_run: bool = False
) -> Call:
    """See :meth:`memlane.Memory.consolidate` (no ids: the whole store, admin keys only)."""
    _flag(dry_run, "dry_run")
    for name, value in (("user_id", user_id), ("agent_id", agent_id), ("run_id", run_id)):
        validate_scope_id(name, value)
    body = _body("consolidate", user_id=user_id, agent_id=agent_id, run_id=run_id) | {"dry_run": dry_run}
    return Call("POST", "/v1/consolidate", body=body)


def profile_call(*, user_id: str, refresh: bool = False) -> Call:
    """See :meth:`memlane.Memory.profile`."""
    params = {"user_id": check_text(user_id, "user_id"), "refresh": _flag(refresh, "refresh")}
    return Call("GET", "/v1/profile", params=params, read_only=True)


def restore_call(memory_id: str) -> Call:
    """See :meth:`memlane.Memory.restore`."""
    return Call("POST", f"/v1/memories/{_id(memory_id)}/restore")


# -- the graph: the checks ``Memory`` makes before it reads, made here too, since a URL would turn
# 5 into "5" and an empty name into another path; the server checks the rest with Memory's words.
_MAX_DEPTH = 6  # memlane._graph_api.MAX_DEPTH


def _entity(ref: object, what: str = "entity") -> str:
    return quote(check_text(ref, what), safe="")


def _graph_query(operation: str, ids: Mapping[str, str | None], as_of: Any, **more: Any) -> dict[str, Any]:
    """The query of a graph read: the scope, ``as_of`` as ISO 8601 (checked as ``Memory`` checks it)."""
    at = None if as_of is None else parse_time(as_of, "as_of").isoformat()
    return _query(_body(operation, **ids, as_of=at, **more))


def _scope(operation: str, user_id: str | None, agent_id: str | None, run_id: str | None) -> dict[str, str | None]:
    """The scope ids, after ``Memory``'s first check: a graph read needs a scope (ScopeRequired)."""
    resolve_scope(user_id=user_id, agent_id=agent_id, run_id=run_id, filters=None, required=True, operation=operation)
    return {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}


def entities_call(*, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None) -> Call:
    """See :meth:`memlane.Memory.entities`."""
    params = _graph_query("entities", _scope("entities", user_id, agent_id, run_id), None)
    return Call("GET", "/v1/entities", params=params, read_only=True)


def entity_call(entity_id: str) -> Call:
    """See :meth:`memlane.Memory.entity`."""
    if isinstance(entity_id, str) and "/" in entity_id:
        # No entity id holds a slash, and the server sees the path decoded: "a%2Frelations" would
        # reach the relations route. Answered here, with Memory's message for an unknown id.
        raise errors.EntityNotFound(f"no entity with id {entity_id!r}; entities(user_id=...) lists a scope's entities")
    return Call("GET", f"/v1/entities/{_entity(entity_id, 'entity_id')}", read_only=True)


def relations_call(
    entity: str,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    predicate: str | None = None,
    direction: str = "both",
    as_of: Any = None,
) -> Call:
    """See :meth:`memlane.Memory.relations`."""
    ids = _scope("relations", user_id, agent_id, run_id)
    if direction not in ("out", "in", "both"):
        raise errors.InvalidRequest(f"direction must be 'out', 'in' or 'both', got {direction!r}")
    if predicate is not None:
        check_text(predicate, "predicate")
    params = _graph_query("relations", ids, as_of, predicate=predicate, direction=direction)
    return Call("GET", f"/v1/entities/{_entity(entity)}/relations", params=params, read_only=True)


def neighbours_call(
    entity: str,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    depth: int = 1,
    as_of: Any = None,
) -> Call:
    """See :meth:`memlane.Memory.neighbours`."""
    ids = _scope("neighbours", user_id, agent_id, run_id)
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= _MAX_DEPTH:
        raise errors.InvalidRequest(f"depth must be a whole number from 1 to {_MAX_DEPTH}, got {depth!r}")
    params = _graph_query("neighbours", ids, as_of, depth=depth)
    return Call("GET", f"/v1/entities/{_entity(entity)}/neighbours", params=params, read_only=True)


def path_call(
    a: str,
    b: str,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    as_of: Any = None,
) -> Call:
    """See :meth:`memlane.Memory.path`."""
    ids = _scope("path", user_id, agent_id, run_id)
    params = _graph_query("path", ids, as_of)
    params |= {"a": check_text(a, "entity"), "b": check_text(b, "entity")}
    return Call("GET", "/v1/graph/path", params=params, read_only=True)


_ADD = (
    "user_id", "agent_id", "run_id", "metadata", "filters", "infer", "timestamp", "expires_at", "ttl",
    "instructions", "prompt", "includes", "excludes", "memory_type", "expiration_date", "custom_instructions",
)  # fmt: skip
_SEARCH = (
    "user_id", "agent_id", "run_id", "filters", "limit", "threshold", "explain", "recency_weight",
    "half_life_days", "as_of", "top_k", "show_expired", "reference_date", "rerank", "graph", "include_merged",
    "include_archived",
)  # fmt: skip
_GET_ALL = (
    "user_id", "agent_id", "run_id", "filters", "limit", "cursor", "top_k", "show_expired", "include_merged",
    "include_archived",
)  # fmt: skip


def _known(method: str, kwargs: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """The arguments, after refusing others as ``Memory`` does (mem0's unmapped ones with its message)."""
    refuse_unknown(method, {name: value for name, value in kwargs.items() if name not in allowed})
    return dict(kwargs)


def _query(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters: scope ids checked here, since a URL would turn ``5`` into ``"5"``."""
    for name in ("user_id", "agent_id", "run_id"):
        validate_scope_id(name, params.get(name))
    for name in ("limit", "top_k"):
        value = params.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise errors.InvalidRequest(f"{name} must be an integer, got {value!r}")
    return {k: v for k, v in params.items() if v is not None}


# -- responses and errors -----------------------------------------------------------------------
def error_for(response: httpx.Response) -> errors.MemlaneError:
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
class Policy:
    """When to resend: shared by both clients."""

    retries: int
    backoff: float = 0.25

    def after_response(self, call: Call, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before resending, or None to give the response back."""
        if attempt >= self.retries:
            return None
        if response.status_code == 429:
            wait = _retry_after(response) or self.backoff
            return wait if wait <= _MAX_RETRY_AFTER else None
        if response.status_code in _RETRY_STATUS and call.read_only:
            return self._delay(attempt)
        return None

    def after_error(self, call: Call, exc: httpx.TransportError, attempt: int) -> float | None:
        """Seconds to wait before resending after a transport error, or None to raise it."""
        if attempt >= self.retries:
            return None
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return self._delay(attempt) if never_sent or call.read_only else None

    def _delay(self, attempt: int) -> float:
        return float(self.backoff * (2**attempt) * (0.5 + random.random()))


def transport_error(exc: httpx.TransportError, url: str) -> errors.MemlaneError:
    if isinstance(exc, httpx.TimeoutException):
        return errors.RequestTimeout(
            f"the memlane server at {url} did not answer in time ({type(exc).__name__}); "
            "a write may still have completed: check before retrying, or raise timeout="
        )
    return errors.ServiceUnavailable(f"cannot reach the memlane server at {url}: {exc or type(exc).__name__}")


def result_of(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    raise error_for(response)
