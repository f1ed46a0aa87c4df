"""An in-process, exact (brute-force) vector index kept in step with the database.

The database is the source of truth. Every write appends the touched row ids to a change log in
the same transaction; before each search the cache reads the log past the last sequence number it
applied, so writes from other processes (a server's workers, a CLI) are visible at once. Exact
search over a contiguous float32 matrix costs ~0.1 ms per thousand vectors on two cores, with no
recall loss and no index build: every scope searched is searched exactly until it holds
``AnnSettings.min_rows`` vectors; a larger one gets an HNSW graph (:mod:`memlane.stores.ann_index`)
that proposes candidates, which are then masked and scored exactly.

Passages of long memories (:mod:`memlane.core.passages`) sit in a second matrix, each run of a
memory's passages contiguous and carrying a copy of its memory's scope, expiry and validity (a
change to the memory reloads them). A memory's cosine is the best of its own vector's and its
passages'.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from memlane.protocols import Vector, Vectors
from memlane.stores.ann_index import AnnIndexes, AnnSettings, ScopeCodes, scope_mask
from memlane.types import Scope

__all__ = ["ANY_VALIDITY", "CachedRow", "VectorCache"]

# ``as_of=ANY_VALIDITY``: unexpired rows whatever their validity; the caller's ``allowed`` set
# (computed in SQL) decides which rows count, e.g. merged or archived memories a search includes.
ANY_VALIDITY = math.nan


@dataclass
class CachedRow:
    """What the cache needs of a row: vector, scope ids, expiry and validity (epoch seconds).

    ``start`` is when the memory became true (its timestamp); ``until`` is inf for a current
    memory and the end of validity for a past version (which only ``as_of`` searches see).
    ``passage_seqs`` and ``passage_vecs`` are the row's passages (none for a memory indexed whole).
    """

    rid: int
    user_id: str
    agent_id: str
    run_id: str
    expires: float
    embedding: Vector
    start: float = -math.inf
    until: float = math.inf
    passage_seqs: list[int] = field(default_factory=list)
    passage_vecs: Vectors | None = None


# Below this many rows a plain loop (einsum) beats BLAS: waking BLAS threads for a small product
# cost ~10 ms on a busy two-core machine, against ~0.3 ms for 1,300 x 384 in one thread.
_BLAS_ROWS = 32_768


def _dot(matrix: Vectors, query: Vector) -> npt.NDArray[np.float32]:
    """``matrix @ query``, in one thread when the matrix is small (passages)."""
    if len(matrix) < _BLAS_ROWS:
        out: npt.NDArray[np.float32] = np.einsum("ij,j->i", matrix, query)
        return out
    return matrix @ query


class _Block:
    """Vectors with the fields search masks on, in parallel arrays; ``key`` is the owning row id."""

    def __init__(self, dimension: int, capacity: int = 1024) -> None:
        self.dimension = dimension
        self.size = 0
        self.dead = 0
        self.vecs = np.zeros((capacity, dimension), dtype=np.float32)
        self.key = np.full(capacity, -1, dtype=np.int64)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.scope = np.zeros((capacity, 3), dtype=np.int32)
        self.expires = np.full(capacity, math.inf, dtype=np.float64)
        self.start = np.full(capacity, -math.inf, dtype=np.float64)
        self.until = np.full(capacity, math.inf, dtype=np.float64)
        self.alive = np.zeros(capacity, dtype=bool)

    _ARRAYS = ("vecs", "key", "seq", "scope", "expires", "start", "until", "alive")

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more slots (one allocation for a full load, not ~log2(n) copies)."""
        need, cap = self.size + extra, len(self.key)
        if need <= cap:
            return
        bigger = _Block(self.dimension, max(need, cap * 2))
        for name in self._ARRAYS:
            getattr(bigger, name)[: self.size] = getattr(self, name)[: self.size]
        for name in self._ARRAYS:
            setattr(self, name, getattr(bigger, name))

    def put(self, slots: slice | int, row: CachedRow, codes: tuple[int, int, int]) -> None:
        """Set the masked-on fields of ``slots`` from ``row`` and mark them alive."""
        self.key[slots] = row.rid
        self.scope[slots] = codes
        self.expires[slots] = row.expires
        self.start[slots] = row.start
        self.until[slots] = row.until
        self.alive[slots] = True

    def compact(self) -> npt.NDArray[np.int64]:
        """Drop dead slots, keeping order; returns each old slot's new position (-1: dropped)."""
        keep = np.flatnonzero(self.alive[: self.size])
        moved = np.full(self.size, -1, dtype=np.int64)
        moved[keep] = np.arange(len(keep))
        for name in self._ARRAYS:
            array = getattr(self, name)
            array[: len(keep)] = array[keep]
        self.alive[len(keep) : self.size] = False
        self.size = len(keep)
        self.dead = 0
        return moved

    def mask(self, scope_codes: list[int | None], now: float, as_of: float | None) -> npt.NDArray[np.bool_]:
        """Live slots in scope: current and unexpired, or (``as_of``) true at that time."""
        n = self.size
        if as_of is None:
            mask = self.alive[:n] & (self.expires[:n] > now) & np.isinf(self.until[:n])
        elif math.isnan(as_of):  # ANY_VALIDITY
            mask = self.alive[:n] & (self.expires[:n] > now)
        else:  # whatever was true at as_of, past versions included
            at = as_of
            mask = self.alive[:n] & (self.expires[:n] > at) & (self.until[:n] > at) & (self.start[:n] <= at)
        for column, code in enumerate(scope_codes):
            if code is not None:
                mask &= self.scope[:n, column] == code
        return mask


class VectorCache:
    """Row vectors and passage vectors with scope codes in parallel numpy arrays; thread-safe."""

    def __init__(self, dimension: int, ann: AnnSettings | None = None) -> None:
        self.dimension = dimension
        self.ann = ann or AnnSettings()
        self.seq = -1  # last change-log sequence applied; -1: never loaded
        self.lock = threading.RLock()
        self.clear()

    def clear(self) -> None:
        """Forget everything (before a full reload)."""
        with self.lock:
            self._codes: list[dict[str, int]] = [{"": 0}, {"": 0}, {"": 0}]
            self._rows = _Block(self.dimension)
            self._slot: dict[int, int] = {}
            self._passages = _Block(self.dimension)
            self._ranges: dict[int, tuple[int, int]] = {}  # row id -> its passages' slots [lo, hi)
            self._row_graphs = AnnIndexes(self._rows, self.dimension, self.ann, self.lock)
            self._passage_graphs = AnnIndexes(self._passages, self.dimension, self.ann, self.lock)
            self._shares: dict[ScopeCodes, float] = {}
            self.seq = -1

    def __len__(self) -> int:
        return len(self._slot)

    def scope_share(self, scope: Scope) -> float:
        """The share of all rows (current or not, expired or not) that ``scope`` holds."""
        with self.lock:
            codes = self._scope_codes(scope)
            if codes is None:
                return 0.0
            key: ScopeCodes = (codes[0], codes[1], codes[2])
            share = self._shares.get(key)
            if share is None:  # counted once per change applied
                inside = np.count_nonzero(scope_mask(self._rows, key))
                share = self._shares[key] = inside / max(1, len(self._slot))
            return share

    def wait_for_graphs(self, timeout: float | None = None) -> bool:
        """Wait for approximate indexes building in the background; True when none is left building."""
        with self.lock:
            graphs = (self._row_graphs, self._passage_graphs)
        return all(g.wait(timeout) for g in graphs)

    def stats(self) -> dict[str, Any]:
        """Rows, passages, bytes of vectors held, and each approximate index (for benchmarks)."""
        with self.lock:
            return {
                "rows": len(self._slot),
                "passages": self._passages.size - self._passages.dead,
                "vector_bytes": self._rows.vecs.nbytes + self._passages.vecs.nbytes,
                "row_graphs": self._row_graphs.stats(),
                "passage_graphs": self._passage_graphs.stats(),
            }

    def _code(self, column: int, value: str) -> int:
        codes = self._codes[column]
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(codes)
        return code

    def apply(self, upserts: Iterable[CachedRow], deleted: Iterable[int]) -> None:
        """Apply row changes read from the database (an upsert replaces the row's passages)."""
        with self.lock:
            rows, passages = self._rows, self._passages
            self._shares.clear()
            moved_rows: list[int] = []  # slots whose vector or scope changed, or that died: graphs re-index them
            moved_passages: list[int] = []
            for rid in deleted:
                slot = self._slot.pop(rid, None)
                if slot is not None:
                    rows.alive[slot] = False
                    rows.dead += 1
                    moved_rows.append(slot)
                moved_passages += self._drop_passages(rid)
            upserts = list(upserts)
            rows.reserve(len(upserts))
            passages.reserve(sum(len(r.passage_seqs) for r in upserts))
            for row in upserts:
                codes = (self._code(0, row.user_id), self._code(1, row.agent_id), self._code(2, row.run_id))
                slot = self._slot.get(row.rid)
                if slot is None:
                    rows.reserve(1)
                    slot = self._slot[row.rid] = rows.size
                    rows.size += 1
                    moved_rows.append(slot)
                elif tuple(rows.scope[slot]) != codes or not np.array_equal(rows.vecs[slot], row.embedding):
                    moved_rows.append(slot)  # not for a change of expiry or validity: masks see those
                rows.vecs[slot] = row.embedding
                rows.put(slot, row, codes)
                moved_passages += self._drop_passages(row.rid)
                if row.passage_seqs and row.passage_vecs is not None:
                    lo, hi = passages.size, passages.size + len(row.passage_seqs)
                    passages.reserve(hi - lo)
                    passages.vecs[lo:hi] = row.passage_vecs
                    passages.seq[lo:hi] = row.passage_seqs
                    passages.put(slice(lo, hi), row, codes)
                    passages.size = hi
                    self._ranges[row.rid] = (lo, hi)
                    moved_passages += range(lo, hi)
            self._row_graphs.changed(np.array(moved_rows, dtype=np.int64))
            self._passage_graphs.changed(np.array(moved_passages, dtype=np.int64))
            self._compact()

    def _compact(self) -> None:
        """Drop dead slots once they are a quarter of a block (slots move: that block's graphs go)."""
        rows, passages = self._rows, self._passages
        if rows.dead > 1024 and rows.dead > rows.size // 4:
            moved = rows.compact()
            self._slot = {rid: int(moved[slot]) for rid, slot in self._slot.items()}
            self._row_graphs.reset()
        if passages.dead > 1024 and passages.dead > passages.size // 4:
            moved = passages.compact()
            self._ranges = {rid: (int(moved[lo]), int(moved[hi - 1]) + 1) for rid, (lo, hi) in self._ranges.items()}
            self._passage_graphs.reset()

    def _drop_passages(self, rid: int) -> range:
        span = self._ranges.pop(rid, None)
        if span is None:
            return range(0)
        self._passages.alive[span[0] : span[1]] = False
        self._passages.dead += span[1] - span[0]
        return range(span[0], span[1])

    def _scope_codes(self, scope: Scope) -> list[int | None] | None:
        """The scope's ids as codes (None: unset); None when an id was never seen (nothing matches)."""
        out: list[int | None] = []
        for column, value in enumerate((scope.user_id, scope.agent_id, scope.run_id)):
            code = None if value is None else self._codes[column].get(value)
            if value is not None and code is None:
                return None
            out.append(code)
        return out

    def _allowed(self, block: _Block, allowed: set[int]) -> npt.NDArray[np.bool_]:
        if block is self._rows:
            allow = np.zeros(block.size, dtype=bool)
            allow[[self._slot[r] for r in allowed if r in self._slot]] = True
            return allow
        return np.isin(block.key[: block.size], np.fromiter(allowed, dtype=np.int64, count=len(allowed)))

    def search(
        self,
        query: Vector,
        scope: Scope,
        k: int,
        now: float,
        allowed: set[int] | None = None,
        *,
        as_of: float | None = None,
    ) -> list[tuple[int, float]]:
        """Top ``k`` (rid, cosine) in ``scope``, unexpired (or true at ``as_of``), in ``allowed`` when given.

        A memory's cosine is the best of its own vector's and its passages'.
        """
        with self.lock:
            codes = self._scope_codes(scope)
            if codes is None or k <= 0:
                return []
            own = self._top(query, codes, k, now, allowed, as_of)
            if self._passages.size == self._passages.dead:
                return own
            best, exact = self._passage_best(query, codes, k, now, allowed, as_of)
            if not best:
                return own
            merged = dict(own)
            by_passage = sorted(best.items(), key=lambda x: (-x[1], x[0]))[:k]
            owners = [rid for rid, _ in by_passage]
            for rid, cos in zip(owners, self._own_cosines(query, owners), strict=True):
                merged[rid] = cos
            for rid in merged:
                # A graph's candidates miss some passages of the rows found: score those rows' all.
                passage = best.get(rid, -math.inf) if exact else self._best_passage(query, rid)
                merged[rid] = max(merged[rid], passage)
            return sorted(merged.items(), key=lambda x: (-x[1], x[0]))[:k]

    def _candidates(
        self,
        block: _Block,
        query: Vector,
        codes: list[int | None],
        k: int,
        now: float,
        allowed: set[int] | None,
        as_of: float | None,
        *,
        approximate: bool = True,
    ) -> tuple[npt.NDArray[np.int64], bool]:
        """Slots to score exactly: every slot passing the mask, or (large scopes) a graph's best of them.

        The flag is True when the slots are all those passing, in ascending order.
        """
        mask = block.mask(codes, now, as_of)
        if allowed is not None:
            mask &= self._allowed(block, allowed)
        graphs = self._row_graphs if block is self._rows else self._passage_graphs
        key: ScopeCodes = (codes[0], codes[1], codes[2])
        found = graphs.candidates(key, mask, query, k) if approximate else None
        if found is not None:
            return found, False
        return np.flatnonzero(mask), True

    def _scores(self, block: _Block, idx: npt.NDArray[np.int64], query: Vector) -> npt.NDArray[np.float32]:
        # Scoring only the scope's rows pays when the scope is a small part of the store; else a
        # fancy-indexed copy of many rows costs more than scoring them all in place.
        if idx.size * 4 < block.size:
            return _dot(block.vecs[idx], query)
        return _dot(block.vecs[: block.size], query)[idx]

    def _top(
        self,
        query: Vector,
        codes: list[int | None],
        k: int,
        now: float,
        allowed: set[int] | None,
        as_of: float | None,
    ) -> list[tuple[int, float]]:
        block = self._rows
        idx, _ = self._candidates(block, query, codes, k, now, allowed, as_of)
        if idx.size == 0:
            return []
        scores = self._scores(block, idx, query)
        top = np.argpartition(-scores, k - 1)[:k] if idx.size > k else np.arange(idx.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(block.key[idx[i]]), float(scores[i])) for i in top]

    def _passage_best(
        self,
        query: Vector,
        codes: list[int | None],
        k: int,
        now: float,
        allowed: set[int] | None,
        as_of: float | None,
    ) -> tuple[dict[int, float], bool]:
        """Rows in scope with passages -> their best passage's cosine; True: every such row, exactly.

        False: only the rows of the passages a graph proposed (at least ``k`` rows).
        """
        block = self._passages
        # From a graph, ask for several passages per row wanted: a row's passages crowd together.
        idx, exact = self._candidates(block, query, codes, 4 * k, now, allowed, as_of)
        out = self._owner_maxima(idx, query, exact)
        if not exact and len(out) < k:  # too few rows among them: every passage in scope, exactly
            idx, exact = self._candidates(block, query, codes, 4 * k, now, allowed, as_of, approximate=False)
            out = self._owner_maxima(idx, query, exact)
        return out, exact

    def _owner_maxima(self, idx: npt.NDArray[np.int64], query: Vector, ordered: bool) -> dict[int, float]:
        """The best cosine per owning row among passage slots ``idx`` (``ordered``: ascending slots)."""
        if idx.size == 0:
            return {}
        block = self._passages
        scores = self._scores(block, idx, query)
        owners = block.key[idx]
        if not ordered:  # a graph's candidates come best first: bring each row's together
            order = np.argsort(owners, kind="stable")
            scores, owners = scores[order], owners[order]
        # In slot order a row's passages are contiguous: each run of one owner is all of them.
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        maxima = np.maximum.reduceat(scores, starts)
        out: dict[int, float] = {}
        for rid, cos in zip(owners[starts].tolist(), maxima.tolist(), strict=True):
            out[rid] = max(cos, out.get(rid, -math.inf))
        return out

    def _best_passage(self, query: Vector, rid: int) -> float:
        """The best cosine among the row's passages (-inf when it has none)."""
        span = self._ranges.get(rid)
        if span is None:
            return -math.inf
        return float(np.max(_dot(self._passages.vecs[span[0] : span[1]], query)))

    def _own_cosines(self, query: Vector, rids: list[int]) -> list[float]:
        slots = [self._slot[r] for r in rids]
        return [float(x) for x in self._rows.vecs[slots] @ query] if slots else []

    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]:
        """Cosine of the query to each given row still in the cache (the best of its own and its passages')."""
        with self.lock:
            found = [r for r in rids if r in self._slot]
            out = dict(zip(found, self._own_cosines(query, found), strict=True))
            for rid in found:
                if rid in self._ranges:
                    out[rid] = max(out[rid], self._best_passage(query, rid))
            return out

    def passage_cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, list[tuple[int, float]]]:
        """For each given row with passages, ``(seq, cosine)`` of every passage, in order."""
        with self.lock:
            out: dict[int, list[tuple[int, float]]] = {}
            for rid in rids:
                span = self._ranges.get(rid)
                if span is not None:
                    lo, hi = span
                    scores = _dot(self._passages.vecs[lo:hi], query)
                    out[rid] = list(zip(self._passages.seq[lo:hi].tolist(), scores.tolist(), strict=True))
            return out
