"""Reading the graph (entities, mentions, relations) and moving it through export and import.

:class:`GraphReads` gives the SQL stores the graph half of the ``Store`` protocol; scopes match
exactly as for memories (``scope_sql``: the ids a scope sets must match). :class:`GraphImporter`
writes imported entities and relations inside the import's one transaction, after the memory
rows, refusing anything that would link rows of two scopes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from memlane.core.graph import Entity, Relation
from memlane.core.records import PortableEntity, PortableMemory, PortableRelation
from memlane.errors import InvalidRequest, MemoryConflict
from memlane.stores.sql_graph import (
    ENTITY_COLUMNS,
    RELATION_COLUMNS,
    drop_orphans,
    insert_entities,
    insert_mentions,
    insert_relations,
    row_to_entity,
    row_to_relation,
)
from memlane.stores.sql_rows import scope_sql
from memlane.stores.sql_tx import Tx
from memlane.types import Scope

__all__ = ["GraphImporter", "GraphReads"]

T = TypeVar("T")
_CHUNK = 500
ScopeKey = tuple[str, str, str]


def _key(user_id: str | None, agent_id: str | None, run_id: str | None) -> ScopeKey:
    return (user_id or "", agent_id or "", run_id or "")


def _in_chunks(run: Callable[[str, list[Any]], list[Any]], sql: str, values: Iterable[Any]) -> list[Any]:
    """``sql`` with ``{marks}`` as an ``IN`` list, run over ``values`` in chunks of 500."""
    items = sorted(set(values))
    out: list[Any] = []
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        out += run(sql.replace("{marks}", ",".join("?" * len(chunk))), chunk)
    return out


class GraphReads(ABC):
    """The graph reads of a SQL store (mixed into :class:`memlane.stores.sql_store.SQLStore`)."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read (``?`` placeholders)."""

    @abstractmethod
    def _snapshot(self, fn: Callable[[Tx], T]) -> T:
        """Run the reads of ``fn`` in one consistent read transaction."""

    def entities(self, scope: Scope) -> list[Entity]:
        """The entities of ``scope`` (the ids it sets must match), by name."""
        where, params = scope_sql(scope, alias="e")
        sql = f"SELECT {ENTITY_COLUMNS} FROM entities e WHERE {where} ORDER BY e.name, e.id"
        return [row_to_entity(r) for r in self._read(sql, params)]

    def entity(self, entity_id: str) -> Entity | None:
        """One entity by id, or None."""
        rows = self._read(f"SELECT {ENTITY_COLUMNS} FROM entities e WHERE e.id = ?", (entity_id,))
        return row_to_entity(rows[0]) if rows else None

    def relations(self, scope: Scope) -> list[Relation]:
        """Every relation of ``scope``, closed ones included, by ``valid_from``."""
        where, params = scope_sql(scope, alias="r")
        sql = f"SELECT {RELATION_COLUMNS} FROM relations r WHERE {where} ORDER BY r.valid_from, r.created_at, r.id"
        return [row_to_relation(r) for r in self._read(sql, params)]

    def entity_memories(self, entity_ids: Iterable[str]) -> dict[str, list[str]]:
        """For each given entity id, the ids of the current memories that name it, oldest row first
        (past versions and invalidated memories name nothing); an unknown id maps to []."""
        wanted = list(entity_ids)
        out: dict[str, list[str]] = {eid: [] for eid in wanted}
        sql = (
            "SELECT em.entity_id, em.memory_id FROM entity_mentions em JOIN memories m ON m.id = em.memory_id "
            "WHERE em.entity_id IN ({marks}) AND m.version_of IS NULL AND m.state IS NULL ORDER BY em.entity_id, m.rid"
        )
        for eid, mid in _in_chunks(self._read, sql, wanted):
            out[eid].append(mid)
        return out

    def memory_entities(self, memory_ids: Iterable[str]) -> dict[str, list[str]]:
        """For each given memory id, the ids of the entities it names, by entity name; unknown ids map to []."""
        wanted = list(memory_ids)
        out: dict[str, list[str]] = {mid: [] for mid in wanted}
        sql = (
            "SELECT em.memory_id, e.id FROM entity_mentions em JOIN entities e ON e.id = em.entity_id "
            "WHERE em.memory_id IN ({marks}) ORDER BY em.memory_id, e.name, e.id"
        )
        for mid, eid in _in_chunks(self._read, sql, wanted):
            out[mid].append(eid)
        return out

    # -- export pages --------------------------------------------------------------------------
    def entity_page(self, scope: Scope | None, after: str | None, limit: int) -> list[PortableEntity]:
        """Up to ``limit`` entities of ``scope`` (all when None) with id above ``after``, by id,
        each with the ids of the memories naming it. One page is one consistent read."""

        def run(tx: Tx) -> list[PortableEntity]:
            where, params = scope_sql(scope, alias="e") if scope is not None else ("TRUE", [])
            rows = tx.execute(
                f"SELECT {ENTITY_COLUMNS} FROM entities e WHERE e.id > ? AND {where} ORDER BY e.id LIMIT ?",
                [after or "", *params, limit],
            ).fetchall()
            page = {r[0]: PortableEntity(row_to_entity(r)) for r in rows}
            sql = "SELECT entity_id, memory_id FROM entity_mentions WHERE entity_id IN ({marks}) ORDER BY 1, 2"
            for eid, mid in _in_chunks(lambda q, p: tx.execute(q, p).fetchall(), sql, page):
                page[eid].memories.append(mid)
            return list(page.values())

        return self._snapshot(run)

    def relation_page(self, scope: Scope | None, after: str | None, limit: int) -> list[Relation]:
        """Up to ``limit`` relations of ``scope`` (all when None) with id above ``after``, by id."""
        where, params = scope_sql(scope, alias="r") if scope is not None else ("TRUE", [])
        sql = f"SELECT {RELATION_COLUMNS} FROM relations r WHERE r.id > ? AND {where} ORDER BY r.id LIMIT ?"
        return [row_to_relation(r) for r in self._read(sql, [after or "", *params, limit])]


class GraphImporter:
    """Writes imported entities (with their mentions) and relations inside the import's transaction.

    Ids are kept. An entity or relation id the store already holds is a conflict, handled like a
    memory's (``"error"``: MemoryConflict; ``"skip"``: left out, and the store's row with that id
    is what the import's mentions and relations then point at).

    A link to a row that neither the import (once its conflicts are left out) nor the store holds
    is left out: a mention of such a memory, a relation stated by such a memory or between such
    entities. An export of a store in use reads its pages at different times, so it may name a
    memory added after the memory pages were read, or an entity created after its page; the rest
    of the import is sound. A link between two scopes is refused as ``record N: ...``: a graph
    never spans scopes (and a namespaced key must not reach another namespace's rows by id).
    """

    def __init__(
        self,
        tx: Tx,
        on_conflict: Literal["error", "skip"],
        memories: Sequence[PortableMemory],
    ) -> None:
        self.tx = tx
        self.on_conflict = on_conflict
        self._memories: dict[str, ScopeKey] = {m.memory_id: _key(m.user_id, m.agent_id, m.run_id) for m in memories}

    def _select(self, sql: str, values: Iterable[Any]) -> list[Any]:
        return _in_chunks(lambda q, p: self.tx.execute(q, p).fetchall(), sql, values)

    def run(self, entities: Sequence[PortableEntity], relations: Sequence[PortableRelation]) -> tuple[int, int]:
        """Check everything, then write; returns (entities written, relations written).

        Raises:
            MemoryConflict: an entity or relation id already in the store, with ``"error"``.
            InvalidRequest: a link to a row of another scope.
        """
        if not entities and not relations:
            return 0, 0
        held = self._ids("entities", [p.entity.id for p in entities])
        held_rel = self._ids("relations", [p.relation.id for p in relations])
        for what, ids in (("entity", held), ("relation", held_rel)):
            if ids and self.on_conflict == "error":
                raise MemoryConflict(
                    f"{what} {min(ids)!r} already exists in this store; nothing was imported "
                    "(on_conflict='skip' leaves such records out)"
                )
        new_entities = [p for p in entities if p.entity.id not in held]
        scopes = {p.entity.id: _key(p.entity.user_id, p.entity.agent_id, p.entity.run_id) for p in new_entities}
        referenced = {p.entity.id for p in entities}
        referenced |= {eid for p in relations for eid in (p.relation.subject_id, p.relation.object_id)}
        sql = "SELECT id, user_id, agent_id, run_id FROM entities WHERE id IN ({marks})"
        for r in self._select(sql, referenced - set(scopes)):
            scopes[r[0]] = (r[1], r[2], r[3])
        named = {m for p in entities for m in p.memories}
        self._load_memories(named | {p.relation.memory_id for p in relations if p.relation.memory_id})
        mentions = [pair for p in entities for pair in self._mentions(p, scopes)]
        kept = [p.relation for p in relations if p.relation.id not in held_rel and self._relation(p, scopes)]
        insert_entities(self.tx, [p.entity for p in new_entities])
        insert_mentions(self.tx, mentions)
        insert_relations(self.tx, kept)
        # An entity whose every memory was skipped, and that no relation names, would name nothing.
        dropped = drop_orphans(self.tx, (p.entity.id for p in new_entities))
        return len(new_entities) - dropped, len(kept)

    def _ids(self, table: str, ids: list[str]) -> set[str]:
        """Those of ``ids`` that ``table`` holds."""
        return {r[0] for r in self._select(f"SELECT id FROM {table} WHERE id IN ({{marks}})", ids)}

    def _load_memories(self, wanted: set[str]) -> None:
        """Scopes of the memories the records name that the store holds (and the import does not)."""
        missing = wanted - set(self._memories)
        sql = (
            "SELECT COALESCE(version_of, id), user_id, agent_id, run_id FROM memories "
            "WHERE id IN ({marks}) OR version_of IN ({marks})"
        )
        for start in range(0, len(missing), _CHUNK):
            chunk = sorted(missing)[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for r in self.tx.execute(sql.replace("{marks}", marks), [*chunk, *chunk]).fetchall():
                self._memories.setdefault(r[0], (r[1], r[2], r[3]))

    def _where(self, record: int, what: str) -> str:
        return f"record {record}: {what}" if record else what

    def _memory_ok(self, memory_id: str, scope: ScopeKey, where: str) -> bool:
        """True when the memory is written or held in ``scope``; False when neither holds it (leave the link out)."""
        found = self._memories.get(memory_id)
        if found is None:
            return False
        if found != scope:
            raise InvalidRequest(f"{where} names memory {memory_id!r} of another scope: a graph never spans scopes")
        return True

    def _mentions(self, p: PortableEntity, scopes: dict[str, ScopeKey]) -> list[tuple[str, str]]:
        where = self._where(p.record, f"entity {p.entity.id!r}")
        scope = scopes[p.entity.id]
        if scope != _key(p.entity.user_id, p.entity.agent_id, p.entity.run_id):
            raise InvalidRequest(f"{where} already exists in this store in another scope")
        return [(p.entity.id, mid) for mid in p.memories if self._memory_ok(mid, scope, f"{where}: memories")]

    def _relation(self, p: PortableRelation, scopes: dict[str, ScopeKey]) -> bool:
        r = p.relation
        where = self._where(p.record, f"relation {r.id!r}")
        scope = _key(r.user_id, r.agent_id, r.run_id)
        for field, eid in (("subject_id", r.subject_id), ("object_id", r.object_id)):
            if eid not in scopes:
                return False
            if scopes[eid] != scope:
                raise InvalidRequest(f"{where}: {field} {eid!r} is an entity of another scope")
        return r.memory_id is None or self._memory_ok(r.memory_id, scope, f"{where}: memory_id")
