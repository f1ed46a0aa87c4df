"""ASGI middleware: the body-size limit and the audit trail of writes.

Both are plain ASGI (no ``BaseHTTPMiddleware``): they see every request, including the ones
routing or authentication rejects, and add no task switch per request.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from memlane.server.audit import AuditSink
from memlane.server.settings import ServerSettings

__all__ = ["WRITE_ROUTES", "AuditMiddleware", "BodyLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# (method, route template) -> the audited action.
WRITE_ROUTES = {
    ("POST", "/v1/memories"): "add",
    ("PUT", "/v1/memories/{memory_id}"): "update",
    ("DELETE", "/v1/memories/{memory_id}"): "delete",
    ("DELETE", "/v1/memories"): "delete_all",
    ("POST", "/v1/reset"): "reset",
    ("POST", "/v1/import"): "import",
    ("POST", "/v1/consolidate"): "consolidate",
    ("POST", "/v1/memories/{memory_id}/restore"): "restore",
    # mem0's self-hosted server paths (mem0_routes.py): the same operations, audited the same way
    ("POST", "/memories"): "add",
    ("PUT", "/memories/{memory_id}"): "update",
    ("DELETE", "/memories/{memory_id}"): "delete",
    ("DELETE", "/memories"): "delete_all",
    ("POST", "/reset"): "reset",
    # mem0's platform client (mem0_platform_routes.py)
    ("POST", "/v3/memories/add/"): "add",
    ("PUT", "/v1/memories/{memory_id}/"): "update",
    ("DELETE", "/v1/memories/{memory_id}/"): "delete",
    ("DELETE", "/v1/memories/"): "delete_all",
}


async def _reply(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps({"error": {"type": kind, "message": message, "status": status}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413 before the app sees them.

    A declared ``Content-Length`` over the limit is refused without reading; a chunked body is
    read up to the limit and replayed to the app.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_import_bytes if scope["path"] == "/v1/import" else self.settings.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = f"the request body is over the server's limit of {limit} bytes: send less per request"
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _reply(send, 400, "InvalidRequest", "Content-Length is not a number")
                return
            if size > limit:
                await _reply(send, 413, "RequestTooLarge", too_large)
                return
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # a disconnect: let the app see it
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _reply(send, 413, "RequestTooLarge", too_large)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class AuditMiddleware:
    """Writes one audit line per request to a write route: who, what, which ids, the status.

    Handlers add details (e.g. the ids an add wrote) under ``request.state.audit``; the memory
    text never enters the log.
    """

    def __init__(self, app: ASGIApp, log: AuditSink) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "DELETE"):
            await self.app(scope, receive, send)
            return
        status = 500
        request_id = uuid.uuid4().hex[:16]

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            action = WRITE_ROUTES.get((scope["method"], getattr(route, "path", "")))
            if action is not None:
                state = scope.get("state") or {}
                key = state.get("key")
                record = {
                    "request_id": request_id,
                    "key_id": getattr(key, "id", None),
                    "action": action,
                    "status": status,
                    **scope.get("path_params", {}),
                    **state.get("audit", {}),
                }
                self.log.write(record)
