"""``core.passages.split_passages``: where long texts are cut, checked by example and by property."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memlane.core.passages import Span, split_passages


def _check(text: str, spans: list[Span], max_chars: int) -> None:
    """The invariants every split keeps."""
    covered = bytearray(len(text))
    for i, (start, end) in enumerate(spans):
        assert 0 <= start < end <= len(text)
        assert end - start <= max_chars
        assert not text[start].isspace() and not text[end - 1].isspace()
        if i:
            assert start > spans[i - 1].start and end > spans[i - 1].end
            assert start <= spans[i - 1].end or text[spans[i - 1].end : start].isspace()
        covered[start:end] = b"\x01" * (end - start)
    assert all(covered[i] or ch.isspace() for i, ch in enumerate(text))


def test_short_and_blank_texts() -> None:
    assert split_passages("", 100) == []
    assert split_passages(" \n\t ", 100) == []
    assert split_passages("  hello world  ", 100) == [Span(2, 13)]


def test_cuts_at_paragraphs_before_lines_sentences_and_words() -> None:
    para = "One sentence here. Another one follows it.\nA second line of the same paragraph."
    text = "\n\n".join([para] * 6)
    spans = split_passages(text, 200)
    _check(text, spans, 200)
    # every passage but the last ends where a paragraph ends
    assert all(text[e:].startswith("\n\n") for _, e in spans[:-1])
    lines = "\n".join(f"line {i} says something rather plain" for i in range(40))
    spans = split_passages(lines, 150)
    assert all(lines[e] == "\n" for _, e in spans[:-1])
    sentences = " ".join(f"Sentence number {i} is here." for i in range(40))
    spans = split_passages(sentences, 120)
    assert all(sentences[e - 1] == "." for _, e in spans[:-1])
    words = " ".join(f"word{i}" for i in range(400))
    spans = split_passages(words, 100)
    assert all(words[e] == " " for _, e in spans[:-1])


def test_passages_overlap_at_sentence_starts() -> None:
    text = " ".join(f"Fact {i} is stated in this sentence." for i in range(100))
    spans = split_passages(text, 400, overlap=0.15)
    assert len(spans) > 5
    for prev, span in itertools.pairwise(spans):
        assert prev.end - 60 <= span.start < prev.end  # overlaps by at most 15% of 400
        assert text[span.start - 2 : span.start] == ". "
    assert split_passages(text, 400, overlap=0.0)[1].start > spans[1].start


def test_a_long_token_is_cut_mid_token() -> None:
    blob = "x" * 1000
    spans = split_passages(blob, 300)
    _check(blob, spans, 300)
    assert spans[0] == Span(0, 300) and spans[1].start < 300


def test_whitespace_runs_are_skipped_not_overlapped() -> None:
    text = "first part " * 10 + " " * 5000 + "second part " * 10
    spans = split_passages(text, 200)
    _check(text, spans, 200)
    assert all(not text[s:e].isspace() for s, e in spans)
    assert any(s > 5000 for s, _ in spans) and all(e <= 110 or s > 5000 for s, e in spans)


def test_cjk_sentences_end_without_spaces() -> None:
    text = "今天天气很好。" * 200
    spans = split_passages(text, 100)
    _check(text, spans, 100)
    assert all(text[e - 1] == "。" for _, e in spans[:-1])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_passages("text", 10)
    with pytest.raises(ValueError, match="overlap"):
        split_passages("text", 100, overlap=0.3)


def test_deterministic_and_fast_on_two_million_characters() -> None:
    import time

    paragraph = "The quarterly report covers revenue, costs and hiring. " * 12
    text = "\n\n".join(f"{i}. {paragraph}" for i in range(3000))[:2_000_000]
    began = time.perf_counter()
    spans = split_passages(text, 2000)
    elapsed = time.perf_counter() - began
    assert spans == split_passages(text, 2000)
    _check(text, spans, 2000)
    assert 1000 <= len(spans) <= 1500 and elapsed < 2.0


_alphabet = st.sampled_from([*"ab cd.\n\n!?。\t", "xyz", "  ", "Hello. ", "\n\n", "é", "😀"])


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(_alphabet, max_size=400).map("".join),
    max_chars=st.integers(min_value=20, max_value=300),
    overlap=st.floats(min_value=0.0, max_value=0.2499),
)
def test_properties(text: str, max_chars: int, overlap: float) -> None:
    spans = split_passages(text, max_chars, overlap)
    _check(text, spans, max_chars)
    assert spans == split_passages(text, max_chars, overlap)
    if text.strip():
        assert spans, "a text with content has at least one passage"
    if len(text.strip()) <= max_chars and text.strip():
        assert len(spans) == 1


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=2000), max_chars=st.integers(min_value=20, max_value=500))
def test_properties_on_any_unicode(text: str, max_chars: int) -> None:
    spans = split_passages(text, max_chars)
    _check(text, spans, max_chars)
