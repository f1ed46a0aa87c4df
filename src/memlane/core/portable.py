"""The portable record format of ``Memory.export_records`` / ``import_records`` (JSON lines), format 1.

An export is a stream of JSON objects, one per line, that loads into another store (another
file, another backend, another embedder) with nothing lost: past versions, expired memories,
provenance, conversation order, the history of deleted memories and every timestamp travel.

Line 1, the header (optional on import; a ``format`` other than 1 is refused)::

    {"type": "memlane-export", "format": 1, "embedder": "<model id>", "dimension": 384,
     "exported_at": "2026-05-04T09:30:00.000000+00:00"}

Then one ``memory`` record per stored row, in row order (so a message's ``prev_id`` comes
before it), current memories, past versions and expired memories alike::

    {"type": "memory", "id": "…", "memory": "I moved to Lisbon", "hash": "<sha256>",
     "user_id": "alice", "agent_id": null, "run_id": null, "role": "user", "actor_id": "Al",
     "metadata": {}, "created_at": "…", "updated_at": "…", "timestamp": "…", "expires_at": null,
     "version_of": null, "valid_until": null, "conversational": true, "prev_id": "…",
     "sources": [{"role": "user", "name": "Al", "content": "…", "timestamp": "…"}]}

- ``id`` is the row's own id. A past version (kept when reconciliation superseded or invalidated
  a fact; only ``search(as_of=...)`` sees it) has its own id, ``version_of`` = its memory's id and
  ``valid_until`` = when it stopped being true: the two are set together or not at all (but for
  a merged or archived memory, below).
- ``prev_id``: the message this one follows in its conversation (search shows a reply as context
  of the message it answers), or null.
- ``sources``: the messages the memory was extracted from, oldest first; carried by one row per
  memory (the current row, or the newest past version of a memory that has none).
- ``conversational``: the row is a chat message stored verbatim (it has a ``role``).
- ``hash`` is ``content_hash(memory)``; import checks it (drop it to have it recomputed).
- Consolidation (``Memory.consolidate``) adds up to five keys, each written only when set, so an
  export of a store never consolidated reads exactly as before (and older memlane imports it)::

      "state": "merged", "merged_into": "<memory id>", "summarises": ["<memory id>", …],
      "retrievals": 3, "last_retrieved": "…"

  ``state`` is ``"merged"`` or ``"archived"`` (absent or null: active). A merged or archived
  memory keeps its row, with ``valid_until`` = when it was merged or archived and no
  ``version_of``: the one case where ``valid_until`` comes alone. Search leaves it out, ``get``
  finds it. ``merged_into`` (only with ``"merged"``) names the memory that absorbed it.
  ``summarises`` lists the memories an episodic summary links to; ``retrievals`` and
  ``last_retrieved`` (together) count how often search returned the memory. The last two belong
  to the memory and travel on the row that carries its ``sources``. ``merged_into`` and
  ``summarises`` name memories of the record's own scope (import refuses another scope's) and
  are left out on import when neither the import nor the store holds that memory (as graph
  links are). Profiles do not travel: consolidation rebuilds them from the memories.
- No vector and no analysed text: import embeds ``"{actor_id}: {memory}"`` (just ``memory``
  without an actor) with the importing ``Memory``'s embedder, exactly as ``add`` does.

Then the graph (:mod:`memlane.core.graph`): one ``entity`` record per entity, by id, with the
ids of the memories that name it, then one ``relation`` record per relation, by id, closed ones
included (``entity_type`` is the entity's type: ``type`` names the record's)::

    {"type": "entity", "id": "…", "name": "Alice Chen", "entity_type": "person", "aliases": ["Alice"],
     "user_id": "alice", "agent_id": null, "run_id": null, "created_at": "…", "updated_at": "…",
     "memories": ["<memory id>", …]}
    {"type": "relation", "id": "…", "subject_id": "<entity id>", "predicate": "manages",
     "object_id": "<entity id>", "valid_from": "…", "valid_until": null, "memory_id": "<memory id>",
     "user_id": "alice", "agent_id": null, "run_id": null, "created_at": "…"}

- An entity, its relations and the memories naming it share one scope; import refuses a record
  that links two scopes. A link to a memory or entity that neither the import nor the store
  holds is left out (an export of a store in use reads its pages at different times, so it may
  name a memory added after the memory pages were read).
- ``memories`` lists memory ids (a past version's memory is its ``version_of``); ``memory_id`` of
  a relation is the memory that stated it, or null. Ids are kept on import, as memories' are.
- An export without graph records (every export before them) imports as before.

Then one ``history`` record per memory id that has history (deleted memories too), events oldest
first, each with every ``HistoryEvent`` field but the store-local ``id``::

    {"type": "history", "memory_id": "…", "events": [{"memory_id": "…", "event": "ADD",
     "old_memory": null, "new_memory": "…", "created_at": "…", "effective_at": "…",
     "user_id": "alice", "agent_id": null, "run_id": null, "redacted": false}]}

``event`` is ``ADD``, ``UPDATE``, ``DELETE``, ``MERGE`` (consolidation merged the memory into
another: ``new_memory`` is the text it joined) or ``ARCHIVE``.

Times are ISO 8601 strings; import normalises them to memlane's fixed-width UTC form. On import
a memory record needs ``id``, ``memory``, ``created_at`` and one scope id; the other keys
default (``updated_at`` and ``timestamp`` to ``created_at``, ``metadata`` to ``{}``, the rest to
null / false / empty). An event needs ``event`` and ``created_at`` (``effective_at`` defaults to
it). Unknown keys are refused: a typo must not drop data silently. A redacted (purged) event
carries no text. Record numbers in errors count from 1 in input order: the line number of a
JSON-lines file.

This module is pure: it turns records into :class:`PortableMemory` / :class:`PortableEvent` and
back; ``Memory`` drives the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from memlane.core.filters import to_iso
from memlane.core.graph import Entity, Relation, normalise_predicate
from memlane.core.inputs import MAX_MESSAGE_CHARS, check_metadata, check_text, parse_time
from memlane.core.records import PortableEntity, PortableEvent, PortableMemory, PortableRelation, SourceMessage
from memlane.core.scope import SCOPE_KEYS, validate_scope_id
from memlane.core.text import content_hash
from memlane.errors import InvalidRequest

__all__ = [
    "FORMAT",
    "ParsedRecords",
    "decode_lines",
    "encode_line",
    "entity_record",
    "header_record",
    "history_record",
    "memory_record",
    "parse_records",
    "relation_record",
]

FORMAT = 1
HEADER = "memlane-export"
_HEADER_KEYS = {"type", "format", "embedder", "dimension", "exported_at"}
_MEMORY_KEYS = {
    "type", "id", "memory", "hash", "user_id", "agent_id", "run_id", "role", "actor_id", "metadata",
    "created_at", "updated_at", "timestamp", "expires_at", "version_of", "valid_until", "conversational",
    "prev_id", "sources", "state", "merged_into", "summarises", "retrievals", "last_retrieved",
}  # fmt: skip
_EVENT_KEYS = {
    "memory_id", "event", "old_memory", "new_memory", "created_at", "effective_at", "user_id", "agent_id",
    "run_id", "redacted",
}  # fmt: skip
_SOURCE_KEYS = {"role", "name", "content", "timestamp"}
_ENTITY_KEYS = {
    "type", "id", "name", "entity_type", "aliases", "user_id", "agent_id", "run_id", "created_at", "updated_at",
    "memories",
}  # fmt: skip
_RELATION_KEYS = {
    "type", "id", "subject_id", "predicate", "object_id", "valid_from", "valid_until", "memory_id", "user_id",
    "agent_id", "run_id", "created_at",
}  # fmt: skip
_MAX_NAME = 1000
_MAX_ID = 256
_EVENTS = ("ADD", "UPDATE", "DELETE", "MERGE", "ARCHIVE")
_STATES = ("merged", "archived")


# -- records out ------------------------------------------------------------------------------
def header_record(embedder_id: str, dimension: int, exported_at: str) -> dict[str, Any]:
    """The first record of an export: format, the exporting embedder, when."""
    return {"type": HEADER, "format": FORMAT, "embedder": embedder_id, "dimension": dimension,
            "exported_at": exported_at}  # fmt: skip


def memory_record(m: PortableMemory) -> dict[str, Any]:
    """A memory row as a JSON-able record (consolidation's keys only when set)."""
    record: dict[str, Any] = {
        "type": "memory", "id": m.id, "memory": m.memory, "hash": m.hash, "user_id": m.user_id,
        "agent_id": m.agent_id, "run_id": m.run_id, "role": m.role, "actor_id": m.actor_id,
        "metadata": m.metadata, "created_at": m.created_at, "updated_at": m.updated_at, "timestamp": m.timestamp,
        "expires_at": m.expires_at, "version_of": m.version_of, "valid_until": m.valid_until,
        "conversational": m.conversational, "prev_id": m.prev_id,
        "sources": [{"role": s.role, "name": s.name, "content": s.content, "timestamp": s.timestamp}
                    for s in m.sources],
    }  # fmt: skip
    if m.state is not None:
        record["state"] = m.state
    if m.merged_into is not None:
        record["merged_into"] = m.merged_into
    if m.summarises:
        record["summarises"] = list(m.summarises)
    if m.retrievals:
        record["retrievals"], record["last_retrieved"] = m.retrievals, m.last_retrieved
    return record


def history_record(memory_id: str, events: Sequence[PortableEvent]) -> dict[str, Any]:
    """One memory's history events (oldest first) as a JSON-able record."""
    return {
        "type": "history",
        "memory_id": memory_id,
        "events": [
            {"memory_id": e.memory_id, "event": e.event, "old_memory": e.old_memory, "new_memory": e.new_memory,
             "created_at": e.created_at, "effective_at": e.effective_at, "user_id": e.user_id,
             "agent_id": e.agent_id, "run_id": e.run_id, "redacted": e.redacted}
            for e in events
        ],
    }  # fmt: skip


def entity_record(p: PortableEntity) -> dict[str, Any]:
    """An entity and the ids of the memories naming it as a JSON-able record."""
    e = p.entity
    return {
        "type": "entity", "id": e.id, "name": e.name, "entity_type": e.type, "aliases": list(e.aliases),
        "user_id": e.user_id, "agent_id": e.agent_id, "run_id": e.run_id, "created_at": e.created_at,
        "updated_at": e.updated_at, "memories": list(p.memories),
    }  # fmt: skip


def relation_record(r: Relation) -> dict[str, Any]:
    """A relation as a JSON-able record."""
    return {
        "type": "relation", "id": r.id, "subject_id": r.subject_id, "predicate": r.predicate,
        "object_id": r.object_id, "valid_from": r.valid_from, "valid_until": r.valid_until, "memory_id": r.memory_id,
        "user_id": r.user_id, "agent_id": r.agent_id, "run_id": r.run_id, "created_at": r.created_at,
    }  # fmt: skip


def encode_line(record: Mapping[str, Any]) -> str:
    """One record as a line of JSON (UTF-8 text kept as is), without the newline."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def decode_lines(lines: Iterable[str | bytes]) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines stream (blank lines are refused, so record numbers stay line numbers).

    Raises:
        InvalidRequest: a line is not a JSON object (the message names the line).
    """
    for number, line in enumerate(lines, start=1):
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise InvalidRequest(f"line {number}: not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise InvalidRequest(f"line {number}: a record must be a JSON object, got {type(value).__name__}")
        yield value


# -- records in -------------------------------------------------------------------------------
class ParsedRecords(NamedTuple):
    """Validated import records: memory rows and history events (both in input order), the header
    if any, then entities and relations (in input order)."""

    memories: list[PortableMemory]
    events: list[PortableEvent]
    header: dict[str, Any] | None
    entities: list[PortableEntity]
    relations: list[PortableRelation]


class _Fields:
    """Typed, checked access to one record's fields; every error names the record and the field."""

    def __init__(self, data: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        unknown = [str(k) for k in data if k not in allowed]
        if unknown:
            raise InvalidRequest(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        self.data = data
        self.where = where

    def fail(self, key: str, problem: str) -> InvalidRequest:
        return InvalidRequest(f"{self.where}: {key} {problem}")

    def text(self, key: str) -> str:
        try:
            return check_text(self.data.get(key), key, limit=MAX_MESSAGE_CHARS)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{self.where}: {exc}") from None

    def ident(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID:
            raise self.fail(key, f"must be a non-empty string of at most {_MAX_ID} characters, got {value!r}")
        return value

    def scope_id(self, key: str) -> str | None:
        try:
            return validate_scope_id(key, self.data.get(key))
        except InvalidRequest as exc:
            raise InvalidRequest(f"{self.where}: {exc}") from None

    def time(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"must be an ISO-8601 time such as '2026-05-04T09:30:00Z', got {value!r}")
        try:
            return to_iso(parse_time(value, key))
        except (InvalidRequest, OverflowError):
            raise self.fail(key, f"must be an ISO-8601 time such as '2026-05-04T09:30:00Z', got {value!r}") from None

    def optional_time(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.time(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, f"must be a string or null, got {type(value).__name__}")
        return value


def _sources(f: _Fields) -> list[SourceMessage]:
    value = f.data.get("sources")
    if value is None:
        return []
    if not isinstance(value, list):
        raise f.fail("sources", f"must be a list of messages, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise f.fail(f"sources[{i}]", "must be an object with role, name, content and timestamp")
        s = _Fields(item, f"{f.where}: sources[{i}]", _SOURCE_KEYS)
        out.append(SourceMessage(str(s.ident("role", required=True)), s.ident("name"), s.text("content"),
                                 s.time("timestamp")))  # fmt: skip
    return out


def _memory(f: _Fields, number: int) -> PortableMemory:
    text = f.text("memory")
    digest = content_hash(text)
    if f.data.get("hash") is not None and f.data.get("hash") != digest:
        raise f.fail("hash", "does not match the memory text (was the text edited? drop hash to recompute it)")
    scope = {key: f.scope_id(key) for key in SCOPE_KEYS}
    if all(v is None for v in scope.values()):
        raise f.fail("user_id", "is missing: a memory needs at least one of user_id, agent_id or run_id")
    metadata = f.data.get("metadata")
    try:
        meta = check_metadata(metadata)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{f.where}: {exc}") from None
    created = f.time("created_at")
    version_of, valid_until = f.ident("version_of"), f.optional_time("valid_until")
    state, merged_into = _state(f, version_of, valid_until)
    retrievals, last_retrieved = _access(f)
    role = f.ident("role")
    return PortableMemory(
        id=str(f.ident("id", required=True)), memory=text, hash=digest, user_id=scope["user_id"],
        agent_id=scope["agent_id"], run_id=scope["run_id"], role=role,
        actor_id=f.ident("actor_id"), metadata=meta, created_at=created,
        updated_at=f.time("updated_at", created), timestamp=f.time("timestamp", created),
        expires_at=f.optional_time("expires_at"), version_of=version_of, valid_until=valid_until,
        conversational=f.flag("conversational", role is not None), prev_id=f.ident("prev_id"), sources=_sources(f),
        state=state, merged_into=merged_into, summarises=_names(f, "summarises", _MAX_ID), retrievals=retrievals,
        last_retrieved=last_retrieved, record=number,
    )  # fmt: skip


def _state(
    f: _Fields, version_of: str | None, valid_until: str | None
) -> tuple[Literal["merged", "archived"] | None, str | None]:
    """``(state, merged_into)``; checks them against ``version_of`` and ``valid_until``."""
    state = f.data.get("state")
    merged_into = f.ident("merged_into")
    if state is None:
        if (version_of is None) != (valid_until is None):
            raise f.fail("valid_until", "and version_of go together: a past version has both, a current memory neither")
        if merged_into is not None:
            raise f.fail("merged_into", "is set but state is not 'merged'")
        return None, None
    if state not in _STATES:
        raise f.fail("state", f"must be 'merged', 'archived' or null, got {state!r}")
    if version_of is not None:
        raise f.fail("state", "is set on a past version: only a memory's current row is merged or archived")
    if valid_until is None:
        raise f.fail("valid_until", f"is missing: a {state} memory has valid_until = when it was {state}")
    if merged_into is not None and state != "merged":
        raise f.fail("merged_into", "is set but state is not 'merged'")
    if merged_into is not None and merged_into == f.data.get("id"):
        raise f.fail("merged_into", "is the memory's own id")
    return ("merged" if state == "merged" else "archived"), merged_into


def _access(f: _Fields) -> tuple[int, str | None]:
    """``(retrievals, last_retrieved)``: both set (a positive count) or neither."""
    count = f.data.get("retrievals")
    last = f.optional_time("last_retrieved")
    if count is None and last is None:
        return 0, None
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise f.fail("retrievals", f"must be a positive integer with last_retrieved, got {count!r}")
    if last is None:
        raise f.fail("last_retrieved", "is missing: retrievals and last_retrieved go together")
    return count, last


def _event(f: _Fields, memory_id: str) -> PortableEvent:
    if f.data.get("memory_id", memory_id) != memory_id:
        raise f.fail("memory_id", f"is {f.data.get('memory_id')!r} in a history record of {memory_id!r}")
    kind = f.data.get("event")
    if kind not in _EVENTS:
        raise f.fail("event", f"must be one of {', '.join(map(repr, _EVENTS))}, got {kind!r}")
    created = f.time("created_at")
    redacted = f.flag("redacted", False)
    old, new = f.optional_text("old_memory"), f.optional_text("new_memory")
    if redacted and (old is not None or new is not None):
        raise f.fail("redacted", "is true but the event carries text: a purged event keeps none")
    return PortableEvent(
        memory_id=memory_id, event=kind, old_memory=old, new_memory=new, created_at=created,
        effective_at=f.time("effective_at", created), user_id=f.scope_id("user_id"),
        agent_id=f.scope_id("agent_id"), run_id=f.scope_id("run_id"), redacted=redacted,
    )  # fmt: skip


def _history(f: _Fields) -> list[PortableEvent]:
    memory_id = str(f.ident("memory_id", required=True))
    events = f.data.get("events")
    if not isinstance(events, list) or not events:
        raise f.fail("events", "must be a non-empty list of history events")
    out = []
    for i, item in enumerate(events):
        if not isinstance(item, Mapping):
            raise f.fail(f"events[{i}]", "must be an object")
        out.append(_event(_Fields(item, f"{f.where}: events[{i}]", _EVENT_KEYS), memory_id))
    return out


def _scope(f: _Fields, what: str) -> dict[str, str | None]:
    scope = {key: f.scope_id(key) for key in SCOPE_KEYS}
    if all(v is None for v in scope.values()):
        raise f.fail("user_id", f"is missing: {what} needs at least one of user_id, agent_id or run_id")
    return scope


def _names(f: _Fields, key: str, limit: int) -> list[str]:
    """A list of distinct non-empty strings of at most ``limit`` characters (ids or names)."""
    value = f.data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise f.fail(key, f"must be a list of strings, got {type(value).__name__}")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip() or len(item) > limit or item in out:
            raise f.fail(f"{key}[{i}]", f"must be a distinct non-empty string of at most {limit} characters")
        out.append(item)
    return out


def _entity(f: _Fields, number: int) -> PortableEntity:
    name = f.data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise f.fail("name", f"must be a non-empty string of at most {_MAX_NAME} characters, got {name!r}")
    scope = _scope(f, "an entity")
    created = f.time("created_at")
    entity = Entity(
        id=str(f.ident("id", required=True)), name=name, type=f.ident("entity_type"),
        aliases=tuple(_names(f, "aliases", _MAX_NAME)), user_id=scope["user_id"], agent_id=scope["agent_id"],
        run_id=scope["run_id"], created_at=created, updated_at=f.time("updated_at", created),
    )  # fmt: skip
    return PortableEntity(entity, _names(f, "memories", _MAX_ID), number)


def _relation(f: _Fields, number: int) -> PortableRelation:
    predicate = f.data.get("predicate")
    if not isinstance(predicate, str) or not predicate or normalise_predicate(predicate) != predicate:
        raise f.fail("predicate", f"must be a normalised predicate such as 'reports_to', got {predicate!r}")
    subject, obj = str(f.ident("subject_id", required=True)), str(f.ident("object_id", required=True))
    if subject == obj:
        raise f.fail("object_id", "is the subject_id: a relation links two entities")
    scope = _scope(f, "a relation")
    start, until = f.time("valid_from"), f.optional_time("valid_until")
    if until is not None and until < start:
        raise f.fail("valid_until", f"is before valid_from ({until} < {start})")
    relation = Relation(
        id=str(f.ident("id", required=True)), subject_id=subject, predicate=predicate, object_id=obj,
        valid_from=start, valid_until=until, memory_id=f.ident("memory_id"), user_id=scope["user_id"],
        agent_id=scope["agent_id"], run_id=scope["run_id"], created_at=f.time("created_at"),
    )  # fmt: skip
    return PortableRelation(relation, number)


def _header(f: _Fields) -> dict[str, Any]:
    fmt = f.data.get("format")
    if fmt != FORMAT or isinstance(fmt, bool):
        raise f.fail("format", f"is {fmt!r}: this memlane reads export format {FORMAT}; upgrade memlane to read it")
    dimension = f.data.get("dimension")
    if dimension is not None and (not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 1):
        raise f.fail("dimension", f"must be a positive integer, got {dimension!r}")
    if f.data.get("embedder") is not None:
        f.ident("embedder")
    f.optional_time("exported_at")
    return dict(f.data)


def _once(seen: dict[str, int], key: str, what: str, number: int) -> None:
    if key in seen:
        raise InvalidRequest(f"{what} {key!r} already came in record {seen[key]}")
    seen[key] = number


def parse_records(records: Iterable[Mapping[str, Any]]) -> ParsedRecords:
    """Validate and normalise every record of an import (nothing is written until all pass).

    Raises:
        InvalidRequest: the first bad record, as "record N: <field> <problem>" (N counts from 1).
    """
    if isinstance(records, str | bytes | Mapping):
        raise InvalidRequest("records must be an iterable of record dicts (one per JSON line), not one string or dict")
    memories: list[PortableMemory] = []
    events: list[PortableEvent] = []
    header: dict[str, Any] | None = None
    seen_ids: dict[str, int] = {}
    seen_history: dict[str, int] = {}
    entities: list[PortableEntity] = []
    relations: list[PortableRelation] = []
    seen_entities: dict[str, int] = {}
    seen_relations: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        where = f"record {number}"
        if not isinstance(record, Mapping):
            raise InvalidRequest(f"{where}: must be a JSON object, got {type(record).__name__}")
        kind = record.get("type")
        if kind == HEADER:
            if number != 1:
                raise InvalidRequest(f"{where}: the {HEADER} header may only be the first record")
            header = _header(_Fields(record, where, _HEADER_KEYS))
        elif kind == "memory":
            memory = _memory(_Fields(record, where, _MEMORY_KEYS), number)
            if memory.id in seen_ids:
                raise InvalidRequest(f"{where}: id {memory.id!r} already came in record {seen_ids[memory.id]}")
            seen_ids[memory.id] = number
            memories.append(memory)
        elif kind == "history":
            group = _history(_Fields(record, where, {"type", "memory_id", "events"}))
            mid = group[0].memory_id
            if mid in seen_history:
                raise InvalidRequest(f"{where}: memory_id {mid!r} already has a history record ({seen_history[mid]})")
            seen_history[mid] = number
            events.extend(group)
        elif kind == "entity":
            entity = _entity(_Fields(record, where, _ENTITY_KEYS), number)
            _once(seen_entities, entity.entity.id, f"{where}: entity id", number)
            entities.append(entity)
        elif kind == "relation":
            relation = _relation(_Fields(record, where, _RELATION_KEYS), number)
            _once(seen_relations, relation.relation.id, f"{where}: relation id", number)
            relations.append(relation)
        else:
            raise InvalidRequest(
                f"{where}: type must be {HEADER!r}, 'memory', 'entity', 'relation' or 'history', got {kind!r}"
            )
    return ParsedRecords(memories, events, header, entities, relations)
