"""What a store indexes for a text: its analysed form, its vector and, for a long text, its passages.

``Memory.add`` (verbatim), ``Memory.update`` and ``Memory.import_records`` all come here, so a
memory is indexed the same way however it was written. A text longer than ``split_above`` is
cut into passages (:func:`memlane.core.passages.split_passages`); each passage is embedded and
analysed on its own (after the speaker's name, as whole texts are), and the memory row itself is
indexed as its first passage: what an embedder sees of a long text is its start anyway, and the
row's BM25 length stays that of a passage instead of a document's.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from memlane.config import PassageConfig
from memlane.core.passages import Span, split_passages
from memlane.core.records import NewPassage
from memlane.core.text import analyse, index_text
from memlane.errors import ProviderError
from memlane.protocols import Embedder, Vector, Vectors

__all__ = ["EMBED_BATCH", "Indexed", "index_texts"]

# Texts per embedder call: a 2M-character message is ~1,100 passages, embedded a batch at a time.
EMBED_BATCH = 256


@dataclass
class Indexed:
    """How one text is stored for search."""

    search_text: str
    embedding: Vector
    passages: list[NewPassage]


def _spans(content: str, config: PassageConfig) -> list[Span]:
    """The passages of a long text; [] when it is indexed whole."""
    if len(content) <= max(config.max_chars, config.split_above):
        return []
    spans = split_passages(content, config.max_chars, config.overlap)
    return spans if len(spans) > 1 else []


def index_texts(
    embedder: Embedder,
    items: Sequence[tuple[str, str | None]],
    config: PassageConfig,
    *,
    progress: Callable[[int], None] | None = None,
    batch: int = EMBED_BATCH,
) -> list[Indexed]:
    """Index ``(content, speaker name)`` pairs, embedding every text and passage in batches.

    Args:
        progress: called after each embedder batch with how many items are fully embedded.
        batch: texts per embedder call.
    Raises:
        ProviderError: the embedder failed or returned vectors of the wrong shape; nothing is written.
    """
    plans = [_spans(content, config) for content, _ in items]
    texts: list[str] = []
    last: list[int] = []  # index in texts of each item's last text
    for (content, name), spans in zip(items, plans, strict=True):
        if spans:
            texts.extend(index_text(content[s:e], name) for s, e in spans)
        else:
            texts.append(index_text(content, name))
        last.append(len(texts) - 1)
    vectors = _embed(embedder, texts, last, progress, batch)
    out: list[Indexed] = []
    first = 0
    for spans, end in zip(plans, last, strict=True):
        analysed = [analyse(texts[i]) for i in range(first, end + 1)]
        passages = [
            NewPassage(seq, span.start, span.end, analysed[seq], vectors[first + seq]) for seq, span in enumerate(spans)
        ]
        out.append(Indexed(analysed[0], vectors[first], passages))
        first = end + 1
    return out


def _embed(
    embedder: Embedder, texts: list[str], last: list[int], progress: Callable[[int], None] | None, size: int
) -> Vectors:
    out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    done = 0
    for start in range(0, len(texts), size):
        batch = texts[start : start + size]
        vectors = embedder.embed(batch, kind="document")
        if getattr(vectors, "shape", None) != (len(batch), embedder.dimension):
            raise ProviderError(
                f"{embedder.model_id} returned vectors of shape {getattr(vectors, 'shape', None)} for {len(batch)} "
                f"texts of dimension {embedder.dimension}; nothing was written",
                provider=embedder.model_id,
            )
        out[start : start + len(batch)] = vectors
        finished = bisect.bisect_left(last, start + len(batch))  # items whose texts are all embedded
        if progress is not None and finished > done:
            done = finished
            progress(done)
    return out
