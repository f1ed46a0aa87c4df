"""The one table that maps memlane's exception tree to HTTP statuses, and the JSON error body.

Every error response is ``{"error": {"type": <exception class>, "message": ..., "status": ...}}``
(plus ``retry_after`` for 429 and ``provider`` for provider failures). ``MemoryClient`` reads
``type`` back into the same exception class. Unexpected exceptions answer 500 with a request id
and no internals; the traceback goes to the server log only.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memlane import (
    AuthenticationError,
    ConfigError,
    EmbedderMismatch,
    EntityNotFound,
    InvalidRequest,
    LLMOutputError,
    LLMRequired,
    MemlaneError,
    MemoryConflict,
    MemoryNotFound,
    PermissionDenied,
    ProviderError,
    RateLimited,
    RequestTooLarge,
    ServiceUnavailable,
    StoreError,
)
from memlane.server.schemas import ErrorBody

__all__ = ["ERROR_RESPONSES", "STATUS", "error_response", "install_handlers", "status_for"]

log = logging.getLogger("memlane.server")

# Most specific first: the first class an error is an instance of decides its status.
STATUS: tuple[tuple[type[MemlaneError], int], ...] = (
    (MemoryConflict, 409),
    (RequestTooLarge, 413),
    (InvalidRequest, 400),
    (LLMRequired, 400),  # the request asked for extraction; the fix is infer=False or a server LLM
    (AuthenticationError, 401),
    (PermissionDenied, 403),
    (EntityNotFound, 404),  # a MemoryNotFound too; listed so the table names every 404
    (MemoryNotFound, 404),
    (EmbedderMismatch, 409),
    (RateLimited, 429),
    (ServiceUnavailable, 503),
    (StoreError, 503),
    (ProviderError, 503),  # the server's LLM or embedder failed: not the caller's fault, worth a retry
    (ConfigError, 503),
)

# The error statuses of the API routes, for /openapi.json: the table above, plus 422 (a body or
# query that does not match the API) and 500 (a bug: a request id, never internals).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": "an error (see the `error` object)"}
    for status in sorted({status for _, status in STATUS} | {422, 500})
}

_HTTP_TYPES = {
    400: "InvalidRequest",
    401: "AuthenticationError",
    403: "PermissionDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestTooLarge",
    429: "RateLimited",
}


def status_for(exc: MemlaneError) -> int:
    """The HTTP status of a memlane error."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error response in memlane's shape."""
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="memlane"'
    if status == 503:
        # Every 503 is worth a retry (a store or provider that went away, a timeout): say when.
        extra.setdefault("retry_after", 1)
    if "retry_after" in extra:
        headers["Retry-After"] = str(max(1, math.ceil(float(extra["retry_after"]))))
    body = {"error": {"type": kind, "message": message, "status": status, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def _memlane(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MemlaneError)
    status = status_for(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, RateLimited):
        extra["retry_after"] = exc.retry_after
    if isinstance(exc, ProviderError):
        extra["provider"] = exc.provider
    if isinstance(exc, LLMOutputError):
        # The model's unusable answer, for debugging; it derives from the caller's own messages.
        extra["raw"] = exc.raw[:4000]
    if status == 503 and not isinstance(exc, ServiceUnavailable):
        log.warning("%s: %s", type(exc).__name__, exc)
    if status == 500:
        return _unexpected(_, exc)
    return error_response(status, type(exc).__name__, str(exc), **extra)


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    message = "the request does not match the API: " + "; ".join(problems) + " (see /openapi.json)"
    return error_response(422, "InvalidRequest", message)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, "HTTPError")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = "no such endpoint; see /docs for the API"
    response = error_response(exc.status_code, kind, message)
    response.headers.update(exc.headers or {})  # e.g. the Allow header a 405 must carry
    return response


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    ref = uuid.uuid4().hex[:12]
    log.error("unexpected error (ref %s)", ref, exc_info=exc)
    response = error_response(500, "InternalError", f"internal server error (ref {ref}); the server log has details")
    # Starlette re-raises after this response and uvicorn then drops the connection; saying so
    # keeps a client from sending its next request down a socket that is being closed.
    response.headers["connection"] = "close"
    return response


def install_handlers(app: Any) -> None:
    """Register the handlers on a FastAPI app."""
    app.add_exception_handler(MemlaneError, _memlane)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
