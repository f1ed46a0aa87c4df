"""``AsyncMemory``: the same engine as ``Memory``, awaited.

Every method runs the one synchronous pipeline of :class:`Memory` in a worker thread, so there is
no second copy of the logic to drift. The store and embedder in use are synchronous (SQLite and
onnxruntime release the GIL while they work), which is exactly the case STYLE.md prescribes:
sync-only providers run in a thread under the async driver.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, Self, TypeVar

from memlane.config import MemoryConfig
from memlane.memory import Memory
from memlane.types import AddResult, HistoryEvent, MemoryItem, SearchResult

__all__ = ["AsyncMemory"]

P = ParamSpec("P")
R = TypeVar("R")


def _threaded(method: Callable[P, R]) -> Callable[P, Any]:
    name = method.__name__

    @functools.wraps(method)
    async def run(self: AsyncMemory, *args: Any, **kwargs: Any) -> Any:
        bound = functools.partial(getattr(self._sync, name), *args, **kwargs)
        return await asyncio.to_thread(bound)

    return run


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

    @_threaded
    def add(self, messages: Any, **kwargs: Any) -> AddResult:
        """See :meth:`Memory.add`."""
        return self._sync.add(messages, **kwargs)

    @_threaded
    def search(self, query: str, **kwargs: Any) -> SearchResult:
        """See :meth:`Memory.search`."""
        return self._sync.search(query, **kwargs)

    @_threaded
    def get(self, memory_id: str) -> MemoryItem:
        """See :meth:`Memory.get`."""
        return self._sync.get(memory_id)

    @_threaded
    def get_all(self, **kwargs: Any) -> SearchResult:
        """See :meth:`Memory.get_all`."""
        return self._sync.get_all(**kwargs)

    @_threaded
    def update(self, memory_id: str, data: str, **kwargs: Any) -> MemoryItem:
        """See :meth:`Memory.update`."""
        return self._sync.update(memory_id, data, **kwargs)

    @_threaded
    def delete(self, memory_id: str, **kwargs: Any) -> dict[str, str]:
        """See :meth:`Memory.delete`."""
        return self._sync.delete(memory_id, **kwargs)

    @_threaded
    def delete_all(self, **kwargs: Any) -> dict[str, Any]:
        """See :meth:`Memory.delete_all`."""
        return self._sync.delete_all(**kwargs)

    @_threaded
    def history(self, memory_id: str) -> list[HistoryEvent]:
        """See :meth:`Memory.history`."""
        return self._sync.history(memory_id)

    @_threaded
    def reset(self) -> None:
        """See :meth:`Memory.reset`."""
        self._sync.reset()

    @_threaded
    def close(self) -> None:
        """See :meth:`Memory.close`."""
        self._sync.close()
