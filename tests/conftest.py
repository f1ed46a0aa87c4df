"""Shared fixtures: a real SQLite store on tmp_path, driven with the shipped test fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from memlane import AsyncMemory, Memory
from memlane.testing import FrozenClock, HashEmbedder


@pytest.fixture
def clock() -> FrozenClock:
    """The clock every fixture memory reads; move it with ``clock.advance(days=1)``."""
    return FrozenClock()


@pytest.fixture
def memory(tmp_path: Path, clock: FrozenClock) -> Iterator[Memory]:
    """A ``Memory`` over a fresh file, with the hash embedder and a frozen clock."""
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder(), clock=clock) as mem:
        yield mem


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
