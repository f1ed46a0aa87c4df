"""Streamable HTTP: the MCP app behind the REST server's API-key auth, rate limit and error shape.

Every HTTP request is checked before the MCP SDK sees it:

1. its API key (``Authorization: Bearer mlk_...`` or ``X-API-Key``) is authenticated against the
   same key store the REST server uses (``keys.db``, or the PostgreSQL store's tables; 401
   otherwise) and spends one token of its rate (429);
2. its scope comes from the server's grant narrowed by the connection's ``X-Memlane-User-Id`` /
   ``-Agent-Id`` / ``-Run-Id`` headers (or ``?user_id=`` ... query parameters): 400 without any,
   403 when it contradicts the server's grant or lies outside a tenant key's namespace;
3. the resulting :class:`Grant` is put on the request, where every tool call reads it.

The MCP app runs stateless (no session to hijack or to pin to one server process) and answers
in JSON; a connection's grant is worked out afresh on every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from memlane import InvalidRequest, MemlaneError, Memory, MemoryClient, RateLimited
from memlane.mcp._grant import SCOPE_FIELDS, Grant
from memlane.mcp._tools import GRANT_STATE_KEY, KEY_STATE_KEY, build_server
from memlane.server.audit import AuditSink
from memlane.server.auth import ANONYMOUS, Guard, RateLimiter, admit
from memlane.server.errors import error_response, status_for
from memlane.server.keys import KeyStore
from memlane.server.settings import ServerSettings

__all__ = ["MCP_PATH", "http_app"]

MCP_PATH = "/mcp"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _connection_ids(scope: Scope) -> dict[str, str | None]:
    """The scope ids a request names, from headers or the query string (both must agree)."""
    headers = {k.decode("latin-1").lower(): v.decode("utf-8", "replace") for k, v in scope.get("headers", [])}
    query = parse_qs(scope.get("query_string", b"").decode("utf-8", "replace"), keep_blank_values=True)
    ids: dict[str, str | None] = {}
    for name in SCOPE_FIELDS:
        header = headers.get("x-memlane-" + name.replace("_id", "-id"))
        given = query.get(name, [])
        if len(given) > 1 or (given and header is not None and given[0] != header):
            raise InvalidRequest(f"{name} is given twice with different values; give it once")
        ids[name] = header if header is not None else (given[0] if given else None)
    return ids


class _Gate:
    """The ASGI wrapper that authenticates, rate-limits and scopes each request."""

    def __init__(self, app: ASGIApp, keys: KeyStore | None, grant: Grant, settings: ServerSettings) -> None:
        self.app = app
        self.keys = keys
        self.grant = grant
        self.settings = settings
        self.limiter = RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the SDK's session manager starts and stops here
            await self.app(scope, receive, send)
            return
        try:
            key_id, granted = self._admit(scope)
        except MemlaneError as exc:
            extra = {"retry_after": exc.retry_after} if isinstance(exc, RateLimited) else {}
            response = error_response(status_for(exc), type(exc).__name__, str(exc), **extra)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {}).update({GRANT_STATE_KEY: granted, KEY_STATE_KEY: key_id})
        await self.app(scope, receive, send)

    def _admit(self, scope: Scope) -> tuple[str, Grant]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.keys is not None:
            key = admit(headers, self.keys, self.settings)
        else:
            key = ANONYMOUS
            self.limiter.take(key.id, self.settings.rate_limit, self.settings.burst_for(self.settings.rate_limit))
        narrowed = self.grant.narrow(_connection_ids(scope))
        where = "the X-Memlane-User-Id / X-Memlane-Agent-Id / X-Memlane-Run-Id headers, or --user-id on the server"
        granted = Grant.of(**narrowed.scope().as_dict(), where=where)
        Guard(key).check_scope(
            user_id=granted.user_id, agent_id=granted.agent_id, run_id=granted.run_id, operation="MCP connection"
        )
        return key.id, granted


def http_app(
    backend: Memory | MemoryClient,
    *,
    grant: Grant | None = None,
    keys: KeyStore | None,
    settings: ServerSettings | None = None,
    read_only: bool = False,
    audit: AuditSink | None = None,
    host: str = "127.0.0.1",
) -> ASGIApp:
    """The MCP streamable-HTTP app at ``/mcp``, guarded like the REST API.

    Args:
        backend: the ``Memory`` or ``MemoryClient`` the tools use.
        grant: ids fixed for every connection (connections may narrow it; ``None``: connections
            must bring their own through headers).
        keys: the API key store (also the rate limits); ``None`` serves without keys (the caller
            checks loopback).
        settings: the rate limit (the REST server's defaults otherwise).
        read_only: offer only the read tools.
        audit: where to record writes (``memlane mcp`` uses the REST server's ``<home>/audit.log``).
        host: the interface served, for the SDK's DNS-rebinding protection on loopback.
    """
    server = build_server(backend, grant=None, read_only=read_only, audit=audit)
    inner = server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=host
    )
    return _Gate(inner, keys, grant or Grant(), settings or ServerSettings())
