"""Export pages and one-transaction import for the SQL stores (see :mod:`memlane.core.portable`).

Reads page by row id (memories) and by ``(memory_id, id)`` (history): each page is one short read
transaction, so an export of any size holds no lock between pages and sees each page whole.

An import runs inside the caller's write transaction (through a :class:`Tx`): rows go in through
plain ``INSERT``s, so the backend's triggers index and count them exactly as for ``insert`` and
``apply_facts``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from memlane.core.records import (
    ImportOutcome,
    PortableEntity,
    PortableEvent,
    PortableMemory,
    PortableRelation,
    SourceMessage,
)
from memlane.errors import InvalidRequest, MemoryConflict
from memlane.stores.sql_graph_io import GraphImporter
from memlane.stores.sql_rows import insert_passages, live_duplicate, none, scope_sql
from memlane.stores.sql_tx import Tx
from memlane.types import Scope

__all__ = ["Importer", "export_page", "history_page"]

_CHUNK = 500
_PAGE_COLUMNS = (
    "m.rid, m.id, m.user_id, m.agent_id, m.run_id, m.actor_id, m.role, m.memory, m.hash, m.metadata, "
    "m.created_at, m.updated_at, m.timestamp, m.expires_at, m.version_of, m.valid_until, p.id, m.state, "
    "m.merged_into"
)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _select_in(tx: Tx, sql: str, values: Iterable[Any]) -> list[Any]:
    """``sql`` with ``{marks}`` as an ``IN`` list, over ``values`` in chunks."""
    out: list[Any] = []
    for chunk in _chunks(list(values)):
        out += tx.execute(sql.replace("{marks}", ",".join("?" * len(chunk))), chunk).fetchall()
    return out


def export_page(tx: Tx, scope: Scope | None, after_rid: int, limit: int) -> list[PortableMemory]:
    """Up to ``limit`` rows of ``scope`` (all when None) with ``rid > after_rid``, by rid, with their sources."""
    where, params = scope_sql(scope) if scope is not None else ("TRUE", [])
    # NOT INDEXED: walk the table by rid from after_rid. Through a scope index, every page would
    # sort the whole scope again (quadratic over a large scope's export); this reads the table once.
    # (PostgreSQL's planner walks the primary key by itself for ORDER BY rid LIMIT.)
    hint = " NOT INDEXED" if tx.dialect == "sqlite" else ""
    rows = tx.execute(
        f"SELECT {_PAGE_COLUMNS} FROM memories m{hint} LEFT JOIN memories p ON p.rid = m.prev_rid "
        f"WHERE m.rid > ? AND {where} ORDER BY m.rid LIMIT ?",
        [after_rid, *params, limit],
    ).fetchall()
    page = [
        PortableMemory(
            id=r[1], memory=r[7], hash=r[8], user_id=none(r[2]), agent_id=none(r[3]), run_id=none(r[4]),
            role=r[6], actor_id=none(r[5]), metadata=json.loads(r[9]) if isinstance(r[9], str) else r[9],
            created_at=r[10], updated_at=r[11],
            timestamp=r[12], expires_at=r[13], version_of=r[14], valid_until=r[15], conversational=r[6] is not None,
            prev_id=r[16], rid=r[0], state=r[17], merged_into=r[18],
        )
        for r in rows
    ]  # fmt: skip
    carriers = _carriers(tx, page)
    if carriers:
        found = _select_in(
            tx,
            "SELECT ms.memory_id, s.role, s.name, s.content, s.timestamp FROM memory_sources ms "
            "JOIN sources s ON s.sid = ms.sid WHERE ms.memory_id IN ({marks}) ORDER BY ms.memory_id, s.sid",
            carriers,
        )
        for memory_id, role, name, content, timestamp in found:
            carriers[memory_id].sources.append(SourceMessage(role, name, content, timestamp))
        sql = "SELECT memory_id, linked_id FROM memory_links WHERE memory_id IN ({marks}) ORDER BY 1, 2"
        for memory_id, linked_id in _select_in(tx, sql, carriers):
            carriers[memory_id].summarises.append(linked_id)
        sql = "SELECT memory_id, retrievals, last_retrieved FROM memory_access WHERE memory_id IN ({marks})"
        for memory_id, retrievals, last in _select_in(tx, sql, carriers):
            carriers[memory_id].retrievals, carriers[memory_id].last_retrieved = int(retrievals), last
    return page


def _carriers(tx: Tx, page: list[PortableMemory]) -> dict[str, PortableMemory]:
    """Memory id -> the row of this page that carries the memory's sources.

    Sources belong to a memory id, not a row: the current row carries them, or, for a memory that
    reconciliation invalidated (only past versions remain), its newest past version.
    """
    out = {m.id: m for m in page if m.version_of is None}
    orphans = {m.version_of for m in page if m.version_of is not None and m.version_of not in out}
    if not orphans:
        return out
    live = {r[0] for r in _select_in(tx, "SELECT id FROM memories WHERE id IN ({marks})", orphans)}
    newest = dict(
        _select_in(
            tx,
            "SELECT version_of, max(rid) FROM memories WHERE version_of IN ({marks}) GROUP BY version_of",
            orphans - live,
        )
    )
    for m in page:
        if m.version_of is not None and newest.get(m.version_of) == m.rid:
            out[m.version_of] = m
    return out


def history_page(tx: Tx, scope: Scope | None, after: tuple[str, int] | None, limit: int) -> list[PortableEvent]:
    """Up to ``limit`` history events of ``scope`` after ``(memory_id, seq)``, by memory id then age."""
    where, params = scope_sql(scope, alias="h") if scope is not None else ("TRUE", [])
    if after is not None:
        where += " AND (h.memory_id, h.id) > (?, ?)"
        params = [*params, *after]
    # The (memory_id, id) index gives the order: one pass over history in all, whatever the scope.
    hint = " INDEXED BY history_memory" if tx.dialect == "sqlite" else ""
    rows = tx.execute(
        "SELECT h.id, h.memory_id, h.event, h.old_memory, h.new_memory, h.created_at, "
        "COALESCE(h.effective_at, h.created_at), h.user_id, h.agent_id, h.run_id, h.redacted "
        f"FROM history h{hint} WHERE {where} ORDER BY h.memory_id, h.id LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [
        PortableEvent(memory_id=r[1], event=r[2], old_memory=r[3], new_memory=r[4], created_at=r[5],
                      effective_at=r[6], user_id=none(r[7]), agent_id=none(r[8]), run_id=none(r[9]),
                      redacted=bool(r[10]), seq=r[0])
        for r in rows
    ]  # fmt: skip


def _scope(m: PortableMemory | PortableEvent) -> tuple[str, str, str]:
    return (m.user_id or "", m.agent_id or "", m.run_id or "")


class Importer:
    """Writes validated, embedded records into the store inside the caller's transaction.

    First every conflict is found (an id the store already knows, as a row, a past version's
    memory or a history entry; a current memory whose text duplicates a current memory of the
    same scope and speaker, in the store or earlier in the import). With ``on_conflict="error"``
    the first one raises before anything is written; with ``"skip"`` the conflicting memory is
    left out whole: all its rows and its history. Then rows, provenance and history are written
    in input order, so the store keeps their relative order.

    A merged or archived row keeps its state and takes no part in the text-duplicate check (only
    active memories hold their text, as the ``memories_dedupe`` index says). Its ``merged_into``
    and a summary's ``summarises`` must name memories of its own scope (``record N: ...``
    otherwise); one that neither the import nor the store holds, as rows or history, is left out.
    """

    def __init__(self, tx: Tx, now_iso: str, on_conflict: Literal["error", "skip"]) -> None:
        self.tx = tx
        self.now = now_iso
        self.on_conflict = on_conflict
        self._rids: dict[str, int] = {}
        self._sids: dict[tuple[Any, ...], int] = {}

    def run(
        self,
        memories: Sequence[PortableMemory],
        events: Sequence[PortableEvent],
        entities: Sequence[PortableEntity] = (),
        relations: Sequence[PortableRelation] = (),
    ) -> ImportOutcome:
        """Import everything not skipped; returns the counts. Entities and relations go in after
        the memory rows (see :class:`memlane.stores.sql_graph_io.GraphImporter`).

        Raises:
            InvalidRequest: a row carries no vector of the store's dimension (embed before importing),
                or an entity or relation links rows of two scopes.
            MemoryConflict: a conflict, with ``on_conflict="error"``.
        """
        self._check_vectors(memories)
        for scope in sorted({_scope(m) for m in memories}):
            self.tx.lock_scope(scope)
        skip = self._conflicts(memories, events)
        kept = [m for m in memories if m.memory_id not in skip]
        written = [e for e in events if e.memory_id not in skip]
        links = self._consolidation_links(kept, written)
        pending = {m.id for m in kept}
        late: list[tuple[str, str]] = []
        for m in kept:
            pending.discard(m.id)
            if m.prev_id is not None and m.prev_id in pending:
                late.append((m.id, m.prev_id))  # follows a row stored after it (rare: reused row ids)
            self._rids[m.id] = self._insert(m, self._prev_rid(m.prev_id, pending), links.get(m.id))
            self._link(m)
        for mid, prev_id in late:
            self.tx.execute("UPDATE memories SET prev_rid = ? WHERE rid = ?", (self._rids[prev_id], self._rids[mid]))
        self._consolidation(kept, links)
        GraphImporter(self.tx, self.on_conflict, kept).run(entities, relations)
        self.tx.executemany(
            "INSERT INTO history (memory_id, event, old_memory, new_memory, created_at, effective_at, user_id, "
            "agent_id, run_id, redacted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e.memory_id, e.event, e.old_memory, e.new_memory, e.created_at, e.effective_at, *_scope(e),
              int(e.redacted)) for e in written],
        )  # fmt: skip
        skipped = sum(m.memory_id in skip for m in memories)
        skipped += len(skip - {m.memory_id for m in memories})  # deleted memories: history only
        return ImportOutcome(imported=len(kept), skipped=skipped, history=len(written))

    def _check_vectors(self, memories: Sequence[PortableMemory]) -> None:
        row = self.tx.execute("SELECT value FROM meta WHERE key = 'embedder_dimension'").fetchone()
        dimension = int(row[0]) if row is not None else None
        for m in memories:
            if m.embedding.ndim != 1 or m.embedding.size == 0 or m.embedding.size != (dimension or m.embedding.size):
                raise InvalidRequest(
                    f"memory {m.id!r} has a vector of shape {m.embedding.shape}, not ({dimension},): "
                    "records are embedded before they are written (Memory.import_records does it)"
                )

    def _conflicts(self, memories: Sequence[PortableMemory], events: Sequence[PortableEvent]) -> set[str]:
        """The memory ids to skip (raises MemoryConflict on the first one when not skipping)."""
        keys = {m.memory_id for m in memories} | {e.memory_id for e in events}
        row_ids = {m.id for m in memories} | keys
        known: set[str] = set()
        for sql, values in (
            ("SELECT id FROM memories WHERE id IN ({marks})", row_ids),
            ("SELECT DISTINCT version_of FROM memories WHERE version_of IN ({marks})", keys),
            ("SELECT DISTINCT memory_id FROM history WHERE memory_id IN ({marks})", keys),
        ):
            known |= {r[0] for r in _select_in(self.tx, sql, values)}
        skip: set[str] = set()
        taken: dict[tuple[str, ...], str] = {}
        for m in memories:
            if m.memory_id in skip:
                continue
            if m.id in known or m.memory_id in known:
                self._conflict(skip, m.memory_id, f"memory {m.memory_id!r} already exists in this store")
                continue
            if m.version_of is not None or m.state is not None:
                continue  # only active memories hold their text
            key = (*_scope(m), m.actor_id or "", m.hash)
            clash = live_duplicate(self.tx, key)
            other = clash[0] if clash is not None else taken.get(key)
            if other is not None:
                self._conflict(skip, m.id, f"memory {m.id!r} duplicates the text of memory {other!r} in its scope")
                continue
            taken[key] = m.id
        for e in events:
            if e.memory_id in known and e.memory_id not in skip:
                self._conflict(skip, e.memory_id, f"memory {e.memory_id!r} already has history in this store")
        return skip

    def _conflict(self, skip: set[str], memory_id: str, problem: str) -> None:
        if self.on_conflict == "error":
            raise MemoryConflict(f"{problem}; nothing was imported (on_conflict='skip' leaves such memories out)")
        skip.add(memory_id)

    def _prev_rid(self, prev_id: str | None, pending: set[str]) -> int | None:
        """The row id of the message ``prev_id``: imported already, or already in the store."""
        if prev_id is None or prev_id in pending:
            return None
        if prev_id in self._rids:
            return self._rids[prev_id]
        row = self.tx.execute("SELECT rid FROM memories WHERE id = ?", (prev_id,)).fetchone()
        return int(row[0]) if row is not None else None

    def _consolidation_links(
        self, kept: Sequence[PortableMemory], events: Sequence[PortableEvent]
    ) -> dict[str, tuple[str | None, list[str]]]:
        """Row id -> ``(merged_into, summarises)`` as written: links to memories held nowhere left out.

        Raises:
            InvalidRequest: a link names a memory of another scope (``record N: ...``).
        """
        wanted = {m.merged_into for m in kept if m.merged_into} | {i for m in kept for i in m.summarises}
        if not wanted:
            return {}
        held = {m.memory_id: _scope(m) for m in kept}
        for e in events:
            held.setdefault(e.memory_id, _scope(e))
        for sql in (
            "SELECT COALESCE(version_of, id), user_id, agent_id, run_id FROM memories WHERE id IN ({marks})",
            "SELECT version_of, user_id, agent_id, run_id FROM memories WHERE version_of IN ({marks})",
            "SELECT memory_id, user_id, agent_id, run_id FROM history WHERE memory_id IN ({marks})",
        ):
            for r in _select_in(self.tx, sql, sorted(wanted - set(held))):
                held.setdefault(r[0], (r[1], r[2], r[3]))
        out: dict[str, tuple[str | None, list[str]]] = {}
        for m in kept:
            if m.merged_into is None and not m.summarises:
                continue
            where = f"record {m.record}: " if m.record else f"memory {m.id!r}: "
            ok = [t for t in (m.merged_into, *m.summarises) if t is not None and self._same_scope(held, t, m, where)]
            out[m.id] = (m.merged_into if m.merged_into in ok else None, [i for i in m.summarises if i in ok])
        return out

    @staticmethod
    def _same_scope(held: dict[str, tuple[str, str, str]], target: str, m: PortableMemory, where: str) -> bool:
        """True when ``target`` is held in ``m``'s scope; False when held nowhere (leave the link out)."""
        scope = held.get(target)
        if scope is None:
            return False
        if scope != _scope(m):
            field = "merged_into" if target == m.merged_into else "summarises"
            raise InvalidRequest(
                f"{where}{field} names memory {target!r} of another scope: consolidation never spans scopes"
            )
        return True

    def _consolidation(self, kept: Sequence[PortableMemory], links: dict[str, tuple[str | None, list[str]]]) -> None:
        """Write the summaries' links and the memories' search statistics."""
        self.tx.executemany(
            "INSERT INTO memory_links (memory_id, linked_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(m.memory_id, i) for m in kept if m.id in links for i in links[m.id][1]],
        )
        self.tx.executemany(
            "INSERT INTO memory_access (memory_id, retrievals, last_retrieved) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(m.memory_id, m.retrievals, m.last_retrieved) for m in kept if m.retrievals and m.last_retrieved],
        )

    def _insert(
        self, m: PortableMemory, prev_rid: int | None, links: tuple[str | None, list[str]] | None = None
    ) -> int:
        rid = self.tx.insert(
            "INSERT INTO memories (id, user_id, agent_id, run_id, actor_id, role, memory, search_text, n_terms, "
            "hash, metadata, created_at, updated_at, timestamp, expires_at, prev_rid, embedding, version_of, "
            "valid_until, state, merged_into) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (m.id, *_scope(m), m.actor_id or "", m.role, m.memory, m.search_text, len(m.search_text.split()), m.hash,
             json.dumps(m.metadata, ensure_ascii=False), m.created_at, m.updated_at, m.timestamp, m.expires_at,
             prev_rid, self.tx.vector(m.embedding), m.version_of, m.valid_until, m.state,
             links[0] if links is not None else None),
            "rid",
        )  # fmt: skip
        insert_passages(self.tx, rid, m.passages)
        return rid

    def _link(self, m: PortableMemory) -> None:
        """Store the memory's source messages and link them to it, in order.

        Facts extracted from one exchange share its messages: a message already stored by this
        import is linked again rather than copied, when that keeps the memory's sources in order.
        """
        last = 0
        for s in m.sources:
            key = (*_scope(m), s.role, s.name, s.content, s.timestamp)
            sid = self._sids.get(key, 0)
            if sid <= last:
                sid = self._sids[key] = self.tx.insert(
                    "INSERT INTO sources (user_id, agent_id, run_id, role, name, content, timestamp, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*key, self.now),
                    "sid",
                )
            self.tx.execute(
                "INSERT INTO memory_sources (memory_id, sid) VALUES (?, ?) ON CONFLICT DO NOTHING", (m.memory_id, sid)
            )
            last = sid
