"""Fact extraction: the prompt, its JSON schema, and reading the model's answer (pure, no I/O).

The prompt is written for small local models as much as for large hosted ones: short rules in
plain words, one worked example, a fixed JSON shape (which backends that support it also enforce
through the schema), and the application's own rules last, where they take precedence. Its fixed
part stays the same across calls, so backends with prompt caching reuse it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memlane.core.graph import ENTITY_TYPES, EntityMention, RelationClaim
from memlane.core.inputs import ChatMessage
from memlane.protocols import PromptMessage

__all__ = [
    "FACTS_SCHEMA",
    "PLAIN_FACTS_SCHEMA",
    "PROCEDURE_SCHEMA",
    "Fact",
    "Steering",
    "extraction_prompt",
    "facts_schema",
    "parse_facts",
    "parse_procedure",
    "procedure_prompt",
    "render_conversation",
    "salvage_facts",
]

MAX_FACT_CHARS = 2_000
MAX_NAME_CHARS = 200  # an entity name or predicate longer than this is not one
MAX_ITEMS = 32  # entities, and relations, kept per fact
_FACTS_START = re.compile(r'"facts"\s*:\s*\[')
_SEPARATOR = re.compile(r"\s*,?\s*")

_ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "type": {"type": "string", "enum": list(ENTITY_TYPES)}},
    "required": ["name", "type"],
    "additionalProperties": False,
}
_RELATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subject": {"type": "string"},
        "predicate": {"type": "string"},
        "object": {"type": "string"},
        "exclusive": {"type": "boolean"},
    },
    "required": ["subject", "predicate", "object", "exclusive"],
    "additionalProperties": False,
}
# Every property required (empty arrays allowed): OpenAI's strict structured output needs it.
FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "from": {"type": "array", "items": {"type": "integer"}},
                    "entities": {"type": "array", "items": _ENTITY_SCHEMA},
                    "relations": {"type": "array", "items": _RELATION_SCHEMA},
                },
                "required": ["text", "from", "entities", "relations"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}

# Without graph extraction (config ``extraction.graph: false``): the facts alone, as before entities
# and relations joined them; a small local model answers this shorter shape far faster.
PLAIN_FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "from": {"type": "array", "items": {"type": "integer"}}},
                "required": ["text", "from"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}

_EXTRACT_RULES = """\
You pick out what is worth remembering from a conversation between a user and an AI assistant, \
so that a later conversation can use it.

Write each memory as one short statement that makes sense on its own months later: say who it is \
about ("The user", or the person's name when known), and replace pronouns and vague references \
with what they mean.

Remember:
- facts about the user and the people, pets, places and things in their life: identity, family \
and friends, home, work, studies, health, plans, events, preferences, opinions, goals and habits;
- what the assistant did or promised for the user (booked, bought, sent, scheduled, reminded) and \
decisions the two agreed on;
- changes and cancellations, stated as such ("moved from Berlin to Amsterdam", "cancelled the \
trip to Rome").

Do not remember greetings, thanks, small talk, questions that reveal nothing about the user, \
general knowledge, or advice the user did not take up. An exchange with nothing worth keeping \
gives no memories.

Each message carries its date. Turn relative times ("yesterday", "last Tuesday", "next month", \
"in two weeks") into dates counted from the date of the message they appear in, e.g. "on \
2026-02-28" or "in April 2026". Write the memories in the language of the conversation.

List in "from" the numbers of the messages each memory comes from.

For each memory also list:
- "entities": the people, organizations, places, projects, products and events it names, with \
"name" as written and "type" one of person, organization, place, project, product, event, other. \
The user is "user". No pronouns.
- "relations" between those entities: "subject" and "object" (names as listed), "predicate" (a \
short snake_case verb: manages, reports_to, works_on, lives_in, leads, owns) and "exclusive" \
(true when the subject has one such object at a time, as with reports_to or lives_in).
Lists may be empty.

Answer with JSON only, in this shape: {"facts": [{"text": "...", "from": [1], "entities": [], \
"relations": []}]}. With nothing to remember, answer {"facts": []}.

Example conversation:
[1] user (Monday 2026-03-02): Hi! We finally adopted a dog last Saturday, a beagle called Max.
[2] assistant (Monday 2026-03-02): Congratulations! I've set a reminder for Max's vet visit next Friday.
[3] user (Monday 2026-03-02): thanks, you're the best
Answer:
{"facts": [{"text": "The user adopted a beagle named Max on 2026-02-28.", "from": [1], "entities": \
[{"name": "user", "type": "person"}, {"name": "Max", "type": "other"}], "relations": [{"subject": \
"user", "predicate": "owns", "object": "Max", "exclusive": false}]}, {"text": "The assistant set a \
reminder for Max's vet visit on 2026-03-06.", "from": [2], "entities": [{"name": "Max", "type": \
"other"}], "relations": []}]}"""


# The same rules without entities and relations (``extraction.graph: false``), built from the full
# ones so the two never drift apart: the graph block, the answer shape and the example's answer differ.
_HEAD, _GRAPH_AND_TAIL = _EXTRACT_RULES.split("For each memory also list:", 1)
_EXAMPLE = _GRAPH_AND_TAIL.split("Example conversation:\n", 1)[1].split("\nAnswer:", 1)[0]
_PLAIN_RULES = (
    _HEAD + 'Answer with JSON only, in this shape: {"facts": [{"text": "...", "from": [1]}]}. With nothing to '
    'remember, answer {"facts": []}.\n\nExample conversation:\n'
    + _EXAMPLE
    + '\nAnswer:\n{"facts": [{"text": "The user adopted a beagle named Max on 2026-02-28.", "from": [1]}, '
    '{"text": "The assistant set a reminder for Max\'s vet visit on 2026-03-06.", "from": [2]}]}'
)


def facts_schema(graph: bool = True) -> dict[str, Any]:
    """The extraction answer's JSON schema, with each fact's entities and relations or without."""
    return FACTS_SCHEMA if graph else PLAIN_FACTS_SCHEMA


@dataclass(frozen=True)
class Steering:
    """What the application asks extraction to focus on or avoid (config plus per-call)."""

    instructions: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()

    def render(self) -> str:
        """The rules as prompt text ("" when there are none)."""
        lines = [f"- {text.strip()}" for text in self.instructions if text.strip()]
        if self.includes:
            lines.append("- Only remember things about: " + "; ".join(self.includes) + ".")
        if self.excludes:
            lines.append("- Never remember anything about: " + "; ".join(self.excludes) + ".")
        if not lines:
            return ""
        return "\n\nRules from the application (they take precedence over everything above):\n" + "\n".join(lines)


@dataclass(frozen=True)
class Fact:
    """One extracted fact, the 0-based indices of the messages it came from, the entities it
    names and the relations it states (names as written; the store resolves them)."""

    text: str
    sources: tuple[int, ...] = field(default_factory=tuple)
    entities: tuple[EntityMention, ...] = ()
    relations: tuple[RelationClaim, ...] = ()


def _when(dt: datetime) -> str:
    return f"{dt:%A %Y-%m-%d}"


def render_conversation(messages: Sequence[ChatMessage], when: datetime) -> str:
    """Number and date the messages as the prompts show them: ``[1] user Alice (Monday 2026-03-02): …``."""
    lines = []
    for i, msg in enumerate(messages, start=1):
        who = f"{msg.role} {msg.name}" if msg.name else msg.role
        lines.append(f"[{i}] {who} ({_when(when)}): {msg.content.strip()}")
    return "\n".join(lines)


def extraction_prompt(
    messages: Sequence[ChatMessage], when: datetime, steering: Steering, *, graph: bool = True
) -> list[PromptMessage]:
    """The extraction prompt for ``messages`` dated ``when``; ``graph=False`` asks for the facts alone."""
    rules = _EXTRACT_RULES if graph else _PLAIN_RULES
    return [
        PromptMessage(role="system", content=rules + steering.render()),
        PromptMessage(role="user", content="Conversation:\n" + render_conversation(messages, when) + "\nAnswer:"),
    ]


def parse_facts(obj: Any, n_messages: int) -> list[Fact]:
    """Validate the model's answer into facts; message numbers outside 1..n are dropped.

    A fact citing no valid message is attributed to every message of the call (provenance is
    then coarse, never missing). Entities and relations are optional: a missing list is empty,
    a malformed entity or relation is dropped (never its fact), an unknown type is None, and a
    relation's subject and object join the fact's entities when the model left them out.

    Raises:
        ValueError: the answer is not ``{"facts": [...]}`` with text in every item.
    """
    if isinstance(obj, list):  # a bare list of facts: small models often skip the wrapper
        if not obj:  # "[]" may be a fact's empty "entities" or "relations" inside a cut-off answer
            raise ValueError('expected {"facts": [...]}, got a bare empty list')
        obj = {"facts": obj}
    if not isinstance(obj, dict) or not isinstance(obj.get("facts"), list):
        raise ValueError('expected an object with a "facts" list, like {"facts": [{"text": "...", "from": [1]}]}')
    facts: list[Fact] = []
    seen: set[str] = set()
    for item in obj["facts"]:
        if isinstance(item, str):
            item = {"text": item, "from": []}
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ValueError('every item of "facts" must be an object with a "text" string')
        text = " ".join(item["text"].split())[:MAX_FACT_CHARS]
        if not text or text.casefold() in seen:
            continue
        seen.add(text.casefold())
        cited = item.get("from")
        numbers = cited if isinstance(cited, list) else [cited]
        sources = tuple(sorted({n - 1 for n in numbers if isinstance(n, int) and 1 <= n <= n_messages}))
        relations = _relations(item.get("relations"))
        entities = _entities(item.get("entities"), relations)
        facts.append(Fact(text, sources or tuple(range(n_messages)), entities, relations))
    return facts


def salvage_facts(text: str, n_messages: int, *, looping_only: bool = False) -> list[Fact]:
    """The complete facts at the start of an answer cut off at the token limit (``[]`` if none).

    A small model can repeat itself until the limit: what it wrote before is still usable, and a
    larger budget would not help. With ``looping_only``, facts are kept only from such an answer
    (one that states a fact twice).
    """
    start = _FACTS_START.search(text)
    if start is None:
        return []
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = start.end()
    while True:
        gap = _SEPARATOR.match(text, pos)
        pos = gap.end() if gap else pos
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        items.append(item)
    usable = [i for i in items if isinstance(i, dict) and isinstance(i.get("text"), str)]
    facts = parse_facts({"facts": usable}, n_messages) if usable else []
    return facts if len(facts) < len(usable) or not looping_only else []


def _name(value: Any) -> str:
    """A name as the model gave it, whitespace collapsed ("" when unusable)."""
    if not isinstance(value, str):
        return ""
    name = " ".join(value.split())
    return name if len(name) <= MAX_NAME_CHARS else ""


def _entities(value: Any, relations: tuple[RelationClaim, ...]) -> tuple[EntityMention, ...]:
    out: dict[str, EntityMention] = {}
    for item in value if isinstance(value, list) else []:
        entry = {"name": item} if isinstance(item, str) else item
        name = _name(entry.get("name")) if isinstance(entry, dict) else ""
        if name and name.casefold() not in out:
            kind = entry.get("type")
            kind = kind.strip().casefold() if isinstance(kind, str) else None
            out[name.casefold()] = EntityMention(name, kind if kind in ENTITY_TYPES else None)
    for claim in relations:  # a relation names its ends: they are entities too
        for name in (claim.subject, claim.object):
            out.setdefault(name.casefold(), EntityMention(name))
    return tuple(out.values())[:MAX_ITEMS]


def _relations(value: Any) -> tuple[RelationClaim, ...]:
    out: dict[tuple[str, str, str], RelationClaim] = {}
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        subject, predicate, obj = _name(item.get("subject")), _name(item.get("predicate")), _name(item.get("object"))
        if not (subject and predicate and obj) or subject.casefold() == obj.casefold():
            continue
        key = (subject.casefold(), predicate.casefold(), obj.casefold())
        out.setdefault(key, RelationClaim(subject, predicate, obj, item.get("exclusive") is True))
    return tuple(out.values())[:MAX_ITEMS]


PROCEDURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}

_PROCEDURE_RULES = """\
You write an agent's procedural memory: a summary of one of its runs that the agent can reread \
before a similar task, so it repeats what worked and avoids what failed.

From the run below, write a compact summary with these parts, as plain text lines:
Task: what the agent was asked to do.
Steps: the numbered actions it took, each with its key input and its outcome (include exact \
names, paths, commands, parameters and error messages where they matter).
Result: how the run ended.
Lessons: rules learned for next time (what to do, what to avoid), if any.

Keep facts exact and leave out chatter. Answer with JSON only: {"summary": "..."}."""


def procedure_prompt(messages: Sequence[ChatMessage], when: datetime, steering: Steering) -> list[PromptMessage]:
    """The prompt that condenses an agent's run into one procedural memory."""
    return [
        PromptMessage(role="system", content=_PROCEDURE_RULES + steering.render()),
        PromptMessage(role="user", content="Run:\n" + render_conversation(messages, when) + "\nAnswer:"),
    ]


def parse_procedure(obj: Any) -> str:
    """The summary text.

    Raises:
        ValueError: no non-empty ``summary`` string.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("summary"), str) or not obj["summary"].strip():
        raise ValueError('expected an object with a non-empty "summary" string')
    return str(obj["summary"]).strip()
