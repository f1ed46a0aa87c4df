"""Reconciliation: deciding what new facts do to the memories a scope already holds (pure, no I/O).

The model sees the scope's similar memories under short local ids (``m1``, ``m2``…) and the new
facts as ``f1``, ``f2``…; it never sees a real memory id, and whatever it answers is mapped back
through the table built here. An id it invents, or one from another list, turns the decision into
a plain ADD: a fact is never dropped because the model misnamed something, and nothing outside
the shown candidates (all from the caller's own scope) can be touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from memlane.protocols import PromptMessage

__all__ = ["DECISIONS_SCHEMA", "Decision", "Known", "parse_decisions", "reconcile_prompt"]

Action = Literal["ADD", "UPDATE", "DELETE", "NONE"]
_ACTIONS = ("ADD", "UPDATE", "DELETE", "NONE")

DECISIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "actions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fact": {"type": "string"},
                    "action": {"type": "string", "enum": list(_ACTIONS)},
                    "target": {"type": "string"},
                    "text": {"type": "string"},
                },
                "required": ["fact", "action", "target", "text"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["actions"],
    "additionalProperties": False,
}

_RECONCILE_RULES = """\
You keep a memory store correct as new facts arrive. You get the stored memories that may be \
related (ids m1, m2, ...) and the new facts (ids f1, f2, ...). Choose one action per new fact:
- NONE: a stored memory already says it (same meaning, even in other words). target: that memory.
- UPDATE: it is about the same thing as a stored memory but changes or adds to it (a new city, \
job or preference, a date fixed, more detail). target: that memory; text: the memory rewritten \
to hold what is true now, self-contained (keep useful context, e.g. "moved from Berlin to Amsterdam in May 2026").
- DELETE: it shows a stored memory is no longer true and replaces it with nothing (a cancelled \
plan, "sold the car", "no longer vegetarian"). target: that memory.
- ADD: anything else, i.e. new information.
A fact about a different person or thing is ADD, never NONE or UPDATE of a memory that merely \
looks similar. When unsure, choose ADD. Use only ids from the lists; "target" and "text" are "" \
when they do not apply.
Answer with JSON only: {"actions": [{"fact": "f1", "action": "ADD", "target": "", "text": ""}]}, \
one entry per new fact.

Example:
Stored memories:
m1: The user lives in Berlin. (2025-11-02)
m2: The user plans a trip to Rome in June 2026. (2026-01-10)
m3: The user likes jazz. (2026-01-10)
New facts:
f1: The user moved to Amsterdam in May 2026.
f2: The user cancelled the June trip to Rome.
f3: The user enjoys jazz music.
f4: The user's sister lives in Berlin.
Answer:
{"actions": [{"fact": "f1", "action": "UPDATE", "target": "m1", "text": "The user moved from Berlin to \
Amsterdam in May 2026."}, {"fact": "f2", "action": "DELETE", "target": "m2", "text": ""}, {"fact": "f3", \
"action": "NONE", "target": "m3", "text": ""}, {"fact": "f4", "action": "ADD", "target": "", "text": ""}]}"""


@dataclass(frozen=True)
class Known:
    """A stored memory shown to the model: its local id, real id, text, date and content hash."""

    local: str
    memory_id: str
    text: str
    date: str
    hash: str


@dataclass(frozen=True)
class Decision:
    """What one new fact does: ``target`` is a real memory id (never the model's string)."""

    fact: int
    action: Action
    target: Known | None = None
    text: str | None = None


def reconcile_prompt(facts: Sequence[str], known: Sequence[Known]) -> list[PromptMessage]:
    """The reconciliation prompt: related memories as m1.., the new facts as f1..."""
    stored = "\n".join(f"{k.local}: {k.text} ({k.date})" for k in known)
    new = "\n".join(f"f{i}: {text}" for i, text in enumerate(facts, start=1))
    return [
        PromptMessage(role="system", content=_RECONCILE_RULES),
        PromptMessage(role="user", content=f"Stored memories:\n{stored}\nNew facts:\n{new}\nAnswer:"),
    ]


def parse_decisions(obj: Any, n_facts: int, known: Sequence[Known]) -> list[Decision]:
    """One decision per fact, in fact order, mapped back through ``known``.

    Tolerant of what models get wrong without losing anything: a fact the answer skips, an
    unknown action, or a target that is not one of ``known``'s local ids becomes ADD; a second
    decision for the same fact, or a second change to the same memory, also becomes ADD (the
    first one wins); UPDATE without text uses the fact's own words (the caller fills it in).

    Raises:
        ValueError: the answer is not ``{"actions": [...]}`` of objects (worth a repair prompt).
    """
    if isinstance(obj, list):
        obj = {"actions": obj}
    if not isinstance(obj, dict) or not isinstance(obj.get("actions"), list):
        raise ValueError('expected an object with an "actions" list, like {"actions": [{"fact": "f1", ...}]}')
    by_local = {k.local.casefold(): k for k in known}
    chosen: dict[int, Decision] = {}
    touched: set[str] = set()
    for item in obj["actions"]:
        if not isinstance(item, dict):
            raise ValueError('every item of "actions" must be an object with "fact" and "action"')
        fact = _fact_number(item.get("fact"), n_facts)
        if fact is None or fact in chosen:
            continue
        action = str(item.get("action", "")).strip().upper()
        target = by_local.get(str(item.get("target") or "").strip().casefold())
        if action not in _ACTIONS or action == "ADD" or target is None or target.memory_id in touched:
            chosen[fact] = Decision(fact, "ADD")
            continue
        if action != "NONE":
            touched.add(target.memory_id)
        text = item.get("text")
        clean = " ".join(text.split()) if isinstance(text, str) and text.strip() else None
        chosen[fact] = Decision(fact, action, target, clean if action == "UPDATE" else None)  # type: ignore[arg-type]
    return [chosen.get(i, Decision(i, "ADD")) for i in range(n_facts)]


def _fact_number(value: Any, n_facts: int) -> int | None:
    """``"f2"`` (or ``2``/``"2"``) -> 1, when it names one of the facts."""
    raw = str(value).strip().lower().removeprefix("f") if value is not None else ""
    if not raw.isdigit():
        return None
    number = int(raw) - 1
    return number if 0 <= number < n_facts else None
