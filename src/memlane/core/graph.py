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

Without an LLM (:func:`detect_names`), a memory's entities are its capitalised names and it states
no relations. Queries name entities the same way (:func:`query_entities`). Traversal
(:func:`relations_of`, :func:`neighbours`, :func:`path`) walks the relations that hold at a time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from memlane.core.text import STOP_WORDS

__all__ = [
    "ENTITY_TYPES",
    "Entity",
    "EntityMention",
    "Relation",
    "RelationClaim",
    "RelationPlan",
    "Resolution",
    "detect_names",
    "entity_candidates",
    "find_entity",
    "normalise_name",
    "normalise_predicate",
    "plan_relations",
    "query_entities",
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


@functools.lru_cache(maxsize=1 << 16)  # every write compares the scope's names: normalise each once
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
    # A part of a full name ("Alice" of "Alice Chen"), or a fuller form of a short one, is judged
    # against canonical names only: "Alice" as an alias of "Alice Chen" must not make "Alice Wong" fit.
    words = key.split()
    partial = [
        e
        for e in pool
        if _types_agree(e.type, mention.type)
        and (_is_affix(words, (full := normalise_name(e.name).split())) or _is_affix(full, words))
    ]
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


# -- names without an LLM -----------------------------------------------------------------------

# Capitalised words that are rarely names: they start sentences, or name days and months.
_NOT_NAMES = STOP_WORDS | {
    "yesterday", "today", "tonight", "tomorrow", "last", "next", "please", "sure", "great", "cool", "nice",
    "maybe", "also", "anyway", "actually", "congrats", "congratulations", "sorry", "wait", "hmm", "lol", "wow",
    "awesome", "good", "bad", "glad", "happy", "love", "thanks", "user", "assistant",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
    "march", "april", "june", "july", "august", "september", "october", "november", "december",
}  # fmt: skip
# Lower-case words that sit inside a name ("Bank of America", "Ludwig van Beethoven").
_CONNECTORS = {"of", "de", "van", "von", "da", "del", "der", "di", "la", "le", "du"}
# A dot after these ends an abbreviation, not a sentence ("Dr. Alice Chen").
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt"}
_NOT_NAMES |= {"mr", "mrs", "ms", "dr", "prof"}
_NAME_WORD = re.compile(r"[^\W\d_](?:[\w'’-]*[^\W_])?", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?:;\n]")
_MAX_NAME_WORDS = 6
_MAX_MENTIONS = 32


@dataclass
class _Run:
    """Consecutive capitalised words; ``at_start``: the first begins a sentence."""

    words: list[str]
    at_start: bool
    possessive: bool = False


def _bare(word: str) -> tuple[str, bool]:
    """The word without a possessive ``'s``; whether it had one."""
    for suffix in ("'s", "’s"):
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)], True
    return word, False


def _runs(text: str) -> list[_Run]:
    """Capitalised word sequences (connectors allowed inside), broken by punctuation and non-name words."""
    out: list[_Run] = []
    run: _Run | None = None
    connectors: list[str] = []
    end, prev = 0, ""
    for match in _NAME_WORD.finditer(text):
        gap = text[end : match.start()]
        end = match.end()
        sentence_start = prev == "" or (bool(_SENTENCE_END.search(gap)) and prev.casefold() not in _ABBREVIATIONS)
        if gap.strip():  # punctuation between two words ends a run
            run, connectors = None, []
        word, possessive = _bare(match[0])
        prev = word
        folded = word.casefold()
        if run is not None and folded in _CONNECTORS and not word[:1].isupper():
            connectors.append(word)
            continue
        if not word[:1].isupper() or folded in _NOT_NAMES:
            run, connectors = None, []
            continue
        if run is None:
            run = _Run([word], sentence_start)
            out.append(run)
        else:
            run.words += [*connectors, word]
        connectors = []
        if possessive:  # "Alice's manager": the name ends at the possessive
            run.possessive = True
            run = None
    return out


def detect_names(text: str) -> list[EntityMention]:
    """Names in ``text`` found without an LLM (type unknown): capitalised word sequences.

    A single capitalised word that starts a sentence counts only when it is clearly a name: the
    text also capitalises it mid-sentence, it is possessive ("Alice's"), or it is an acronym.
    Stop words, days, months and common sentence openers never count; a possessive ``'s`` is
    dropped. Each name once (by :func:`normalise_name`), in order of first use.
    """
    runs = _runs(text)
    mid = {r.words[0].casefold() for r in runs if not r.at_start} | {w.casefold() for r in runs for w in r.words[1:]}
    found: dict[str, EntityMention] = {}
    for run in runs:
        first = run.words[0]
        clear = run.possessive or first.casefold() in mid or (first.isupper() and len(first) > 1)
        if (run.at_start and len(run.words) == 1 and not clear) or len(run.words) > _MAX_NAME_WORDS:
            continue
        name = " ".join(run.words)
        key = normalise_name(name)
        if key and key not in found:
            found[key] = EntityMention(name)
    return list(found.values())[:_MAX_MENTIONS]


def find_entity(name: str, entities: Sequence[Entity], kind: str | None = None) -> Entity | None:
    """The entity ``name`` refers to, by the rules of :func:`resolve`, or None (unknown or ambiguous)."""
    key = normalise_name(name)
    return _match(EntityMention(name, kind), key, entities) if key else None


def entity_candidates(name: str, entities: Sequence[Entity]) -> list[Entity]:
    """Every entity that could be meant by ``name`` (for a message when :func:`find_entity` finds none)."""
    key = normalise_name(name)
    if not key:
        return []
    words = key.split()
    return [e for e in entities if key in e.names() or any(_is_affix(words, n.split()) for n in e.names())]


def query_entities(text: str, entities: Sequence[Entity]) -> list[Entity]:
    """The entities of the scope a query names, in order of first mention.

    A capitalised word sequence (sentence starts included: "Alice's directs?") resolves as in
    :func:`find_entity`; a known name or alias of two words or more also counts when written in
    lower case ("alice chen"). A one-word name must be capitalised: "will it rain?" is not about
    Will.
    """
    found: dict[str, Entity] = {}
    for run in _runs(text):
        hit = find_entity(" ".join(run.words), entities)
        if hit is not None:
            found.setdefault(hit.id, hit)
    words = [w.strip(".'").casefold().removesuffix("'s") for w in _TOKEN.findall(text)]
    padded = f" {' '.join(words)} "
    for entity in entities:
        names = [n for n in entity.names() if " " in n]
        if entity.id not in found and any(f" {n} " in padded for n in names):
            found[entity.id] = entity
    return list(found.values())
