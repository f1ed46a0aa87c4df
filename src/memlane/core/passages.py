"""Long texts as passages: where to cut a text into overlapping pieces of bounded size.

A memory longer than ``max_chars`` is searched passage by passage: an embedder sees only the
start of a long text (all-MiniLM-L6-v2 reads 256 tokens) and BM25 over a whole document says
little about any one part of it. :func:`split_passages` picks the cuts; the memory keeps its whole
text and each passage is a ``(start, end)`` range of it (Python string offsets: code points).

The splitter is a pure function, deterministic, and never returns an empty or whitespace-only
passage. Each passage ends at the best boundary inside its window, by preference the end of a
paragraph, then of a line, of a sentence, of a word; a cut mid-word happens only where no
whitespace falls in the second half of the window (a long token such as a base64 blob). The next
passage starts a little before the previous one ended (``overlap`` of ``max_chars``), at a
sentence or word start, so a sentence cut by a boundary is whole in at least one passage when
the overlap can hold it. Runs of whitespace are never a passage of their own, and an overlap does
not reach back across a whitespace run longer than itself.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["DEFAULT_OVERLAP", "PassageHit", "Span", "split_passages"]

DEFAULT_OVERLAP = 0.12

# Boundaries, strongest first: a match's end (paragraph, line, word) or start (sentence end) is
# where a passage may end. A paragraph break is a line holding nothing but whitespace.
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")
_LINE = re.compile(r"\n")
# Latin punctuation ends a sentence before whitespace; CJK full stops need none after them.
_SENTENCE = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)|[。！？][」』”’)\]]*")
_SPACE = re.compile(r"\s")
_SENTENCE_START = re.compile(r"(?:(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])[」』”’)\]]*\s*)(?=\S)")
_WORD_START = re.compile(r"(?<=\s)\S")
_NON_SPACE = re.compile(r"\S")


class Span(NamedTuple):
    """A passage: the characters ``text[start:end]``."""

    start: int
    end: int


class PassageHit(NamedTuple):
    """The passage of a long memory that best answers a query (see ``Store.best_passages``).

    Attributes:
        seq: its position among the memory's passages (0 = the first).
        start, end: its range in the memory's text.
        cosine: the query's cosine to the passage's embedding.
        search_text: its analysed form (what keyword ranking reads).
    """

    seq: int
    start: int
    end: int
    cosine: float
    search_text: str


def split_passages(text: str, max_chars: int, overlap: float = DEFAULT_OVERLAP) -> list[Span]:
    """Cut ``text`` into passages of at most ``max_chars`` characters.

    Args:
        text: any string.
        max_chars: the longest passage (at least 20).
        overlap: how far (a share of ``max_chars``, below 0.25) a passage may reach back into the
            previous one.
    Returns:
        The passages in order; starts and ends strictly increase, every non-whitespace
        character is in at least one, each starts and ends on a non-whitespace character. ``[]``
        for a blank text; one passage for a text that fits.
    Raises:
        ValueError: ``max_chars`` below 20, or ``overlap`` outside [0, 0.25).
    """
    if max_chars < 20:
        raise ValueError(f"max_chars must be at least 20, got {max_chars}")
    if not 0 <= overlap < 0.25:
        raise ValueError(f"overlap must be in [0, 0.25), got {overlap}")
    # Capped so a passage always ends past the previous one (its cut lies beyond max_chars // 2).
    reach = min(int(max_chars * overlap), (max_chars // 2 - 1) // 2)
    out: list[Span] = []
    start = _skip_space(text, 0)
    while start < len(text):
        end = _rstrip(text, start, _cut(text, start, max_chars))
        out.append(Span(start, end))
        following = _skip_space(text, end)
        if following >= len(text):
            break
        # After a whitespace run longer than the overlap, reaching back over it gains nothing.
        long_gap = following - end > reach
        start = following if long_gap else _skip_space(text, max(_restart(text, end, reach), start + 1))
    return out


def _skip_space(text: str, pos: int) -> int:
    """The first non-whitespace position at or after ``pos`` (``len(text)`` when none)."""
    found = _NON_SPACE.search(text, pos)
    return found.start() if found else len(text)


def _rstrip(text: str, start: int, end: int) -> int:
    """``end`` moved back over trailing whitespace (never to ``start`` or before: text[start] is not space)."""
    while end > start + 1 and text[end - 1].isspace():
        end -= 1
    return end


def _cut(text: str, start: int, max_chars: int) -> int:
    """Where the passage beginning at ``start`` ends: the best boundary in its window's second half."""
    limit = start + max_chars
    if limit >= len(text) or _NON_SPACE.search(text, limit) is None:  # the rest fits
        return len(text)
    low = start + max_chars // 2
    # A boundary may sit right at the limit (a newline or space just past the window's last character).
    for pattern, at_start in ((_PARAGRAPH, True), (_LINE, True), (_SENTENCE, False), (_SPACE, True)):
        best = -1
        for match in pattern.finditer(text, low, min(len(text), limit + 1)):
            cut = match.start() if at_start else match.end()
            if cut > limit:
                break
            best = cut
        if best > start:
            return best
    return limit  # no whitespace in the window's second half: cut mid-token


def _restart(text: str, end: int, reach: int) -> int:
    """Where the next passage starts: the earliest sentence start, else word start, in the last
    ``reach`` characters before ``end``; else ``end - reach`` (inside one long token)."""
    if reach == 0:
        return end
    low = end - reach
    for pattern in (_SENTENCE_START, _WORD_START):
        match = pattern.search(text, low, end)
        if match is not None:
            return match.end() if pattern is _SENTENCE_START else match.start()
    return low
