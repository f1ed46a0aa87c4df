"""An in-process, exact (brute-force) vector index kept in step with the database.

The database is the source of truth. Every write appends the touched row ids to a change log in
the same transaction; before each search the cache reads the log past the last sequence number it
applied, so writes from other processes (a server's workers, a CLI) are visible at once. Exact
search over a contiguous float32 matrix is 3-5 ms at 100k x 384 on two cores, with no recall loss
and no index build: an approximate index can slot in here when stores grow past a few million.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memlane.protocols import Vector
from memlane.types import Scope

__all__ = ["CachedRow", "VectorCache"]


@dataclass
class CachedRow:
    """What the cache needs of a row: vector, scope ids, expiry and validity (epoch seconds).

    ``start`` is when the memory became true (its timestamp); ``until`` is inf for a current
    memory and the end of validity for a past version (which only ``as_of`` searches see).
    """

    rid: int
    user_id: str
    agent_id: str
    run_id: str
    expires: float
    embedding: Vector
    start: float = -math.inf
    until: float = math.inf


class VectorCache:
    """Row vectors plus scope codes in parallel numpy arrays; thread-safe."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.seq = -1  # last change-log sequence applied; -1: never loaded
        self.lock = threading.RLock()
        self._codes: list[dict[str, int]] = [{"": 0}, {"": 0}, {"": 0}]
        self._slot: dict[int, int] = {}
        self._size = 0
        self._dead = 0
        self._alloc(1024)

    def _alloc(self, capacity: int) -> None:
        self._vecs = np.zeros((capacity, self.dimension), dtype=np.float32)
        self._rids = np.full(capacity, -1, dtype=np.int64)
        self._scope = np.zeros((capacity, 3), dtype=np.int32)
        self._expires = np.full(capacity, math.inf, dtype=np.float64)
        self._start = np.full(capacity, -math.inf, dtype=np.float64)
        self._until = np.full(capacity, math.inf, dtype=np.float64)
        self._alive = np.zeros(capacity, dtype=bool)

    def clear(self) -> None:
        """Forget everything (before a full reload)."""
        with self.lock:
            self._slot.clear()
            self._size = self._dead = 0
            self._alloc(1024)
            self.seq = -1

    def __len__(self) -> int:
        return len(self._slot)

    def _grow(self, need: int) -> None:
        cap = len(self._rids)
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        old = (self._vecs, self._rids, self._scope, self._expires, self._alive, self._start, self._until)
        self._alloc(new_cap)
        n = self._size
        self._vecs[:n], self._rids[:n], self._scope[:n] = old[0][:n], old[1][:n], old[2][:n]
        self._expires[:n], self._alive[:n] = old[3][:n], old[4][:n]
        self._start[:n], self._until[:n] = old[5][:n], old[6][:n]

    def _code(self, field: int, value: str) -> int:
        codes = self._codes[field]
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(codes)
        return code

    def apply(self, upserts: Iterable[CachedRow], deleted: Iterable[int]) -> None:
        """Apply row changes read from the database."""
        with self.lock:
            for rid in deleted:
                slot = self._slot.pop(rid, None)
                if slot is not None:
                    self._alive[slot] = False
                    self._dead += 1
            upserts = list(upserts)
            self._grow(self._size + len(upserts))  # one allocation for a full load, not ~log2(n) copies
            for row in upserts:
                slot = self._slot.get(row.rid)
                if slot is None:
                    self._grow(self._size + 1)
                    slot = self._size
                    self._size += 1
                    self._slot[row.rid] = slot
                self._vecs[slot] = row.embedding
                self._rids[slot] = row.rid
                self._scope[slot] = (
                    self._code(0, row.user_id),
                    self._code(1, row.agent_id),
                    self._code(2, row.run_id),
                )
                self._expires[slot] = row.expires
                self._start[slot] = row.start
                self._until[slot] = row.until
                self._alive[slot] = True
            if self._dead > 1024 and self._dead > self._size // 4:
                self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: self._size])
        self._vecs[: len(keep)] = self._vecs[keep]
        self._rids[: len(keep)] = self._rids[keep]
        self._scope[: len(keep)] = self._scope[keep]
        self._expires[: len(keep)] = self._expires[keep]
        self._start[: len(keep)] = self._start[keep]
        self._until[: len(keep)] = self._until[keep]
        self._alive[: len(keep)] = True
        self._alive[len(keep) : self._size] = False
        self._size = len(keep)
        self._dead = 0
        self._slot = {int(rid): i for i, rid in enumerate(self._rids[: self._size])}

    def _mask(self, scope: Scope, now: float, as_of: float | None) -> npt.NDArray[np.bool_]:
        n = self._size
        if as_of is None:  # current memories, unexpired
            mask = self._alive[:n] & (self._expires[:n] > now) & np.isinf(self._until[:n])
        else:  # whatever was true at as_of, past versions included
            at = as_of
            mask = self._alive[:n] & (self._expires[:n] > at) & (self._until[:n] > at) & (self._start[:n] <= at)
        for field, value in enumerate((scope.user_id, scope.agent_id, scope.run_id)):
            if value is not None:
                code = self._codes[field].get(value)
                if code is None:
                    return np.zeros(n, dtype=bool)
                mask &= self._scope[:n, field] == code
        return mask

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
        """Top ``k`` (rid, cosine) in ``scope``, unexpired (or true at ``as_of``), in ``allowed`` when given."""
        with self.lock:
            mask = self._mask(scope, now, as_of)
            if allowed is not None:
                allow = np.zeros(self._size, dtype=bool)
                slots = [self._slot[r] for r in allowed if r in self._slot]
                allow[slots] = True
                mask &= allow
            idx = np.flatnonzero(mask)
            if idx.size == 0 or k <= 0:
                return []
            # Scoring only the scope's rows pays when the scope is a small part of the store.
            small = idx.size * 4 < self._size
            scores = self._vecs[idx] @ query if small else (self._vecs[: self._size] @ query)[idx]
            top = np.argpartition(-scores, k - 1)[:k] if idx.size > k else np.arange(idx.size)
            top = top[np.argsort(-scores[top], kind="stable")]
            return [(int(self._rids[idx[i]]), float(scores[i])) for i in top]

    def cosines(self, query: Vector, rids: Iterable[int]) -> dict[int, float]:
        """Cosine of the query to each given row still in the cache."""
        with self.lock:
            pairs = [(r, self._slot[r]) for r in rids if r in self._slot]
            if not pairs:
                return {}
            scores = self._vecs[[s for _, s in pairs]] @ query
            return {r: float(s) for (r, _), s in zip(pairs, scores, strict=True)}
