"""Text analysis for keyword search: tokens, stems, stop words, entity candidates.

memlane indexes its own analysed form of each memory (space-joined stems) in the store's full-text
index, so the same code analyses documents and queries and the store needs no stemming tokenizer
of its own (SQLite's and PostgreSQL's differ). Stemming is English Snowball: for other languages it
mostly leaves words alone, which degrades to exact-word matching rather than failing.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from functools import lru_cache

import snowballstemmer

__all__ = [
    "STOP_WORDS",
    "analyse",
    "content_hash",
    "entity_terms",
    "index_text",
    "normalise_text",
    "query_terms",
]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_stemmer = snowballstemmer.stemmer("english")
# A Snowball stemmer keeps the word it is working on in itself: two threads stemming at once get
# IndexErrors or wrong stems (which the cache below would then keep). One word at a time.
_stem_lock = threading.Lock()

# Function words and chat filler: they carry no topic, and as OR-ed query terms they would make
# every memory a keyword candidate.
STOP_WORDS = frozenset(
    """
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves
out over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
theirs them themselves then there there's these they they'd they'll they're they've this those through
to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
where where's which while who who's whom why why's will with won't would wouldn't you you'd you'll
you're you've your yours yourself yourselves
hey hi hello yeah yes ok okay oh wow really just like get got go going gonna thanks thank lot much
know think thing things way well even still
""".split()
)


def normalise_text(text: str) -> str:
    """The text as deduplication sees it: NFC, whitespace collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    """sha256 of the normalised text: equal hashes mean an exact duplicate."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def index_text(content: str, name: str | None) -> str:
    """What a memory is embedded and keyword-indexed as: its text, after its speaker's name if any.

    The speaker is part of what a message says: "Caroline: I joined a support group" is found by
    "what did Caroline join?" although the message never names her.
    """
    return f"{name}: {content}" if name else content


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    with _stem_lock:
        stem: str = _stemmer.stemWord(word)
    return stem


def _words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in _WORD.findall(unicodedata.normalize("NFC", text).casefold())]


def analyse(text: str) -> str:
    """The indexed form of a document: every word stemmed, space-joined (possessives dropped)."""
    out = []
    for word in _words(text):
        base = word[:-2] if word.endswith("'s") else word
        out.append(_stem(base.replace("'", "")))
    return " ".join(out)


def query_terms(text: str) -> list[str]:
    """Distinct stems of a query's content words, in order of first use."""
    seen: dict[str, None] = {}
    for word in _words(text):
        if word in STOP_WORDS or (len(word) < 2 and not word.isdigit()):
            continue
        base = word[:-2] if word.endswith("'s") else word
        stem = _stem(base.replace("'", ""))
        if stem and stem not in STOP_WORDS:
            seen.setdefault(stem, None)
    return list(seen)


def entity_terms(text: str) -> list[str]:
    """Stems of words that look like names or numbers: capitalised mid-sentence, all-caps, digits.

    A cheap, language-agnostic stand-in for named-entity recognition: a query naming "Berlin" or
    "2023" should favour memories that name it too.
    """
    found: dict[str, None] = {}
    for sentence in re.split(r"[.!?\n]+", text):
        tokens = _WORD.findall(sentence)
        for i, tok in enumerate(tokens):
            is_name = tok[:1].isupper() and (i > 0 or (tok.isupper() and len(tok) > 1))
            if (is_name or tok.isdigit()) and tok.casefold() not in STOP_WORDS:
                base = tok.casefold()
                base = base[:-2] if base.endswith("'s") else base
                found.setdefault(_stem(base.replace("'", "")), None)
    return list(found)
