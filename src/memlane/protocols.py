"""The seams memlane plugs components into: embedders, stores (and, next, LLMs).

A third-party provider implements one of these protocols and registers itself through the
``memlane.embedders`` entry-point group (see :mod:`memlane.providers`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from memlane.core.filters import Node
    from memlane.core.records import NewMemory, SearchRow, StoredMemory
    from memlane.types import AddEvent, HistoryEvent, Scope

__all__ = ["EmbedKind", "Embedder", "Store", "Vector", "Vectors"]

EmbedKind = Literal["document", "query"]
Vector = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def model_id(self) -> str:
        """A stable id of the model; the store refuses vectors from a different one."""
        ...

    @property
    def dimension(self) -> int:
        """The vector length."""
        ...

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed ``texts`` into a ``(len(texts), dimension)`` float32 array with unit rows.

        Args:
            texts: the texts; may be empty.
            kind: ``"query"`` for search queries, ``"document"`` for stored memories
                (asymmetric models prefix them differently; symmetric ones ignore it).
        Returns:
            The vectors, one row per text.
        Raises:
            ProviderError: the model failed.
        """
        ...


class Store(Protocol):
    """What ``Memory`` calls on its store; ``memlane.testing.StoreContract`` checks a backend against it.

    Every write method is one transaction; reads never see a half-applied write.
    """

    def open(self, embedder_id: str, dimension: int) -> None: ...
    def close(self) -> None: ...
    def insert(self, rows: Sequence[NewMemory], now: datetime) -> builtins.list[tuple[str, AddEvent]]: ...
    def update(
        self,
        memory_id: str,
        *,
        text: str,
        search_text: str,
        content_hash: str,
        embedding: Vector,
        metadata: dict[str, Any] | None,
        now: datetime,
    ) -> tuple[StoredMemory, StoredMemory]: ...
    def delete(self, memory_id: str, *, purge: bool, now: datetime) -> StoredMemory: ...
    def delete_scope(self, scope: Scope, *, purge: bool, now: datetime) -> int: ...
    def reset(self) -> None: ...
    def get(self, memory_id: str) -> StoredMemory | None: ...
    def history(self, memory_id: str) -> builtins.list[HistoryEvent]: ...
    def fetch(self, rids: Iterable[int]) -> dict[int, StoredMemory]: ...
    def term_stats(self, terms: Sequence[str]) -> tuple[int, float, dict[str, int]]: ...
    def keyword(
        self, scope: Scope, node: Node | None, terms: Sequence[str], k: int, now: datetime
    ) -> builtins.list[int]: ...
    def dense(
        self, scope: Scope, node: Node | None, query: Vector, k: int, now: datetime
    ) -> builtins.list[tuple[int, float]]: ...
    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]: ...
    def search_rows(self, rids: Iterable[int]) -> dict[int, SearchRow]: ...
    def followers(self, rids: Iterable[int], scope: Scope, node: Node | None, now: datetime) -> builtins.list[int]: ...
    def list(
        self, scope: Scope, node: Node | None, *, limit: int, now: datetime | None
    ) -> builtins.list[StoredMemory]: ...
