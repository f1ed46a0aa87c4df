"""Deterministic stand-ins for the model-backed components: an embedder and a clock."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from memlane.core.text import analyse
from memlane.protocols import EmbedKind, Vectors

__all__ = ["FrozenClock", "HashEmbedder"]


class HashEmbedder:
    """Deterministic embedder for tests: hashed word stems and trigrams, L2-normalised."""

    def __init__(self, dimension: int = 64, model_id: str = "hash-embedder-v1") -> None:
        self.dimension = dimension
        self.model_id = model_id
        self.calls = 0

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, 1.0 if value >> 63 else -1.0

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed texts (``kind`` is ignored)."""
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            words = analyse(text).split()
            feats = words + [w[j : j + 3] for w in words for j in range(max(1, len(w) - 2))]
            for feat in feats or ["<empty>"]:
                slot, sign = self._bucket(feat)
                out[i, slot] += sign
            norm = float(np.linalg.norm(out[i]))
            out[i] = out[i] / norm if norm else out[i]
        return out


class FrozenClock:
    """A clock that stands still until moved: ``clock.advance(hours=1)``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the clock forward by a ``timedelta(**delta)``."""
        self.now += timedelta(**delta)


# -- the store contract --------------------------------------------------------------------
