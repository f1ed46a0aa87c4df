"""A scripted HTTP server on 127.0.0.1 for wire-format tests of the network providers.

The provider under test talks to it through its real SDK. The server records every request
(method, path, headers, JSON body, arrival time) and answers from a queue of scripted replies;
a reply may be a :class:`Reply` or a function of the recorded request (for echo-style answers,
e.g. one embedding per input). When the queue is empty it answers 599 so a test fails loudly.

Use it as a context manager (``with WireServer() as server: ...``), typically in a fixture.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Recorded", "Reply", "WireServer", "closed_port"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``body`` is sent as JSON (``raw`` bytes win if given) after ``delay`` seconds."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it; ``headers`` keys are lower-case, ``at`` is ``time.monotonic()``."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


Script = Reply | Callable[[Recorded], Reply]


class WireServer:
    """A threaded HTTP/1.1 server on a free port of 127.0.0.1, answering from a script."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Script] = deque()
        self._fallback: Script | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="wire-server", daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def reply(self, *replies: Script) -> None:
        """Queue answers, used in order by the next requests."""
        with self._lock:
            self._script.extend(replies)

    def json(self, body: Any, status: int = 200, headers: Mapping[str, str] | None = None, delay: float = 0.0) -> None:
        """Queue one JSON answer."""
        self.reply(Reply(status=status, body=body, headers=dict(headers or {}), delay=delay))

    def always(self, script: Script) -> None:
        """Answer with ``script`` whenever the queue is empty (instead of 599): a standing route, e.g. a fake API."""
        with self._lock:
            self._fallback = script

    def start(self) -> WireServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers still pending are cut short."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WireServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _answer(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self._script.popleft() if self._script else self._fallback
        if script is None:
            return Reply(status=599, body={"error": {"message": "wire server: no scripted reply left"}})
        return script(request) if callable(script) else script


def _handler_for(server: WireServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as separate small writes: without TCP_NODELAY, Nagle's algorithm
        # holds the second one back for the client's delayed ACK (~40 ms per reply on keep-alive).
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(data) if data else None
            except ValueError:
                body = data.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server._answer(Recorded(self.command, self.path, headers, body, time.monotonic()))
            if reply.delay and server._stopping.wait(reply.delay):
                return
            payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
