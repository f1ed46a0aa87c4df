"""Export, import and re-embedding on ``Memory`` (``TransferMethods``, which ``Memory`` inherits)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from memlane import reembed as reembedding
from memlane import transfer
from memlane.config import MemoryConfig, PassageConfig
from memlane.core.ranking import RankingParams
from memlane.core.scope import resolve_scope
from memlane.protocols import Embedder, Store
from memlane.providers import registry

__all__ = ["TransferMethods", "calibrated"]


def calibrated(cfg: MemoryConfig, embedder: Embedder) -> RankingParams:
    """The ranking parameters, with the embedder's cosine scale unless the config sets one.

    Embedders spread cosines differently (all-MiniLM: unrelated texts near 0.1; e5: near 0.75), so
    an embedder may declare ``cosine_range = (unrelated, same meaning)`` for the dense signal.
    """
    params = cfg.ranking.params()
    scale = getattr(embedder, "cosine_range", None)
    if scale is None or {"dense_floor", "dense_ceiling"} & cfg.ranking.model_fields_set:
        return params
    return dataclasses.replace(params, dense_floor=float(scale[0]), dense_ceiling=float(scale[1]))


class TransferMethods:
    """Moving a store's contents: ``export_records``, ``import_records``, ``reembed``."""

    config: MemoryConfig
    _store: Store
    _embedder: Embedder
    _ranking: RankingParams
    _passages: PassageConfig

    def _open(self) -> Store:
        raise NotImplementedError  # Memory's

    def _now(self) -> datetime:
        raise NotImplementedError  # Memory's

    def close(self) -> None:
        raise NotImplementedError  # Memory's

    # -- export and import ----------------------------------------------------------------
    def export_records(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The store (or one scope) as portable records, to write one per line as JSON.

        A header, then every memory row (past versions and expired memories included, with
        provenance and conversation links), then the history of every memory (deleted ones too).
        The format is documented in :mod:`memlane.core.portable`. Records stream page by page, and
        nothing stays locked between pages; reading starts at the first ``next()``.

        Args:
            user_id, agent_id, run_id: export only this scope (the ids that are set must match,
                as in ``get_all``); none: the whole store.
        Returns:
            An iterator of JSON-able dicts (``memlane.core.portable.encode_line`` makes a line).
        Raises:
            InvalidRequest: a scope id is malformed.
            StoreError: a page could not be read.
        """
        scope, _ = resolve_scope(
            user_id=user_id, agent_id=agent_id, run_id=run_id, filters=None, required=False, operation="export"
        )
        return transfer.export_records(self._open, self._embedder, None if scope.is_empty() else scope, self._now())

    def import_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        on_conflict: str = "error",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Load records from ``export_records`` (of any store, any embedder) into this store, as they were.

        Every record is validated first; the texts are then embedded with this Memory's embedder
        and everything is written in one transaction: all or nothing. Ids, times, metadata, past
        versions, conversation links, provenance and history (redactions included) are kept.

        Args:
            records: the records, in export order (``memlane.core.portable.decode_lines`` reads
                a JSON-lines file); the header is optional.
            on_conflict: ``"error"`` (default) refuses the whole import when a memory's id is
                already in this store, or its text duplicates a current memory of its scope;
                ``"skip"`` leaves such memories (and their history) out.
            progress: called with the number of memories embedded so far, after each batch.
        Returns:
            ``{"imported": memory rows written, "skipped": memories left out, "history": events written}``.
        Raises:
            InvalidRequest: a record is malformed ("record N: ..."), or the header's format is not 1.
            MemoryConflict: a conflict with ``on_conflict="error"``; nothing was written.
            ProviderError: the embedder failed; nothing was written.
            StoreError: the write failed; nothing was written.
        """
        return transfer.import_records(
            self._open(), self._embedder, records, on_conflict=on_conflict, progress=progress, now=self._now(),
            passages=self._passages,
        )  # fmt: skip

    def reembed(
        self,
        embedder: Embedder | Mapping[str, Any],
        *,
        batch_size: int = reembedding.BATCH,
        progress: Callable[[int, int], None] | None = None,
    ) -> reembedding.ReembedResult:
        """Re-embed every stored vector with another embedder, then switch the store (and this Memory) to it.

        Resumable: an interrupted run keeps its finished batches and a rerun goes on from there.
        Until the switch (one transaction) the store keeps working with the old embedder, for
        every process, and what they add meanwhile is re-embedded too; afterwards processes still
        using the old embedder get ``EmbedderMismatch``. See ``docs/embedders.md``.

        Args:
            embedder: an :class:`memlane.protocols.Embedder`, or a config section
                ``{"provider": name, "config": {...}}`` built through the provider registry.
            batch_size: texts per embedder call and per transaction.
            progress: called after each batch with ``(vectors done, vectors in the store)``.
        Returns:
            ``{"store", "embedder", "dimension", "previous", "previous_dimension", "switched",
            "vectors", "embedded", "resumed", "discarded"}``; ``switched`` is False when the store
            already used this embedder (nothing to do).
        Raises:
            ConfigError: an unknown provider or a bad provider config.
            InvalidRequest: a bad argument, or a store that cannot be re-embedded.
            ProviderError: the embedder failed (finished batches are kept; rerun to go on).
            StoreError: the store failed (finished batches are kept).
        """
        if isinstance(embedder, Mapping):
            section = MemoryConfig.from_dict({"embedder": dict(embedder)}).embedder
            embedder = registry.embedder(section.provider, section.config)
        self.close()
        result = reembedding.reembed(self._store, embedder, batch_size=batch_size, progress=progress)
        self._embedder = embedder
        self._ranking = calibrated(self.config, embedder)
        return result
