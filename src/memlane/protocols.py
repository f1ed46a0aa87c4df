"""The seams memlane plugs components into: embedders, stores (and, next, LLMs).

A third-party provider implements one of these protocols and registers itself through the
``memlane.embedders`` entry-point group (see :mod:`memlane.providers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["EmbedKind", "Embedder", "Vector", "Vectors"]

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
