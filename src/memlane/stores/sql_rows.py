"""Row-level SQL shared by the SQL stores' writes: reading rows, inserting, deleting, recording
history, and applying one add's extracted facts (:class:`FactWriter`).

Every function here runs inside a transaction the store opened, through a :class:`Tx`, in SQL that
SQLite and PostgreSQL both run (see :mod:`memlane.stores.sql_tx`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from memlane.core.records import FactOutcome, FactPlan, FactWrite, NewMemory, NewPassage, StoredMemory
from memlane.stores.sql_graph import forget_memories, invalidate_memory, replace_graph, write_graph
from memlane.stores.sql_tx import Tx
from memlane.types import Scope

__all__ = [
    "COLUMNS",
    "LIVE",
    "FactWriter",
    "delete_rows",
    "forget_consolidation",
    "insert_passages",
    "insert_row",
    "keep_version",
    "live_duplicate",
    "none",
    "record",
    "row_to_memory",
    "scope_sql",
    "states_sql",
    "visible_sql",
]

COLUMNS = (
    "m.rid, m.id, m.user_id, m.agent_id, m.run_id, m.actor_id, m.role, m.memory, m.hash, m.metadata, "
    "m.created_at, m.updated_at, m.timestamp, m.expires_at, m.search_text, m.prev_rid, m.valid_until, m.version_of, "
    "m.state, m.merged_into"
)
# Current memories only: past versions (kept for search(as_of=...)) carry version_of.
LIVE = "m.version_of IS NULL"
STATES = ("merged", "archived")


def states_sql(include: Sequence[str]) -> str:
    """``'merged', 'archived'``: the consolidation states named (unknown names are refused)."""
    bad = [s for s in include if s not in STATES]
    if bad:
        raise ValueError(f"unknown memory states {bad}")
    return ", ".join(f"'{s}'" for s in sorted(set(include)))


def visible_sql(include: Sequence[str] = ()) -> str:
    """Current memories search and get_all show: active ones (neither merged nor archived), and
    those in the states ``include`` names."""
    if not include:
        return "m.version_of IS NULL AND m.state IS NULL"
    return f"m.version_of IS NULL AND (m.state IS NULL OR m.state IN ({states_sql(include)}))"


def none(value: str) -> str | None:
    """'' (how the schema stores an unset scope id) -> None."""
    return value or None


def row_to_memory(row: Sequence[Any]) -> StoredMemory:
    """A ``SELECT {COLUMNS}`` row as a StoredMemory."""
    # A past version answers to its memory's id: callers never see the version row's own id.
    return StoredMemory(
        id=row[17] or row[1],
        user_id=none(row[2]),
        agent_id=none(row[3]),
        run_id=none(row[4]),
        actor_id=none(row[5]),
        role=row[6],
        memory=row[7],
        hash=row[8],
        # JSON text in SQLite, already decoded from jsonb in PostgreSQL.
        metadata=json.loads(row[9]) if isinstance(row[9], str) else row[9],
        created_at=row[10],
        updated_at=row[11],
        timestamp=row[12],
        expires_at=row[13],
        search_text=row[14],
        rid=row[0],
        prev_rid=row[15],
        valid_until=row[16],
        state=row[18],
        merged_into=row[19],
    )


def scope_sql(scope: Scope, alias: str = "m") -> tuple[str, list[Any]]:
    """``alias.user_id = ? AND …`` for the ids the scope sets."""
    parts, params = [], []
    for key, value in scope.as_dict().items():
        if value is not None:
            parts.append(f"{alias}.{key} = ?")
            params.append(value)
    return " AND ".join(parts) or "TRUE", params


def live_duplicate(tx: Tx, key: Sequence[str]) -> tuple[str, str | None, int] | None:
    """(id, expires_at, rid) of the active memory with this (user, agent, run, actor, hash), if any
    (a merged or archived memory no longer holds its text: adding it again makes a new memory)."""
    row = tx.execute(
        "SELECT id, expires_at, rid FROM memories WHERE user_id = ? AND agent_id = ? AND run_id = ? "
        "AND actor_id = ? AND hash = ? AND version_of IS NULL AND state IS NULL",
        tuple(key),
    ).fetchone()
    return (row[0], row[1], row[2]) if row else None


def insert_row(tx: Tx, r: NewMemory, prev_rid: int | None) -> int:
    """Insert one new memory row and its passages (the backend's triggers index them); returns its row id."""
    rid = tx.insert(
        "INSERT INTO memories (id, user_id, agent_id, run_id, actor_id, role, memory, search_text, "
        "n_terms, hash, metadata, created_at, updated_at, timestamp, expires_at, prev_rid, embedding) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            r.id,
            r.user_id or "",
            r.agent_id or "",
            r.run_id or "",
            r.actor_id or "",
            r.role,
            r.memory,
            r.search_text,
            len(r.search_text.split()),
            r.hash,
            json.dumps(r.metadata, ensure_ascii=False),
            r.created_at,
            r.created_at,
            r.timestamp,
            r.expires_at,
            prev_rid,
            tx.vector(r.embedding),
        ),
        "rid",
    )
    insert_passages(tx, rid, r.passages)
    return rid


def insert_passages(tx: Tx, rid: int, passages: Sequence[NewPassage]) -> None:
    """Write the passages of the memory row ``rid`` (none for a memory indexed whole)."""
    if not passages:
        return
    tx.executemany(
        "INSERT INTO passages (rid, seq, char_start, char_end, search_text, embedding) VALUES (?, ?, ?, ?, ?, ?)",
        [(rid, p.seq, p.start, p.end, p.search_text, tx.vector(p.embedding)) for p in passages],
    )


def record(
    tx: Tx,
    memory_id: str,
    event: str,
    old: str | None,
    new: str | None,
    created_at: str,
    effective_at: str,
    scope: Sequence[str],
) -> None:
    """Append one history event."""
    tx.execute(
        "INSERT INTO history (memory_id, event, old_memory, new_memory, created_at, effective_at, user_id, "
        "agent_id, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (memory_id, event, old, new, created_at, effective_at, *scope),
    )


def delete_rows(tx: Tx, where: str, params: list[Any], now_iso: str) -> int:
    """Delete the rows matching ``where`` (over ``memories m``), past versions included, with
    their provenance and graph rows; history records each current memory's deletion. Returns how many current
    memories were deleted."""
    tx.execute(
        "INSERT INTO history (memory_id, event, old_memory, new_memory, created_at, effective_at, user_id, "
        "agent_id, run_id) SELECT m.id, 'DELETE', m.memory, NULL, ?, ?, m.user_id, m.agent_id, m.run_id "
        f"FROM memories m WHERE ({where}) AND {LIVE}",
        [now_iso, now_iso, *params],
    )
    ids = [
        r[0]
        for r in tx.execute(f"SELECT COALESCE(m.version_of, m.id) FROM memories m WHERE {where}", params).fetchall()
    ]
    count = tx.execute(f"SELECT count(*) FROM memories m WHERE ({where}) AND {LIVE}", params).fetchone()[0]
    scopes = tx.execute(
        f"SELECT DISTINCT m.user_id, m.agent_id, m.run_id FROM memories m WHERE {where}", params
    ).fetchall()
    tx.execute(f"DELETE FROM memories AS m WHERE {where}", params)
    _unlink(tx, set(ids))
    forget_memories(tx, ids)
    forget_consolidation(tx, ids, scopes)
    return int(count)


def keep_version(tx: Tx, target: StoredMemory, until: str, now: str) -> None:
    """Keep ``target``'s current text as a past version true until ``until``; the passages of
    that text move to the past version (reconciliation and consolidation both archive this way)."""
    version = tx.insert(
        "INSERT INTO memories (id, user_id, agent_id, run_id, actor_id, role, memory, search_text, n_terms, "
        "hash, metadata, created_at, updated_at, timestamp, expires_at, prev_rid, embedding, version_of, "
        "valid_until) SELECT ?, user_id, agent_id, run_id, actor_id, role, memory, search_text, n_terms, hash, "
        "metadata, created_at, ?, timestamp, expires_at, NULL, embedding, id, ? FROM memories WHERE id = ?",
        (str(uuid.uuid4()), now, max(until, target.timestamp), target.id),
        "rid",
    )
    tx.execute("UPDATE passages SET rid = ? WHERE rid = ?", (version, target.rid))


def forget_consolidation(tx: Tx, memory_ids: Sequence[str], scopes: Iterable[Sequence[str]]) -> None:
    """Inside a delete: drop the deleted memories' access counts and summary links, and every
    profile over their ``scopes`` (exact ``(user, agent, run)``) that cites one of them: a
    profile never keeps what was deleted."""
    ids = list(dict.fromkeys(memory_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        tx.execute(f"DELETE FROM memory_access WHERE memory_id IN ({marks})", chunk)
        tx.execute(f"DELETE FROM memory_links WHERE memory_id IN ({marks}) OR linked_id IN ({marks})", chunk + chunk)
    if not ids:
        return
    cited = {f'"{i}"' for i in ids}  # a profile's JSON cites its sources as quoted ids
    for user, agent, run in set(map(tuple, scopes)):
        profiles = tx.execute(
            "SELECT user_id, agent_id, run_id, profile FROM profiles WHERE (user_id = ? OR user_id = '') "
            "AND (agent_id = ? OR agent_id = '') AND (run_id = ? OR run_id = '')",
            (user, agent, run),
        ).fetchall()
        for p in profiles:
            if any(c in p[3] for c in cited):
                tx.execute("DELETE FROM profiles WHERE user_id = ? AND agent_id = ? AND run_id = ?", (p[0], p[1], p[2]))


def _unlink(tx: Tx, memory_ids: set[str]) -> None:
    """Drop deleted memories' provenance links, and the source messages nothing links to any more."""
    if not memory_ids:
        return
    ids = list(memory_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        sids = [
            r[0] for r in tx.execute(f"SELECT sid FROM memory_sources WHERE memory_id IN ({marks})", chunk).fetchall()
        ]
        tx.execute(f"DELETE FROM memory_sources WHERE memory_id IN ({marks})", chunk)
        for s in range(0, len(sids), 500):
            part = sids[s : s + 500]
            tx.execute(
                f"DELETE FROM sources WHERE sid IN ({','.join('?' * len(part))}) "
                "AND NOT EXISTS (SELECT 1 FROM memory_sources ms WHERE ms.sid = sources.sid)",
                part,
            )


class FactWriter:
    """Applies a :class:`FactPlan` inside one transaction.

    The model decided on what it saw before the transaction began; here each decision is checked
    against the rows as they are now. The target must still be a current memory of exactly the
    fact's scope with the content the model saw; otherwise an UPDATE or DELETE falls back to
    adding the fact, and NONE (already known) to adding it as well. Nothing is dropped, and no
    memory of another scope can be touched whatever the plan names.

    A written fact's entities and relations go in with it (:mod:`memlane.stores.sql_graph`): an
    ADD's are resolved against its scope, an UPDATE's replace the target's mentions, and a
    DELETE ends the relations the target stated.
    """

    def __init__(self, tx: Tx, plan: FactPlan, now_iso: str) -> None:
        self.tx = tx
        self.plan = plan
        self.now = now_iso
        self._sids: dict[int, int] = {}

    def run(self) -> list[FactOutcome]:
        """Apply every write, in order (holding the write lock of the facts' scope first)."""
        for scope in sorted({self._scope(w.new) for w in self.plan.writes}):
            self.tx.lock_scope(scope)
        return [self._apply(w) for w in self.plan.writes]

    def _scope(self, r: NewMemory) -> tuple[str, str, str]:
        return (r.user_id or "", r.agent_id or "", r.run_id or "")

    def _target(self, w: FactWrite) -> StoredMemory | None:
        if w.target_id is None:
            return None
        row = self.tx.execute(f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? AND {LIVE}", (w.target_id,)).fetchone()
        if row is None or (row[2], row[3], row[4]) != self._scope(w.new) or row[8] != w.target_hash:
            return None
        return row_to_memory(row)

    def _apply(self, w: FactWrite) -> FactOutcome:
        target = self._target(w) if w.action != "ADD" else None
        if target is None:
            return self._add(w)
        if w.action == "NONE":
            self._link(target.id, w.sources)
            return FactOutcome(target.id, "NONE", target.memory)
        if w.action == "UPDATE":
            return self._update(w, target)
        self._archive(target, w.new.timestamp)
        self.tx.execute("DELETE FROM memories WHERE id = ?", (target.id,))
        invalidate_memory(self.tx, target.id, w.new.timestamp)
        record(self.tx, target.id, "DELETE", target.memory, None, self.now, w.new.timestamp, self._scope(w.new))
        self._link(target.id, w.sources)
        return FactOutcome(target.id, "DELETE", target.memory)

    def _add(self, w: FactWrite) -> FactOutcome:
        r = w.new
        key = (*self._scope(r), r.actor_id or "", r.hash)
        existing = live_duplicate(self.tx, key)
        if existing is not None and (existing[1] is None or existing[1] > self.now):
            self._link(existing[0], w.sources)
            memory = self.tx.execute("SELECT memory FROM memories WHERE id = ?", (existing[0],)).fetchone()[0]
            return FactOutcome(existing[0], "NONE", memory)
        if existing is not None:
            delete_rows(self.tx, "m.id = ?", [existing[0]], self.now)
        insert_row(self.tx, r, None)
        write_graph(self.tx, r, r.id, self.now)
        record(self.tx, r.id, "ADD", None, r.memory, self.now, r.timestamp, key[:3])
        self._link(r.id, w.sources)
        return FactOutcome(r.id, "ADD", r.memory)

    def _update(self, w: FactWrite, target: StoredMemory) -> FactOutcome:
        r = w.new
        clash = live_duplicate(self.tx, (*self._scope(r), target.actor_id or "", r.hash))
        if clash is not None and clash[0] != target.id:
            # The rewritten text is already another memory: the fact is known there.
            self._link(clash[0], w.sources)
            memory = self.tx.execute("SELECT memory FROM memories WHERE id = ?", (clash[0],)).fetchone()[0]
            return FactOutcome(clash[0], "NONE", memory)
        self._archive(target, r.timestamp)
        self.tx.execute(
            "UPDATE memories SET memory = ?, search_text = ?, n_terms = ?, hash = ?, updated_at = ?, timestamp = ?, "
            "embedding = ? WHERE id = ?",
            (r.memory, r.search_text, len(r.search_text.split()), r.hash, self.now, r.timestamp,
             self.tx.vector(r.embedding), target.id),
        )  # fmt: skip
        insert_passages(self.tx, target.rid, r.passages)
        replace_graph(self.tx, r, target.id, self.now)
        record(self.tx, target.id, "UPDATE", target.memory, r.memory, self.now, r.timestamp, self._scope(r))
        self._link(target.id, w.sources)
        return FactOutcome(target.id, "UPDATE", r.memory, target.memory)

    def _archive(self, target: StoredMemory, until: str) -> None:
        keep_version(self.tx, target, until, self.now)

    def _link(self, memory_id: str, sources: tuple[int, ...]) -> None:
        for index in sources:
            sid = self._sids.get(index)
            if sid is None:
                msg = self.plan.messages[index]
                scope = self._scope(self.plan.writes[0].new)
                sid = self._sids[index] = self.tx.insert(
                    "INSERT INTO sources (user_id, agent_id, run_id, role, name, content, timestamp, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*scope, msg.role, msg.name, msg.content, msg.timestamp, self.now),
                    "sid",
                )
            self.tx.execute(
                "INSERT INTO memory_sources (memory_id, sid) VALUES (?, ?) ON CONFLICT DO NOTHING", (memory_id, sid)
            )
