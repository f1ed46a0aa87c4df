"""Entities and relations: the graph side of memory (pure logic, no I/O).

A memory can name entities (people, organisations, places, projects, ...) and state relations
between them ("Alice manages Bob"). Both live in the same store as the memories, in the same
transaction as the memory they came from, scoped exactly like memories: an entity never merges
across scopes. This module holds the records and the decisions; the stores call it inside their
write transaction (with the scope locked), so two racing adds that name "Alice" end with one
entity.

Resolution (:func:`resolve`): a mention joins an existing entity of its scope when

1. its normalised name equals the entity's name or one of its aliases (``"my manager Alice"``,
   ``"Dr. Alice"`` and ``"alice"`` all normalise to ``"alice"``), or
2. it is a name and the entity's full name starts or ends with it token by token ("Alice" and
   "Alice Chen"), and exactly one entity of the scope fits (two Alices: a new, separate entity,
   never a guess).

Types must agree unless one side's type is unknown. A longer name becomes the canonical one and
the shorter is kept as an alias.

Relations (:func:`plan_relations`): a claim ``(subject, predicate, object)`` that an open relation
already states is not repeated; an *exclusive* claim ("Bob reports to Carol": a subject has one
object for this predicate at a time) closes the open relations with the same subject and predicate
and another object, at the time the new one starts. Closed relations stay, with ``valid_until``,
for history and ``as_of``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "ENTITY_TYPES",
    "Entity",
    "EntityMention",
    "Relation",
    "RelationClaim",
    "RelationPlan",
    "Resolution",
    "normalise_name",
    "normalise_predicate",
    "plan_relations",
    "resolve",
]

ENTITY_TYPES = ("person", "organization", "place", "project", "product", "event", "other")

# Words that introduce a name without being part of it: "my manager Alice", "our client Acme".
_LEADING = {
    "my", "our", "your", "his", "her", "their", "the", "a", "an", "mr", "mrs", "ms", "miss", "dr", "prof",
    "sir", "madam", "dear", "uncle", "aunt", "auntie", "grandma", "grandpa",
}  # fmt: skip
# Role words that may sit between a determiner and the name ("my manager Alice", "our CTO Bo").
_ROLES = {
    "manager", "boss", "colleague", "coworker", "friend", "partner", "wife", "husband", "son", "daughter",
    "brother", "sister", "mother", "father", "mom", "mum", "dad", "cousin", "neighbour", "neighbor", "client",
    "customer", "lead", "ceo", "cto", "cfo", "director", "teacher", "doctor", "dog", "cat", "team", "company",
    "report", "mentor", "roommate", "girlfriend", "boyfriend", "fiance", "fiancee", "coach", "landlord",
}  # fmt: skip
_TOKEN = re.compile(r"[\w][\w'.-]*", re.UNICODE)


@dataclass(frozen=True)
class EntityMention:
    """A name as a memory states it, before resolution; ``type`` None when unknown."""

    name: str
    type: str | None = None


@dataclass(frozen=True)
class RelationClaim:
    """``subject predicate object`` as a memory states it, by names; ``exclusive``: the subject
    has one object for this predicate at a time (lives_in, reports_to), so a new one ends the old."""

    subject: str
    predicate: str
    object: str
    exclusive: bool = False


@dataclass(frozen=True)
class Entity:
    """An entity of one scope: a canonical ``name``, a ``type`` and the other names it goes by."""

    id: str
    name: str
    type: str | None
    aliases: tuple[str, ...]
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    created_at: str
    updated_at: str

    def names(self) -> set[str]:
        """Every normalised name it answers to."""
        return {normalise_name(n) for n in (self.name, *self.aliases)} - {""}


@dataclass(frozen=True)
class Relation:
    """``subject_id predicate object_id``, true from ``valid_from`` until ``valid_until`` (None: still true).

    ``memory_id`` is the memory that stated it (its sources are the messages).
    """

    id: str
    subject_id: str
    predicate: str
    object_id: str
    valid_from: str
    valid_until: str | None
    memory_id: str | None
    user_id: str | None
    agent_id: str | None
    run_id: str | None
    created_at: str

    def open_at(self, at: str | None) -> bool:
        """True at ``at`` (an ISO time; None: now, i.e. not closed)."""
        if at is None:
            return self.valid_until is None
        return self.valid_from <= at and (self.valid_until is None or self.valid_until > at)


@dataclass
class Resolution:
    """What resolving a batch of mentions decided.

    ``ids[i]`` is the entity of ``mentions[i]``; ``created`` are new entities, ``updated`` existing
    ones whose name or aliases grew (write them back).
    """

    ids: list[str] = field(default_factory=list)
    created: list[Entity] = field(default_factory=list)
    updated: list[Entity] = field(default_factory=list)


@dataclass
class RelationPlan:
    """What a batch of claims writes: new relations, and ``(relation id, valid_until)`` closures."""

    new: list[Relation] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)


def normalise_name(name: str) -> str:
    """A name as compared: casefolded words, leading determiners, titles and role words dropped.

    ``"my manager Alice"`` -> ``"alice"``; ``"Dr. Alice  Chen"`` -> ``"alice chen"``; a phrase made
    only of such words (``"my manager"``) keeps them, since it is then the whole name.
    """
    words = [w.strip(".'").casefold() for w in _TOKEN.findall(name)]
    words = [w.removesuffix("'s") for w in words if w]
    i = 0
    while i < len(words) - 1 and (words[i] in _LEADING or words[i] in _ROLES):
        i += 1
    return " ".join(words[i:])


def normalise_predicate(predicate: str) -> str:
    """``"Reports to"`` -> ``"reports_to"``: lower-case words joined by underscores."""
    return "_".join(re.findall(r"[a-z0-9]+", predicate.casefold()))


def _types_agree(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b or "other" in (a, b)


def _is_affix(short: list[str], long: list[str]) -> bool:
    """``short`` is a proper prefix or suffix of ``long``, word by word ("alice" of "alice chen")."""
    n = len(short)
    return 0 < n < len(long) and (long[:n] == short or long[-n:] == short)


def _match(mention: EntityMention, key: str, pool: Sequence[Entity]) -> Entity | None:
    exact = [e for e in pool if key in e.names() and _types_agree(e.type, mention.type)]
    if len(exact) == 1:
        return exact[0]
    if exact:  # two entities answer to the same name: the canonical-name one, else none
        named = [e for e in exact if normalise_name(e.name) == key]
        return named[0] if len(named) == 1 else None
    words = key.split()
    partial = [
        e
        for e in pool
        if _types_agree(e.type, mention.type) and any(_is_affix(words, n.split()) or _is_affix(n.split(), words)
                                                     for n in e.names())
    ]  # fmt: skip
    return partial[0] if len(partial) == 1 else None


def resolve(
    mentions: Sequence[EntityMention],
    existing: Sequence[Entity],
    *,
    scope: tuple[str | None, str | None, str | None],
    now: str,
    new_id: Callable[[], str],
) -> Resolution:
    """Map each mention to an entity of the scope, creating or growing entities as needed.

    Args:
        mentions: the names, in order (a mention that normalises to nothing gets id "").
        existing: the scope's entities as they are now (under the scope's write lock).
        scope: ``(user_id, agent_id, run_id)`` of new entities.
        now: the ISO time of the write.
        new_id: makes an id for a new entity.
    Returns:
        The :class:`Resolution`; mentions within the batch resolve against each other too.
    """
    out = Resolution()
    pool: dict[str, Entity] = {e.id: e for e in existing}
    touched: set[str] = set()
    fresh: set[str] = set()
    for mention in mentions:
        key = normalise_name(mention.name)
        if not key:
            out.ids.append("")
            continue
        found = _match(mention, key, list(pool.values()))
        if found is None:
            name = " ".join(mention.name.split())
            found = Entity(new_id(), name, mention.type, (), *scope, now, now)
            fresh.add(found.id)
        else:
            found = _grow(found, mention, key, now)
            if found is not pool[found.id]:
                touched.add(found.id)
        pool[found.id] = found
        out.ids.append(found.id)
    out.created = [pool[i] for i in pool if i in fresh]
    out.updated = [pool[i] for i in pool if i in touched and i not in fresh]
    return out


def _grow(entity: Entity, mention: EntityMention, key: str, now: str) -> Entity:
    """The entity with the mention's name added: as canonical when longer, else as an alias; its type filled in."""
    name = " ".join(mention.name.split())
    kind = entity.type if entity.type not in (None, "other") else (mention.type or entity.type)
    if key in entity.names():
        return entity if kind == entity.type else replace(entity, type=kind, updated_at=now)
    if len(key.split()) > len(normalise_name(entity.name).split()):
        aliases = (*entity.aliases, entity.name)
        return replace(entity, name=name, aliases=aliases, type=kind, updated_at=now)
    return replace(entity, aliases=(*entity.aliases, name), type=kind, updated_at=now)


def plan_relations(
    claims: Iterable[tuple[str, str, str, bool]],
    open_relations: Sequence[Relation],
    *,
    memory_id: str | None,
    valid_from: str,
    scope: tuple[str | None, str | None, str | None],
    now: str,
    new_id: Callable[[], str],
) -> RelationPlan:
    """New relations for resolved claims ``(subject_id, predicate, object_id, exclusive)``.

    Args:
        claims: resolved claims; the predicate is normalised here; a claim whose subject is its
            object, or with an empty part, is skipped.
        open_relations: the scope's relations that are still true (``valid_until`` None).
        memory_id: the memory that states them.
        valid_from: when they became true (the message's timestamp).
        scope, now, new_id: as in :func:`resolve`.
    Returns:
        The :class:`RelationPlan`. An exclusive claim closes the subject's other open relations of
        the same predicate at ``valid_from`` (never before they started).
    """
    plan = RelationPlan()
    current = list(open_relations)
    for subject, predicate, obj, exclusive in claims:
        pred = normalise_predicate(predicate)
        if not (subject and obj and pred) or subject == obj:
            continue
        if any(r.subject_id == subject and r.predicate == pred and r.object_id == obj for r in current):
            continue
        if exclusive:
            for r in current:
                if r.subject_id == subject and r.predicate == pred and r.object_id != obj:
                    plan.closed.append((r.id, max(valid_from, r.valid_from)))
            closed = {rid for rid, _ in plan.closed}
            current = [r for r in current if r.id not in closed]
        relation = Relation(new_id(), subject, pred, obj, valid_from, None, memory_id, *scope, now)
        plan.new.append(relation)
        current.append(relation)
    return plan
