"""Re-embed every vector of a store with another embedder, then switch the store to it.

``Memory.reembed`` and ``memlane reembed`` are thin shells over :func:`reembed`. The work is
resumable and never leaves the store unusable (see :mod:`memlane.stores.sql_reembed`):

1. The target embedder is recorded as the one being moved to; the store keeps its embedder.
2. Rows without a new vector are read a batch at a time, embedded outside any transaction, and
   their vectors staged in one transaction per batch. A crash loses at most the batch in flight;
   a rerun goes on with the rows still pending.
3. Rows added or changed meanwhile (by any process, with the old embedder) are pending again:
   passes repeat until none is left, then one transaction checks that and switches the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

from memlane.core.text import index_text
from memlane.errors import InvalidRequest, ProviderError, StoreBusy
from memlane.protocols import Embedder, Vectors
from memlane.stores.sql_reembed import PendingRow, ReembedStart

__all__ = ["BATCH", "ReembedResult", "ReembeddableStore", "reembed"]

BATCH = 256
# Passes over rows that others keep adding or changing, before giving up with StoreBusy.
MAX_PASSES = 20


@runtime_checkable
class ReembeddableStore(Protocol):
    """What a store offers to be re-embedded (both SQL stores do)."""

    def describe(self) -> str: ...
    def close(self) -> None: ...
    def reembed_tables(self) -> list[str]: ...
    def reembed_begin(self, target_id: str, dimension: int) -> ReembedStart: ...
    def reembed_progress(self) -> tuple[int, int]: ...
    def reembed_pending(self, table: str, after: int, limit: int) -> list[PendingRow]: ...
    def reembed_stage(
        self, table: str, target_id: str, dimension: int, rows: list[PendingRow], vectors: Vectors
    ) -> int: ...
    def reembed_switch(self, target_id: str, dimension: int) -> int: ...


class ReembedResult(TypedDict):
    """What a re-embedding did.

    Attributes:
        store: where the store is (path, or URL with the password masked).
        embedder, dimension: the embedder the store records now.
        previous, previous_dimension: the one it recorded before (None for a store without one).
        switched: the store changed embedder now (False: it already recorded this one).
        vectors: vectors in the store.
        embedded: vectors embedded by this run.
        resumed: vectors already staged by an interrupted run, kept.
        discarded: vectors staged for another target by an interrupted run, dropped.
    """

    store: str
    embedder: str
    dimension: int
    previous: str | None
    previous_dimension: int | None
    switched: bool
    vectors: int
    embedded: int
    resumed: int
    discarded: int


def _check_vectors(embedder: Embedder, vectors: Any, count: int) -> Vectors:
    out = np.asarray(vectors, dtype=np.float32)
    if out.shape != (count, embedder.dimension) or not np.all(np.isfinite(out)):
        raise ProviderError(
            f"{embedder.model_id} returned vectors of shape {out.shape} (or non-finite values) for {count} "
            f"texts of dimension {embedder.dimension}; nothing of this batch was staged",
            provider=embedder.model_id,
        )
    return out


def _one_pass(store: ReembeddableStore, embedder: Embedder, batch_size: int, on_batch: Callable[[int], None]) -> int:
    """Embed and stage every pending row, table by table, by key; returns how many were staged."""
    staged = 0
    for table in store.reembed_tables():
        after = 0
        while True:
            rows = store.reembed_pending(table, after, batch_size)
            if not rows:
                break
            texts = [index_text(*row.embedded) for row in rows]
            vectors = _check_vectors(embedder, embedder.embed(texts, kind="document"), len(rows))
            count = store.reembed_stage(table, embedder.model_id, embedder.dimension, rows, vectors)
            staged += count
            on_batch(count)
            after = rows[-1].key
    return staged


def reembed(
    store: Any,
    embedder: Embedder,
    *,
    batch_size: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> ReembedResult:
    """Re-embed every vector of ``store`` with ``embedder`` and switch the store to it.

    The store need not be open, and no old embedder is needed: texts are read from the store.
    It is closed at the end (open it again with the new embedder).

    Args:
        store: a SQL store (``SQLiteStore`` or ``PostgresStore``).
        embedder: the new embedder.
        batch_size: rows per embedder call and per staging transaction.
        progress: called after each batch with ``(vectors done, vectors in the store)``; done
            counts vectors staged by an interrupted run too.
    Returns:
        A :class:`ReembedResult`; ``switched`` is False when the store already records ``embedder``.
    Raises:
        InvalidRequest: a bad argument, a store that cannot be re-embedded, or another re-embedding
            with a different target started meanwhile.
        ProviderError: the embedder failed; staged batches are kept, rerun to go on.
        StoreBusy: rows kept being added or changed faster than they were embedded.
        StoreError: the store failed; staged batches are kept.
    """
    if not isinstance(store, ReembeddableStore):
        raise InvalidRequest(f"{type(store).__name__} cannot be re-embedded: only memlane's SQL stores can")
    if not isinstance(embedder, Embedder):
        raise InvalidRequest(f"embedder must implement memlane.protocols.Embedder, got {type(embedder).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequest(f"batch_size must be a positive integer, got {batch_size!r}")
    if progress is not None and not callable(progress):
        raise InvalidRequest(f"progress must be a callable taking (done, total), got {progress!r}")
    target_id, dimension = embedder.model_id, int(embedder.dimension)
    try:
        start = store.reembed_begin(target_id, dimension)
        result = ReembedResult(
            store=store.describe(), embedder=target_id, dimension=dimension,
            previous=start.recorded[0] if start.recorded else None,
            previous_dimension=start.recorded[1] if start.recorded else None,
            switched=False, vectors=start.total, embedded=0, resumed=start.staged, discarded=start.discarded,
        )  # fmt: skip
        if start.recorded is None or start.recorded == (target_id, dimension):
            return result  # a new store now records the target; or nothing to do
        done, total = start.staged, start.total

        def on_batch(count: int) -> None:
            nonlocal done
            done += count
            result["embedded"] += count
            if progress is not None:
                progress(done, max(total, done))

        for _ in range(MAX_PASSES):
            total, done = store.reembed_progress()
            if progress is not None:
                progress(done, total)
            _one_pass(store, embedder, batch_size, on_batch)
            if store.reembed_switch(target_id, dimension) == 0:
                result["switched"] = True
                result["vectors"] = store.reembed_progress()[0]
                return result
        raise StoreBusy(
            f"rows of {store.describe()} kept being added or changed during {MAX_PASSES} passes; "
            "the vectors staged so far are kept: rerun when writes are quieter"
        )
    finally:
        store.close()
