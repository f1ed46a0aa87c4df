"""The LLM's part of consolidation (pure, no I/O): prompts, schemas and answer parsing for
judging similar memories (same fact: merge; newer contradicts older: supersede), summarising an
episode and writing a profile.

As in reconciliation (:mod:`memlane.core.reconcile`), the model sees memories under short local
ids (``m1``, ``m2``…) and whatever it answers is mapped back through the table built here: an id
it invents, or one from another group, is dropped, so a decision can only ever touch memories
the caller showed it, all from one exact scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memlane.core.consolidate import Row
from memlane.protocols import PromptMessage

__all__ = [
    "JUDGE_SCHEMA",
    "PROFILE_SCHEMA",
    "PROFILE_SECTIONS",
    "SUMMARY_SCHEMA",
    "Judgement",
    "judge_prompt",
    "parse_judgements",
    "parse_profile",
    "parse_summary",
    "profile_prompt",
    "summary_prompt",
]

PROFILE_SECTIONS = ("preferences", "people", "places", "work", "other")

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "merges": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}},
                    "text": {"type": "string"},
                },
                "required": ["ids", "text"],
                "additionalProperties": False,
            },
        },
        "supersedes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
                "required": ["old", "new"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["merges", "supersedes"],
    "additionalProperties": False,
}

_JUDGE_RULES = """\
You tidy a person's memory store. You get groups of stored memories that look alike (ids m1, \
m2, ..., each with the date it was true). Within one group only:
- merges: memories that state the same fact, in other words or with one adding harmless detail \
to the other. ids: all of them; text: one self-contained memory that keeps every detail they \
hold. Never merge memories about different people, things, times or amounts, or where one \
negates, limits or changes the other.
- supersedes: a newer memory that makes an older one no longer true (a new city, job, plan or \
preference; a cancelled plan). old: the outdated memory; new: the one that replaces it.
Leave everything else out; when unsure, leave it out. Use only ids shown.
Answer with JSON only: {"merges": [{"ids": ["m1", "m2"], "text": "..."}], "supersedes": \
[{"old": "m3", "new": "m4"}]}"""

SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}

_SUMMARY_RULES = """\
You write episodic memories. You get the memories of one conversation session or task run, in \
order, with dates. Write one short paragraph (at most five sentences) that says what happened in \
it: who took part, what was discussed, decided or done, and when. Name people, places and dates \
as they are given; keep it self-contained, in the third person, with no preamble.
Answer with JSON only: {"summary": "..."}"""

_ITEM = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}},
    "required": ["text", "sources"],
    "additionalProperties": False,
}
PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": "array", "items": _ITEM} for name in PROFILE_SECTIONS},
    "required": list(PROFILE_SECTIONS),
    "additionalProperties": False,
}

_PROFILE_RULES = """\
You keep a short profile of a user: their stable facts, for an assistant to read before every \
reply. You get what is known about them (ids m1, m2, ..., newest last). Write short entries in \
five sections: preferences (likes, dislikes, habits, how they want to be helped), people (who \
they know and how), places (where they live, come from, travel), work (job, employer, projects, \
studies), other (anything else stable: health they chose to share, pets, languages). Keep only \
what is still true and lasting, newest first when facts changed; no one-off events. Each entry \
names the memories it rests on in sources. At most eight entries per section.
Answer with JSON only: {"preferences": [{"text": "...", "sources": ["m1"]}], "people": [], \
"places": [], "work": [], "other": []}"""


@dataclass(frozen=True)
class Judgement:
    """What the model decided about shown memories: merges (real ids, kept first, and the merged
    text) and supersessions (old id, new id)."""

    merges: tuple[tuple[tuple[str, ...], str], ...]
    supersedes: tuple[tuple[str, str], ...]


def _line(local: str, row: Row) -> str:
    who = f"{row.actor_id}: " if row.actor_id else ""
    return f"{local}: {who}{row.memory} ({row.timestamp[:10]})"


def judge_prompt(groups: Sequence[Sequence[Row]]) -> tuple[list[PromptMessage], dict[str, Row], list[set[str]]]:
    """The prompt over ``groups`` of look-alike memories, the local-id table and each group's ids."""
    table: dict[str, Row] = {}
    members: list[set[str]] = []
    parts = []
    for g, group in enumerate(groups, start=1):
        ids = set()
        lines = []
        for row in group:
            local = f"m{len(table) + 1}"
            table[local] = row
            ids.add(local)
            lines.append(_line(local, row))
        members.append(ids)
        parts.append(f"Group {g}:\n" + "\n".join(lines))
    messages: list[PromptMessage] = [
        {"role": "system", "content": _JUDGE_RULES},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
    return messages, table, members


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def parse_judgements(data: Any, table: Mapping[str, Row], members: Sequence[set[str]]) -> Judgement:
    """Map the model's answer back to real ids, dropping whatever it got wrong.

    A merge keeps the ids of one group it names (two at least; the oldest stays, first); a memory
    named by two merges stays in the first only. A supersession needs two ids of one group, the
    new one not older than the old one. A memory merged away is not also superseded.
    """
    data = data if isinstance(data, dict) else {}
    group_of = {local: i for i, ids in enumerate(members) for local in ids}
    used: set[str] = set()
    merges = []
    for entry in data.get("merges") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str) or not entry["text"].strip():
            continue
        locals_ = [x for x in dict.fromkeys(_strings(entry.get("ids"))) if x in table and x not in used]
        groups = {group_of[x] for x in locals_}
        if len(locals_) < 2 or len(groups) != 1:
            continue
        # Prompt order is oldest first (stored first among equals): the first one stays.
        rows = [table[x] for x in sorted(locals_, key=lambda x: list(table).index(x))]
        used.update(locals_)
        merges.append((tuple(r.id for r in rows), " ".join(entry["text"].split())))
    supersedes = []
    gone: set[str] = set()
    for entry in data.get("supersedes") or []:
        if not isinstance(entry, dict):
            continue
        old, new = entry.get("old"), entry.get("new")
        if not (isinstance(old, str) and isinstance(new, str)) or old == new:
            continue
        if old not in table or new not in table or group_of[old] != group_of[new] or old in used or old in gone:
            continue
        if new in gone or table[new].timestamp < table[old].timestamp:
            continue
        gone.add(old)
        supersedes.append((table[old].id, table[new].id))
    return Judgement(merges=tuple(merges), supersedes=tuple(supersedes))


def summary_prompt(rows: Sequence[Row]) -> list[PromptMessage]:
    """The prompt that summarises one episode's memories."""
    lines = "\n".join(_line(f"{i}", row).split(": ", 1)[1] for i, row in enumerate(rows, start=1))
    return [{"role": "system", "content": _SUMMARY_RULES}, {"role": "user", "content": lines}]


def parse_summary(data: Any) -> str | None:
    """The summary text, or None when the answer holds none."""
    if isinstance(data, dict) and isinstance(data.get("summary"), str):
        text = " ".join(data["summary"].split())
        return text or None
    return None


def profile_prompt(rows: Sequence[Row]) -> tuple[list[PromptMessage], dict[str, Row]]:
    """The prompt that writes a profile from ``rows`` (oldest first), and the local-id table."""
    table = {f"m{i}": row for i, row in enumerate(rows, start=1)}
    lines = "\n".join(_line(local, row) for local, row in table.items())
    return [{"role": "system", "content": _PROFILE_RULES}, {"role": "user", "content": lines}], table


def parse_profile(data: Any, table: Mapping[str, Row]) -> dict[str, list[dict[str, Any]]]:
    """The profile's sections, each entry ``{"text", "sources": [real ids]}``; entries resting on
    no shown memory are dropped (a profile states nothing it cannot point to)."""
    data = data if isinstance(data, dict) else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for name in PROFILE_SECTIONS:
        entries = []
        for entry in data.get(name) or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                continue
            text = " ".join(entry["text"].split())
            sources = [table[x].id for x in dict.fromkeys(_strings(entry.get("sources"))) if x in table]
            if text and sources:
                entries.append({"text": text, "sources": sources})
        out[name] = entries[:8]
    return out
