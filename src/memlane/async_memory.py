"""``AsyncMemory``: the same engine as ``Memory``, awaited.

Every method runs the one synchronous pipeline of :class:`Memory` in a worker thread, so there is
no second copy of the logic to drift. The store and embedder in use are synchronous (SQLite and
onnxruntime release the GIL while they work), which is exactly the case STYLE.md prescribes:
sync-only providers run in a thread under the async driver.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from memlane.config import MemoryConfig
from memlane.memory import Memory
from memlane.reembed import ReembedResult
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

__all__ = ["AsyncMemory"]

_CHUNK = 500


async def _in_chunks(records: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    # One thread hop per chunk of records, not per record.
    while chunk := await asyncio.to_thread(lambda: list(itertools.islice(records, _CHUNK))):
        for record in chunk:
            yield record


class AsyncMemory:
    """``Memory`` with ``async def`` methods; same arguments, results and errors.

    Args: as :class:`Memory` (``path``, ``embedder``, ``store``, ``config``, ``clock``), or
    ``memory=`` an existing ``Memory`` to share.
    """

    def __init__(self, path: str | Path | None = None, *, memory: Memory | None = None, **kwargs: Any) -> None:
        self._sync = memory if memory is not None else Memory(path, **kwargs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | MemoryConfig, **overrides: Any) -> AsyncMemory:
        """Build from a config dict, like ``Memory.from_config``."""
        return cls(memory=Memory.from_config(config, **overrides))

    @property
    def sync(self) -> Memory:
        """The underlying synchronous engine."""
        return self._sync

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def add(self, messages: Any, **kwargs: Any) -> AddResult:
        """See :meth:`Memory.add`."""
        return await asyncio.to_thread(self._sync.add, messages, **kwargs)

    async def search(self, query: str, **kwargs: Any) -> SearchResult:
        """See :meth:`Memory.search`."""
        return await asyncio.to_thread(self._sync.search, query, **kwargs)

    async def get(self, memory_id: str, *, include_sources: bool = False) -> MemoryItem:
        """See :meth:`Memory.get`."""
        return await asyncio.to_thread(self._sync.get, memory_id, include_sources=include_sources)

    @property
    def usage(self) -> Usage:
        """See :attr:`Memory.usage`."""
        return self._sync.usage

    async def get_all(self, **kwargs: Any) -> SearchResult:
        """See :meth:`Memory.get_all`."""
        return await asyncio.to_thread(self._sync.get_all, **kwargs)

    async def update(self, memory_id: str, data: str | None = None, **kwargs: Any) -> MemoryItem:
        """See :meth:`Memory.update`."""
        return await asyncio.to_thread(self._sync.update, memory_id, data, **kwargs)

    async def delete(self, memory_id: str, **kwargs: Any) -> dict[str, str]:
        """See :meth:`Memory.delete`."""
        return await asyncio.to_thread(self._sync.delete, memory_id, **kwargs)

    async def delete_all(self, **kwargs: Any) -> dict[str, Any]:
        """See :meth:`Memory.delete_all`."""
        return await asyncio.to_thread(self._sync.delete_all, **kwargs)

    async def history(self, memory_id: str) -> list[HistoryEvent]:
        """See :meth:`Memory.history`."""
        return await asyncio.to_thread(self._sync.history, memory_id)

    async def entities(self, **kwargs: Any) -> EntityList:
        """See :meth:`Memory.entities`."""
        return await asyncio.to_thread(self._sync.entities, **kwargs)

    async def entity(self, entity_id: str) -> EntityItem:
        """See :meth:`Memory.entity`."""
        return await asyncio.to_thread(self._sync.entity, entity_id)

    async def relations(self, entity: str, **kwargs: Any) -> RelationList:
        """See :meth:`Memory.relations`."""
        return await asyncio.to_thread(self._sync.relations, entity, **kwargs)

    async def neighbours(self, entity: str, **kwargs: Any) -> NeighbourList:
        """See :meth:`Memory.neighbours`."""
        return await asyncio.to_thread(self._sync.neighbours, entity, **kwargs)

    async def path(self, a: str, b: str, **kwargs: Any) -> PathResult:
        """See :meth:`Memory.path`."""
        return await asyncio.to_thread(self._sync.path, a, b, **kwargs)

    def export_records(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """See :meth:`Memory.export_records`; iterate with ``async for`` (pages are read in a thread)."""
        return _in_chunks(self._sync.export_records(user_id=user_id, agent_id=agent_id, run_id=run_id))

    async def import_records(
        self,
        records: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        on_conflict: str = "error",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """See :meth:`Memory.import_records`; also takes an async iterable (``progress`` runs in a worker thread)."""
        if isinstance(records, AsyncIterable):
            records = [record async for record in records]
        return await asyncio.to_thread(self._sync.import_records, records, on_conflict=on_conflict, progress=progress)

    async def reembed(
        self,
        embedder: Any,
        *,
        batch_size: int = 256,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReembedResult:
        """See :meth:`Memory.reembed` (it runs in a worker thread, and so does ``progress``)."""
        return await asyncio.to_thread(self._sync.reembed, embedder, batch_size=batch_size, progress=progress)

    async def reset(self) -> None:
        """See :meth:`Memory.reset`."""
        await asyncio.to_thread(self._sync.reset)

    async def consolidate(self, **kwargs: Any) -> ConsolidationReport:
        """See :meth:`Memory.consolidate`."""
        return await asyncio.to_thread(lambda: self._sync.consolidate(**kwargs))

    async def profile(self, **kwargs: Any) -> Profile:
        """See :meth:`Memory.profile`."""
        return await asyncio.to_thread(lambda: self._sync.profile(**kwargs))

    async def restore(self, memory_id: str) -> MemoryItem:
        """See :meth:`Memory.restore`."""
        return await asyncio.to_thread(self._sync.restore, memory_id)

    async def close(self) -> None:
        """See :meth:`Memory.close`."""
        await asyncio.to_thread(self._sync.close)
