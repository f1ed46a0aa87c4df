"""Approximate nearest-neighbour indexes over large scopes of the vector cache.

Brute force over a scope costs ~0.1 ms per thousand vectors on two cores, which is nothing for a
user's memories and most of a search's budget for one scope of 100k. So a scope that a search
finds holding at least ``AnnSettings.min_rows`` vectors gets an HNSW graph of its own: built once
(in a background thread by default, exact answers meanwhile), then kept in step with every change
the cache applies. The graph only proposes candidates: a search over-fetches from it, drops those
its exact mask rejects (expired, not yet or no longer valid, outside ``as_of``, filtered out) and
re-scores the rest with the float32 vectors. When the mask leaves too small a share of the graph,
or too few candidates survive, the search is exact instead.

A graph covers a scope, given as scope codes (``None``: any value), and holds every live slot of
it, whatever its expiry or validity. Its nodes map to the block's slots, which stay put until the
block compacts: then every graph of the block is dropped, and rebuilt by the next large search.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["AnnIndexes", "AnnSettings", "ScopeCodes", "scope_mask"]

ScopeCodes = tuple[int | None, int | None, int | None]
Slots = npt.NDArray[np.int64]


class _Source(Protocol):
    """What the indexes read of a vector block (``memlane.stores.vector_cache``)."""

    size: int
    vecs: npt.NDArray[np.float32]
    scope: npt.NDArray[np.int32]
    alive: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class AnnSettings:
    """When and how the cache searches a scope approximately.

    Args:
        min_rows: a search goes through a graph when at least this many vectors pass its mask
            (below it, brute force costs under ~2 ms). ``None`` turns graphs off.
        min_share: ... and they are at least this share of the graph (else exact over them).
        oversample: candidates fetched per wanted result, divided by that share.
        ef_search: the graph's search breadth (at least the number of candidates fetched).
        connectivity: HNSW links per node (M).
        ef_construction: HNSW build breadth.
        background: build graphs in a background thread (exact answers meanwhile); False builds
            in the searching thread (tests).
    """

    min_rows: int | None = 20_000
    min_share: float = 0.5
    oversample: float = 2.0
    ef_search: int = 200
    connectivity: int = 16
    ef_construction: int = 128
    background: bool = True


# Vectors added to a graph per call while it builds (a 15 MB copy at 384 dimensions, not the scope's all).
_CHUNK = 10_000


@contextmanager
def _build_threads(background: bool) -> Iterator[None]:
    """faiss's threads for a build: in the background, one core fewer than the machine has.

    A background build on every core would slow the exact searches it runs beside (on two
    cores, ~2x); it takes longer on one core fewer, but the searches meanwhile keep their pace.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    if background:
        faiss.omp_set_num_threads(max(1, (os.cpu_count() or 1) - 1))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _covers(outer: ScopeCodes, inner: ScopeCodes) -> bool:
    """Whether every slot in scope ``inner`` is in scope ``outer``."""
    return all(o is None or o == i for o, i in zip(outer, inner, strict=True))


def scope_mask(source: _Source, codes: ScopeCodes, slots: Slots | None = None) -> npt.NDArray[np.bool_]:
    """Live slots in scope (of ``slots`` when given, else of the whole block)."""
    if slots is None:
        mask = source.alive[: source.size].copy()
        scope = source.scope[: source.size]
    else:
        mask = source.alive[slots]
        scope = source.scope[slots]
    for column, code in enumerate(codes):
        if code is not None:
            mask &= scope[:, column] == code
    return mask


class _Graph:
    """One scope's HNSW graph (faiss, 8-bit scalar-quantised vectors: candidates are re-scored anyway).

    faiss numbers the graph's nodes itself and cannot remove one, so ``_slot_of`` maps each node
    to its slot and ``_node_of`` each slot to its current node: a slot removed, or re-added with a
    new vector, leaves a stale node behind that searches skip. Past ``STALE_SHARE`` stale nodes
    the graph asks to be rebuilt (``worn``).
    """

    STALE_SHARE = 0.25

    def __init__(self, dimension: int, settings: AnnSettings, sample: npt.NDArray[np.float32]) -> None:
        import faiss  # on first use: small stores never load it

        self._faiss: Any = faiss  # its stubs are partial: used untyped
        index = self._faiss.IndexHNSWSQ(
            dimension, faiss.ScalarQuantizer.QT_8bit, settings.connectivity, faiss.METRIC_INNER_PRODUCT
        )
        index.hnsw.efConstruction = settings.ef_construction
        index.train(np.ascontiguousarray(sample, dtype=np.float32))  # each dimension's range, for 8 bits
        self._index: Any = index
        self._slot_of = np.empty(0, dtype=np.int64)
        self._node_of = np.full(1024, -1, dtype=np.int64)
        self._stale = 0

    @property
    def size(self) -> int:
        """Live nodes (one per slot held)."""
        return int(self._index.ntotal) - self._stale

    @property
    def worn(self) -> bool:
        return self._stale > self.STALE_SHARE * max(1, int(self._index.ntotal))

    def _room(self, top: int) -> None:
        if top >= len(self._node_of):
            grown = np.full(max(top + 1, 2 * len(self._node_of)), -1, dtype=np.int64)
            grown[: len(self._node_of)] = self._node_of
            self._node_of = grown

    def add(self, slots: Slots, vecs: npt.NDArray[np.float32]) -> None:
        """Add (or replace) the vectors of ``slots`` (distinct)."""
        if not len(slots):
            return
        self._room(int(slots.max()))
        self.remove(slots)
        first = int(self._index.ntotal)
        self._index.add(np.ascontiguousarray(vecs, dtype=np.float32))
        self._slot_of = np.concatenate([self._slot_of, slots])
        self._node_of[slots] = np.arange(first, first + len(slots))

    def remove(self, slots: Slots) -> None:
        """Forget ``slots`` (those held; others are ignored)."""
        slots = slots[slots < len(self._node_of)]
        held = self._node_of[slots] >= 0
        self._stale += int(np.count_nonzero(held))
        self._node_of[slots] = -1

    def search(self, query: npt.NDArray[np.float32], n: int, ef: int) -> Slots:
        """Slots of about the ``n`` nearest live nodes, best first."""
        live = self.size
        if n <= 0 or live <= 0:
            return np.empty(0, dtype=np.int64)
        total = int(self._index.ntotal)
        fetch = min(total, math.ceil(n * total / live))  # stale nodes take places in the answer
        params = self._faiss.SearchParametersHNSW(efSearch=max(ef, fetch))
        found = self._index.search(query.reshape(1, -1).astype(np.float32, copy=False), fetch, params=params)
        nodes: Slots = found[1][0]
        nodes = nodes[nodes >= 0]  # -1: fewer nodes reachable than asked for
        slots = self._slot_of[nodes]
        live_slots: Slots = slots[self._node_of[slots] == nodes]
        return live_slots

    def nbytes(self) -> int:
        """About what the graph holds: 8-bit codes, links, and the node/slot maps."""
        codes = int(self._index.ntotal) * (int(self._index.d) + 2 * 16 * 4 + 16)
        return codes + self._slot_of.nbytes + self._node_of.nbytes


@dataclass
class _ScopeIndex:
    codes: ScopeCodes
    generation: int
    graph: _Graph | None = None  # None while it builds
    pending: set[int] = field(default_factory=set)  # slots changed while it builds
    build_seconds: float = 0.0


class AnnIndexes:
    """The graphs of one vector block, one per large scope searched; call under the cache's lock."""

    def __init__(self, source: _Source, dimension: int, settings: AnnSettings, lock: threading.RLock) -> None:
        self._source = source
        self._dimension = dimension
        self.settings = settings
        self._lock = lock
        self._indexes: dict[ScopeCodes, _ScopeIndex] = {}
        self._generation = 0
        self._threads: list[threading.Thread] = []

    def reset(self) -> None:
        """Drop every graph (the block was cleared or compacted: slots moved)."""
        self._generation += 1
        self._indexes.clear()

    def changed(self, slots: Slots) -> None:
        """Slots whose vector or scope changed, or that died: re-index them in every graph."""
        if not len(slots):
            return
        for index in list(self._indexes.values()):  # a worn graph leaves the dict
            if index.graph is None:
                index.pending.update(slots.tolist())
            else:
                self._refresh(index, slots)

    def _refresh(self, index: _ScopeIndex, slots: Slots) -> None:
        graph = index.graph
        assert graph is not None
        slots = np.unique(slots)
        graph.remove(slots)
        keep = slots[scope_mask(self._source, index.codes, slots)]
        graph.add(keep, self._source.vecs[keep])
        if graph.worn:  # mostly stale nodes: the next large search builds it afresh
            del self._indexes[index.codes]

    def candidates(
        self, codes: ScopeCodes, mask: npt.NDArray[np.bool_], query: npt.NDArray[np.float32], k: int
    ) -> Slots | None:
        """Slots of ``mask`` likely nearest ``query`` (at least ``min(k, mask.sum())``); None: search exactly.

        Starts building a graph for ``codes`` when the scope is large and has none yet.
        """
        min_rows = self.settings.min_rows
        passing = int(np.count_nonzero(mask))
        if min_rows is None or passing < min_rows:
            return None
        covering = self._covering(codes, passing)
        if covering is None:
            self._start(codes)
            return None
        graph = covering[1]
        share = passing / max(graph.size, 1)
        fetch = math.ceil(k * self.settings.oversample / share)
        found = graph.search(query, fetch, self.settings.ef_search)
        found = found[mask[found]]
        if len(found) < min(k, passing):
            return None  # the mask rejected too many: exact over the scope instead
        return found

    def _covering(self, codes: ScopeCodes, passing: int) -> tuple[_ScopeIndex, _Graph] | None:
        """The smallest built graph covering ``codes`` in which the passing slots are a large enough share."""
        best: tuple[_ScopeIndex, _Graph] | None = None
        for index in self._indexes.values():
            graph = index.graph
            if graph is None or not _covers(index.codes, codes) or passing < self.settings.min_share * graph.size:
                continue
            if best is None or graph.size < best[1].size:
                best = (index, graph)
        return best

    def _start(self, codes: ScopeCodes) -> None:
        if codes in self._indexes:
            return  # building, or built but the passing share is too small: exact
        index = self._indexes[codes] = _ScopeIndex(codes, self._generation)
        if not self.settings.background:
            self._build(index)
            return
        thread = threading.Thread(target=self._build, args=(index,), name="memlane-ann-build", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _build(self, index: _ScopeIndex) -> None:
        start = time.perf_counter()
        with self._lock:
            slots = np.flatnonzero(scope_mask(self._source, index.codes)).astype(np.int64)
            # The array, not a copy: a block that grows moves to a new one and leaves this intact,
            # and a slot rewritten in place meanwhile is in ``pending``, re-added below.
            vecs = self._source.vecs
        graph = _Graph(self._dimension, self.settings, vecs[slots[:_CHUNK]])
        with _build_threads(self.settings.background):  # outside the lock: searches go on, exactly
            for lo in range(0, len(slots), _CHUNK):
                graph.add(slots[lo : lo + _CHUNK], vecs[slots[lo : lo + _CHUNK]])
        with self._lock:
            if index.generation != self._generation or self._indexes.get(index.codes) is not index:
                return  # the block compacted (or cleared) meanwhile: these slots mean nothing now
            index.graph = graph
            if index.pending:
                self._refresh(index, np.fromiter(index.pending, dtype=np.int64, count=len(index.pending)))
                index.pending.clear()
            index.build_seconds = time.perf_counter() - start

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for graphs building in the background; True when none is left building."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def stats(self) -> list[dict[str, Any]]:
        """Each graph: its scope codes, size, whether built, build seconds and approximate bytes."""
        return [
            {
                "codes": i.codes,
                "size": i.graph.size if i.graph else 0,
                "built": i.graph is not None,
                "build_seconds": round(i.build_seconds, 3),
                "bytes": i.graph.nbytes() if i.graph else 0,
            }
            for i in self._indexes.values()
        ]
