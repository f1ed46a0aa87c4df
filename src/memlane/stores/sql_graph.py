"""Graph rows (entities, their mentions, relations) written and erased in the memory's transaction.

Every function runs inside a write transaction the store opened (through a :class:`Tx`), in SQL
both backends accept. Writes come from ``insert`` and ``apply_facts`` with the memory's exact scope
already locked (:meth:`Tx.lock_scope`), so resolving names against the scope's entities and
writing the result is one step: two racing adds that name "Alice" end with one entity.

Invariants the functions keep:

- an entity, its mentions and its relations share one exact scope (resolution reads that scope only);
- a mention links an entity to a memory's public id; a memory's mentions are those of its current
  text (replaced when reconciliation rewrites it, dropped when it invalidates or deletes it);
- a relation stays when the memory that stated it changes (it is history) and goes with it when
  the memory is deleted (a relation it had closed takes over its end); an entity left with no
  mention and no relation goes too (its name is user text: nothing of a deleted memory's graph
  may stay behind).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from memlane.core.graph import (
    Entity,
    EntityMention,
    Relation,
    RelationClaim,
    normalise_name,
    plan_relations,
    resolve,
)
from memlane.stores.sql_tx import Tx
from memlane.types import Scope

__all__ = [
    "ENTITY_COLUMNS",
    "RELATION_COLUMNS",
    "GraphEdit",
    "Stated",
    "delete_scope_graph",
    "drop_mentions",
    "drop_orphans",
    "forget_memories",
    "insert_entities",
    "insert_mentions",
    "insert_relations",
    "invalidate_memory",
    "replace_graph",
    "row_to_entity",
    "row_to_relation",
    "write_graph",
]

ENTITY_COLUMNS = "e.id, e.name, e.type, e.aliases, e.user_id, e.agent_id, e.run_id, e.created_at, e.updated_at"
RELATION_COLUMNS = (
    "r.id, r.subject_id, r.predicate, r.object_id, r.valid_from, r.valid_until, r.memory_id, "
    "r.user_id, r.agent_id, r.run_id, r.created_at"
)
_CHUNK = 500
_EXACT = "user_id = ? AND agent_id = ? AND run_id = ?"


def row_to_entity(row: Sequence[Any]) -> Entity:
    """A ``SELECT {ENTITY_COLUMNS}`` row as an Entity ('' scope ids -> None)."""
    return Entity(
        id=row[0], name=row[1], type=row[2], aliases=tuple(json.loads(row[3])), user_id=row[4] or None,
        agent_id=row[5] or None, run_id=row[6] or None, created_at=row[7], updated_at=row[8],
    )  # fmt: skip


def row_to_relation(row: Sequence[Any]) -> Relation:
    """A ``SELECT {RELATION_COLUMNS}`` row as a Relation ('' scope ids -> None)."""
    return Relation(
        id=row[0], subject_id=row[1], predicate=row[2], object_id=row[3], valid_from=row[4], valid_until=row[5],
        memory_id=row[6], user_id=row[7] or None, agent_id=row[8] or None, run_id=row[9] or None,
        created_at=row[10],
    )  # fmt: skip


class Stated(Protocol):
    """What a memory names and states, and where and when (``NewMemory`` is one)."""

    user_id: str | None
    agent_id: str | None
    run_id: str | None
    timestamp: str
    entities: tuple[EntityMention, ...]
    relations: tuple[RelationClaim, ...]


@dataclass
class GraphEdit:
    """The names and claims of a memory's text edited in place (``Store.update``), from ``timestamp`` on."""

    user_id: str | None
    agent_id: str | None
    run_id: str | None
    timestamp: str
    entities: tuple[EntityMention, ...]
    relations: tuple[RelationClaim, ...]


def _new_id() -> str:
    return str(uuid.uuid4())


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(chunk: Sequence[Any]) -> str:
    return ",".join("?" * len(chunk))


def _ends(names: Iterable[str]) -> set[str]:
    """The first and last word of each normalised name: a name can only match an entity sharing one."""
    return {w for n in names for words in [n.split()] if words for w in (words[0], words[-1])}


def _write_keys(tx: Tx, entities: Sequence[Entity]) -> None:
    """(Re)write the resolution keys of entities (see the ``entity_keys`` table)."""
    for chunk in _chunks(e.id for e in entities):
        tx.execute(f"DELETE FROM entity_keys WHERE entity_id IN ({_marks(chunk)})", chunk)
    tx.executemany(
        "INSERT INTO entity_keys (user_id, agent_id, run_id, word, entity_id) VALUES (?, ?, ?, ?, ?)",
        [
            (e.user_id or "", e.agent_id or "", e.run_id or "", w, e.id)
            for e in entities
            for w in sorted(_ends(e.names()))
        ],
    )


def insert_entities(tx: Tx, entities: Sequence[Entity]) -> None:
    """Insert entities as they are (ids kept), with their resolution keys."""
    tx.executemany(
        "INSERT INTO entities (id, user_id, agent_id, run_id, name, type, aliases, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(e.id, e.user_id or "", e.agent_id or "", e.run_id or "", e.name, e.type,
          json.dumps(list(e.aliases), ensure_ascii=False), e.created_at, e.updated_at) for e in entities],
    )  # fmt: skip
    _write_keys(tx, entities)


def insert_mentions(tx: Tx, pairs: Iterable[tuple[str, str]]) -> None:
    """Link ``(entity_id, memory_id)`` pairs (a link already there stays one)."""
    rows = sorted(set(pairs))
    if rows:
        tx.executemany("INSERT INTO entity_mentions (entity_id, memory_id) VALUES (?, ?) ON CONFLICT DO NOTHING", rows)


def insert_relations(tx: Tx, relations: Sequence[Relation]) -> None:
    """Insert relations as they are (ids kept)."""
    tx.executemany(
        "INSERT INTO relations (id, user_id, agent_id, run_id, subject_id, predicate, object_id, valid_from, "
        "valid_until, memory_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.id, r.user_id or "", r.agent_id or "", r.run_id or "", r.subject_id, r.predicate, r.object_id,
          r.valid_from, r.valid_until, r.memory_id, r.created_at) for r in relations],
    )  # fmt: skip


def write_graph(tx: Tx, r: Stated, memory_id: str, now_iso: str) -> None:
    """Resolve and write the entities ``r`` names and the relations it states, for memory ``memory_id``.

    The caller holds the write lock of ``r``'s exact scope. The names of the relation claims'
    subjects and objects resolve like mentions (and are linked to the memory as mentions too).
    An exclusive claim closes the scope's open relation it contradicts at ``r.timestamp``.
    """
    if not r.entities and not r.relations:
        return
    names = [*r.entities, *(EntityMention(n) for c in r.relations for n in (c.subject, c.object))]
    ids = _resolve(tx, r, names, now_iso)
    insert_mentions(tx, ((eid, memory_id) for eid in ids if eid))
    first = len(r.entities)
    claims = [(ids[first + 2 * i], c.predicate, ids[first + 2 * i + 1], c.exclusive) for i, c in enumerate(r.relations)]
    if claims:
        _state(tx, r, claims, memory_id, now_iso)


def _resolve(tx: Tx, r: Stated, names: Sequence[EntityMention], now_iso: str) -> list[str]:
    """The entity id of each name (``""`` for a name that normalises to nothing), entities created or grown."""
    scope = (r.user_id or "", r.agent_id or "", r.run_id or "")
    # Only the scope's entities sharing a first or last word with a name can match it (an exact
    # name, a prefix or a suffix): resolving against them decides as against all of them.
    words = sorted(_ends(normalise_name(m.name) for m in names))
    existing = [
        row_to_entity(row)
        for row in tx.execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities e WHERE e.id IN (SELECT k.entity_id FROM entity_keys k "
            f"WHERE k.user_id = ? AND k.agent_id = ? AND k.run_id = ? AND k.word IN ({_marks(words)})) ORDER BY e.id",
            [*scope, *words],
        ).fetchall()
    ] if words else []  # fmt: skip
    found = resolve(names, existing, scope=(r.user_id, r.agent_id, r.run_id), now=now_iso, new_id=_new_id)
    insert_entities(tx, found.created)
    tx.executemany(
        "UPDATE entities SET name = ?, type = ?, aliases = ?, updated_at = ? WHERE id = ?",
        [(e.name, e.type, json.dumps(list(e.aliases), ensure_ascii=False), e.updated_at, e.id) for e in found.updated],
    )
    _write_keys(tx, found.updated)
    return found.ids


def _state(tx: Tx, r: Stated, claims: list[tuple[str, str, str, bool]], memory_id: str, now_iso: str) -> None:
    """Write the relations resolved ``claims`` add, and close those an exclusive claim ends."""
    scope = (r.user_id or "", r.agent_id or "", r.run_id or "")
    # A claim repeats or closes only open relations of its own subject: read those alone (by the
    # subject index: SQLite's planner would otherwise walk the whole scope's relations).
    subjects = sorted({c[0] for c in claims if c[0]})
    hint = " INDEXED BY relations_subject" if tx.dialect == "sqlite" else ""
    open_now = [
        row_to_relation(row)
        for row in tx.execute(
            f"SELECT {RELATION_COLUMNS} FROM relations r{hint} WHERE r.subject_id IN ({_marks(subjects)}) AND {_EXACT} "
            "AND r.valid_until IS NULL ORDER BY r.valid_from, r.id",
            [*subjects, *scope],
        ).fetchall()
    ] if subjects else []  # fmt: skip
    plan = plan_relations(
        claims, open_now, memory_id=memory_id, valid_from=r.timestamp, scope=(r.user_id, r.agent_id, r.run_id),
        now=now_iso, new_id=_new_id,
    )  # fmt: skip
    tx.executemany("UPDATE relations SET valid_until = ? WHERE id = ?", [(until, rid) for rid, until in plan.closed])
    insert_relations(tx, plan.new)


def drop_mentions(tx: Tx, memory_ids: Iterable[str]) -> set[str]:
    """Unlink memories from the entities they name; returns those entities' ids (to collect later)."""
    touched: set[str] = set()
    for chunk in _chunks(memory_ids):
        sql = f"SELECT entity_id FROM entity_mentions WHERE memory_id IN ({_marks(chunk)})"
        touched |= {row[0] for row in tx.execute(sql, chunk).fetchall()}
        tx.execute(f"DELETE FROM entity_mentions WHERE memory_id IN ({_marks(chunk)})", chunk)
    return touched


def drop_orphans(tx: Tx, entity_ids: Iterable[str]) -> int:
    """Delete those of ``entity_ids`` that no memory mentions and no relation names; returns how many."""
    dropped = 0
    for chunk in _chunks(entity_ids):
        dropped += tx.execute(
            f"DELETE FROM entities WHERE id IN ({_marks(chunk)}) "
            "AND NOT EXISTS (SELECT 1 FROM entity_mentions em WHERE em.entity_id = entities.id) "
            "AND NOT EXISTS (SELECT 1 FROM relations r WHERE r.subject_id = entities.id) "
            "AND NOT EXISTS (SELECT 1 FROM relations r WHERE r.object_id = entities.id)",
            chunk,
        ).rowcount
    return dropped


def forget_memories(tx: Tx, memory_ids: Iterable[str]) -> None:
    """The graph side of deleting memories: their mentions, the relations they stated, and the
    entities that leaves with no mention and no relation.

    A relation that one of theirs had closed (an exclusive claim: "moved to Rome" ended "lives in
    Paris") takes over the deleted relation's end: it is open again if that one was (and nothing
    else now holds for its subject and predicate), else it ends when that one ended. A relation
    whose own memory is no longer current is left as it is.
    """
    ids = sorted(set(memory_ids))
    if not ids:
        return
    touched = drop_mentions(tx, ids)
    ended: list[tuple[str, str | None, str, str, str, str, str]] = []
    for chunk in _chunks(ids):
        marks = _marks(chunk)
        # Closed by one of them: same scope, subject and predicate, ended when theirs began.
        ended += tx.execute(
            "SELECT o.id, r.valid_until, o.subject_id, o.predicate, o.user_id, o.agent_id, o.run_id FROM relations r "
            "JOIN relations o ON o.subject_id = r.subject_id AND o.predicate = r.predicate AND o.valid_until = "
            "r.valid_from AND o.user_id = r.user_id AND o.agent_id = r.agent_id AND o.run_id = r.run_id "
            f"WHERE r.memory_id IN ({marks}) AND (o.memory_id IS NULL OR o.memory_id NOT IN ({marks})) "
            "ORDER BY o.valid_from DESC, o.id",
            [*chunk, *chunk],
        ).fetchall()
        rows = tx.execute(f"SELECT subject_id, object_id FROM relations WHERE memory_id IN ({marks})", chunk)
        touched |= {eid for row in rows.fetchall() for eid in row}
        tx.execute(f"DELETE FROM relations WHERE memory_id IN ({marks})", chunk)
    current = (
        "(memory_id IS NULL OR EXISTS (SELECT 1 FROM memories m WHERE m.id = relations.memory_id "
        "AND m.version_of IS NULL))"
    )
    for rid, until, subject, predicate, *scope in ended:  # the latest first: only one of them reopens
        if until is not None:
            tx.execute(f"UPDATE relations SET valid_until = ? WHERE id = ? AND {current}", (until, rid))
            continue
        tx.execute(
            "UPDATE relations SET valid_until = NULL WHERE id = ? AND NOT EXISTS (SELECT 1 FROM relations x "
            "WHERE x.subject_id = ? AND x.predicate = ? AND x.valid_until IS NULL AND x.user_id = ? AND x.agent_id = ? "
            f"AND x.run_id = ?) AND {current}",
            (rid, subject, predicate, *scope),
        )
    drop_orphans(tx, touched)


def replace_graph(tx: Tx, r: Stated, memory_id: str, now_iso: str) -> None:
    """A memory's text was rewritten as ``r``: its mentions become those of the new text; the
    relations it stated stay (history) unless the new claims close them."""
    touched = drop_mentions(tx, [memory_id])
    write_graph(tx, r, memory_id, now_iso)
    drop_orphans(tx, touched)


def invalidate_memory(tx: Tx, memory_id: str, at: str) -> None:
    """Reconciliation invalidated a memory (only past versions remain) at ``at``: it names nothing
    any more, and the relations it stated that are still open end at ``at`` (they stay, closed)."""
    tx.execute(
        "UPDATE relations SET valid_until = CASE WHEN valid_from > ? THEN valid_from ELSE ? END "
        "WHERE memory_id = ? AND valid_until IS NULL",
        (at, at, memory_id),
    )
    drop_orphans(tx, drop_mentions(tx, [memory_id]))


def delete_scope_graph(tx: Tx, scope: Scope) -> None:
    """Every entity and relation of ``scope`` (the ids it sets must match, as for memories), with
    their mentions."""
    parts = [f"{key} = ?" for key, value in scope.as_dict().items() if value is not None]
    params = [value for value in scope.as_dict().values() if value is not None]
    where = " AND ".join(parts) or "TRUE"
    tx.execute(f"DELETE FROM relations WHERE {where}", params)
    tx.execute(f"DELETE FROM entity_mentions WHERE entity_id IN (SELECT id FROM entities WHERE {where})", params)
    tx.execute(f"DELETE FROM entity_keys WHERE {where}", params)
    tx.execute(f"DELETE FROM entities WHERE {where}", params)
