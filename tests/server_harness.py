"""Run the real REST app under uvicorn on 127.0.0.1 in a background thread, for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from memlane import Memory, MemoryClient
from memlane.server import KeyStore, ServerSettings, create_app
from memlane.testing import HashEmbedder


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL and stops it afterwards."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during startup")
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def settings_for(home: Path, **overrides: Any) -> ServerSettings:
    """Test settings: a private home, and a rate limit no behavioural test reaches."""
    return ServerSettings(home=str(home), rate_limit=100_000.0).with_overrides(**overrides)


@contextmanager
def remote(memory: Memory, home: Path, **overrides: Any) -> Iterator[MemoryClient]:
    """``memory`` behind the REST server, reached through ``MemoryClient`` with an admin key."""
    settings = settings_for(home, **overrides)
    _, token = KeyStore(settings.keys_path).create("tests", admin=True)
    with serving(create_app(memory, settings)) as url, MemoryClient(url, api_key=token, retries=0) as client:
        yield client


class SharedServer:
    """One server for a whole test session; each test swaps its own ``Memory`` in."""

    def __init__(self, home: Path) -> None:
        self.settings = settings_for(home)
        _, self.token = KeyStore(self.settings.keys_path).create("tests", admin=True)
        self._idle = Memory(path=home / "idle.db", embedder=HashEmbedder())
        self.app = create_app(self._idle, self.settings)
        self._serving = serving(self.app)
        self.url = self._serving.__enter__()

    @contextmanager
    def facing(self, memory: Memory) -> Iterator[MemoryClient]:
        """A client to the server while it serves ``memory``."""
        self.app.state.memlane.use(memory)
        try:
            with MemoryClient(self.url, api_key=self.token, retries=0) as client:
                yield client
        finally:
            self.app.state.memlane.use(self._idle)

    def close(self) -> None:
        self._serving.__exit__(None, None, None)
        self._idle.close()
