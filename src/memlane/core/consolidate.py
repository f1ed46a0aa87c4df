"""Consolidation planning (pure, no I/O): which memories of one exact scope are near-duplicates,
which form an episode, how much an idle memory decays, which are archived.

``memlane._consolidate`` reads a scope's memories, asks these functions what to do and has the
store apply each step in its own transaction. Everything here is deterministic: the same memories
give the same plan, which is what makes a second pass change nothing.

Near-duplicates without an LLM are *near-exact*: two memories merge when they say the same words
in the same order (:func:`near_exact_key`: case, punctuation, "the", fillers and intensifiers set
aside; number words, contractions and plurals read alike), with the same speaker, metadata and
expiry, and their vectors agree. Order matters ("Alice reports to Bob" is not "Bob reports to
Alice"); negations, numbers, tense and modal words are words like any other, so "likes tea" never
merges with "doesn't like tea", "liked tea" or "used to like tea". The rule is measured on a
labelled set of near-duplicates and hard negatives (tests/data/near_duplicates.json: 0 false
merges). Memories that say the same thing in other words merge only with an LLM
(:mod:`memlane.core.consolidate_llm`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

__all__ = [
    "ConsolidationSettings",
    "Episode",
    "Row",
    "archive_plan",
    "decay_factor",
    "episodes",
    "merge_groups",
    "near_exact_key",
]

# Words that change nothing a memory says: the article "the", fillers, interjections, intensifiers.
# Everything else (negations, numbers, modal and tense words, pronouns, "a" as one) is kept and must match.
_HARMLESS = frozenset(
    """
the um uh er erm hmm oh ah eh wow haha hahaha lol lmao omg yay hey hi hello well so
really very truly quite totally absolutely definitely super pretty just also too indeed
""".split()
)
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "a": 1, "an": 1,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_WHOLE = {"can't": ("can", "not"), "cannot": ("can", "not"), "won't": ("will", "not"), "shan't": ("shall", "not")}
_ENDINGS = (("n't", "not"), ("'m", "am"), ("'re", "are"), ("'ve", "have"), ("'ll", "will"))
# Emoticons go before words are read (":D" is no word "d"); so do thousands separators ("1,200").
_EMOTICON = re.compile(r"(?<!\w)(?:[:;=8][-']?[)(\]\[dDpPoO3/\\|*]+|<3+|[xX][dD]+)(?!\w)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# Words, and the symbols that change what a number says: currency, %, #, +, and a minus before a digit.
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|[$€£¥%#+]|(?<![\w.])-(?=\d)", re.UNICODE)
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class ConsolidationSettings:
    """What a consolidation pass does (``MemoryConfig.consolidation``; see its docs).

    Attributes:
        merge_cosine: near-exact duplicates must also have vectors at least this close.
        llm_cosine: pairs at least this close are shown to the LLM, which decides whether they
            say the same thing (merge) or the newer contradicts the older (supersede).
        llm_batch: candidate groups per LLM call.
        episode_gap_minutes: a pause this long ends a session (memories without a run id).
        min_episode: an episode needs at least this many memories to be summarised.
        max_episode: at most this many memories go into one summary (longer episodes are cut).
        summaries, profiles: write episodic summaries / rebuild profiles (both need memories;
            summaries need an LLM, profiles fall back to the entity graph without one).
        stale_after_days: a memory neither retrieved nor changed for this long starts to lose rank.
        decay_weight: the most rank it loses (a share of its score), reached at twice that idle age.
        archive_after_days: idle this long, a memory is archived (None: never).
        max_memories: per exact scope, archive the least used memories past this many (None: no cap).
    """

    merge_cosine: float = 0.85
    llm_cosine: float = 0.75
    llm_batch: int = 8
    episode_gap_minutes: float = 240.0
    min_episode: int = 4
    max_episode: int = 80
    summaries: bool = True
    profiles: bool = True
    stale_after_days: float = 90.0
    decay_weight: float = 0.2
    archive_after_days: float | None = None
    max_memories: int | None = None


@dataclass
class Row:
    """One active memory as consolidation sees it.

    ``last_active`` is the later of its last retrieval and its last change; ``episodic`` marks a
    summary; ``summarised`` a memory some summary already covers; ``kept_apart`` one that was
    merged and then restored (a pass never merges it again).
    """

    id: str
    memory: str
    hash: str
    actor_id: str | None
    role: str | None
    metadata: dict[str, Any]
    timestamp: str
    created_at: str
    expires_at: str | None
    embedding: Any
    retrievals: int = 0
    last_active: str = ""
    episodic: bool = False
    summarised: bool = False
    # Merged once and restored by someone since: that was a "keep these apart"; it merges no more.
    kept_apart: bool = False


def _plural(word: str) -> str:
    """A plural or third-person ``-s`` folded away (cats / cat, cities / city, plays / play); tense
    and derivation stay as written: "worked" is not "works", "marketing" not "market"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("sses") or word.endswith(("xes", "ches", "shes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word[:-1] + "ie" if word.endswith("y") else word


def _words(text: str) -> list[str]:
    """Lower-cased words and number symbols, contractions spelt out, possessive 's dropped."""
    clean = _THOUSANDS.sub("", _EMOTICON.sub(" ", unicodedata.normalize("NFC", text)))
    out: list[str] = []
    for token in _TOKEN.findall(clean):
        word = token.replace("’", "'").casefold()
        if word in _HARMLESS:
            continue
        if word in _WHOLE:
            out += _WHOLE[word]
            continue
        for ending, spelt in _ENDINGS:
            if word.endswith(ending) and len(word) > len(ending):
                out += [word[: -len(ending)], spelt]
                break
        else:
            out.append(word.removesuffix("'s").replace("'", ""))
    return out


def near_exact_key(text: str) -> tuple[str, ...]:
    """The words a memory says, in order, as near-exact duplicate detection compares them.

    Set aside: case, punctuation, the composition of accents, possessive ``'s``, thousands
    separators, emoticons, and harmless words (``the``, fillers, interjections, intensifiers).
    Read alike: number words and digits (``twenty-five`` = ``25``, ``a`` = ``1``), contractions and
    their long forms (``doesn't`` = ``does not``), singular and plural. Kept as they are, and so
    never merged with another form: tense (``works`` / ``worked``), derivation (``market`` /
    ``marketing``), currency and percent signs, a minus before a number, and every negation.
    """
    out: list[str] = []
    tens = False  # the last word was a tens number word ("twenty"), which a unit may complete
    for word in _words(text):
        if word in _UNITS:
            if tens and 0 < _UNITS[word] < 10:
                out[-1] = str(int(out[-1]) + _UNITS[word])
            else:
                out.append(str(_UNITS[word]))
            tens = False
        elif word in _TENS:
            out.append(str(_TENS[word]))
            tens = True
        else:
            out.append(_plural(word))
            tens = False
    return tuple(out)


def _cos(a: Any, b: Any) -> float:
    if a is None or b is None or len(a) == 0 or len(b) == 0:
        return 1.0  # no vector to compare (a caller that has none relies on the words alone)
    return float(np.dot(a, b))


def merge_groups(rows: Sequence[Row], merge_cosine: float) -> list[list[Row]]:
    """Groups of near-exact duplicates among one exact scope's active memories, oldest first.

    Each group holds two or more memories with the same :func:`near_exact_key`, speaker, role,
    metadata, expiry and kind (an episodic summary merges only with another), whose vectors are at
    least ``merge_cosine`` close to the oldest one's. The first of a group is the one that stays
    (the oldest: its id is the one callers already hold).
    """
    buckets: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        key = near_exact_key(row.memory)
        if not key or row.kept_apart:
            continue  # nothing but punctuation or fillers, or restored after a merge: leave it alone
        meta = repr(sorted(row.metadata.items())) if row.metadata else ""
        group_key = (key, row.actor_id, row.role, meta, row.expires_at, row.episodic)
        buckets.setdefault(group_key, []).append(row)
    groups = []
    for bucket in buckets.values():
        if len(bucket) < 2:
            continue
        bucket.sort(key=lambda r: r.created_at)  # stable: among equals, the one stored first
        keep = bucket[0]
        group = [keep] + [r for r in bucket[1:] if _cos(keep.embedding, r.embedding) >= merge_cosine]
        if len(group) > 1:
            groups.append(group)
    groups.sort(key=lambda g: (g[0].created_at, g[0].id))
    return groups


@dataclass(frozen=True)
class Episode:
    """Memories that belong to one run or session, in time order, and the episode's key
    (``run:<id>``, or ``session:<first timestamp>`` when the scope has no run id)."""

    key: str
    rows: tuple[Row, ...]

    @property
    def start(self) -> str:
        return self.rows[0].timestamp

    @property
    def end(self) -> str:
        return self.rows[-1].timestamp


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def episodes(rows: Iterable[Row], run_id: str | None, now: datetime, s: ConsolidationSettings) -> list[Episode]:
    """The closed episodes of one exact scope that no summary covers yet.

    A scope with a run id is one episode (a run). Without one, memories split into sessions
    wherever ``episode_gap_minutes`` pass without one. An episode is *closed* once that long has
    passed since its last memory (a session still going on is left for a later pass); it is
    summarised when it holds ``min_episode`` memories or more not yet covered by a summary
    (summaries themselves are never summarised), cut into parts of ``max_episode``.
    """
    # Stable: memories said at the same time keep the order they were stored in.
    todo = sorted((r for r in rows if not r.episodic and not r.summarised), key=lambda r: r.timestamp)
    if not todo:
        return []
    gap = s.episode_gap_minutes * 60.0
    sessions: list[list[Row]] = []
    for row in todo:
        if sessions and (run_id is not None or _epoch(row.timestamp) - _epoch(sessions[-1][-1].timestamp) < gap):
            sessions[-1].append(row)
        else:
            sessions.append([row])
    out = []
    for session in sessions:
        if now.timestamp() - _epoch(session[-1].timestamp) < gap or len(session) < s.min_episode:
            continue
        for start in range(0, len(session), s.max_episode):
            part = session[start : start + s.max_episode]
            if len(part) < s.min_episode and start > 0:
                break  # a short tail waits: it is covered when its session grows, or never needed
            key = f"run:{run_id}" if run_id is not None else f"session:{part[0].timestamp}"
            out.append(Episode(key=key if start == 0 else f"{key}#{start // s.max_episode}", rows=tuple(part)))
    return out


def idle_days(last_active: str, now: datetime) -> float:
    """Days since ``last_active`` (an ISO time), 0 when in the future or unknown."""
    if not last_active:
        return 0.0
    return max(0.0, (now.timestamp() - _epoch(last_active)) / _SECONDS_PER_DAY)


def decay_factor(idle: float, stale_after_days: float, weight: float) -> float:
    """What share of its score a memory idle for ``idle`` days keeps: 1 until ``stale_after_days``,
    then falling linearly to ``1 - weight`` at twice that age, and no lower."""
    if weight <= 0 or stale_after_days <= 0 or idle <= stale_after_days:
        return 1.0
    return 1.0 - weight * min(1.0, (idle - stale_after_days) / stale_after_days)


def archive_plan(rows: Sequence[Row], now: datetime, s: ConsolidationSettings) -> list[tuple[Row, str]]:
    """Which of one exact scope's active memories to archive, and why (``"idle"`` or ``"cap"``).

    Idle: not retrieved nor changed for ``archive_after_days``. Cap: past ``max_memories``, the
    least retrieved go first, then the longest idle, then the oldest; a summary outlasts the
    memories it summarises at equal use.
    """
    out: list[tuple[Row, str]] = []
    left = list(rows)
    if s.archive_after_days is not None:
        idle = [r for r in left if idle_days(r.last_active or r.created_at, now) >= s.archive_after_days]
        out += [(r, "idle") for r in idle]
        gone = {r.id for r in idle}
        left = [r for r in left if r.id not in gone]
    if s.max_memories is not None and len(left) > s.max_memories:
        ranked = sorted(
            left, key=lambda r: (r.retrievals, r.episodic, r.last_active or r.created_at, r.created_at, r.id)
        )
        out += [(r, "cap") for r in ranked[: len(left) - s.max_memories]]
    return out
