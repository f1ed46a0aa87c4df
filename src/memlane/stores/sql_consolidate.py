"""Consolidation's store operations, written once for both SQL backends (see :mod:`memlane._consolidate`).

Each write is one transaction under the exact scope's write lock, and re-checks what the plan
saw (a memory still active, its text unchanged) before it changes anything: a pass racing adds,
edits, deletes or another pass skips what moved instead of overwriting it. A merged or archived
memory keeps its row: ``state`` says which, ``valid_until`` since when (search leaves it out;
``search(as_of=...)`` before then still sees it), ``merged_into`` which memory absorbed it.
"""

from __future__ import annotations

import builtins
import json
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from memlane.core.consolidate import Row
from memlane.core.filters import to_iso
from memlane.core.records import MergeOutcome, NewMemory, StoredMemory
from memlane.errors import InvalidRequest, MemoryNotFound
from memlane.stores.sql_graph import invalidate_memory, replace_graph, write_graph
from memlane.stores.sql_rows import (
    COLUMNS,
    insert_passages,
    insert_row,
    keep_version,
    none,
    record,
    row_to_memory,
    scope_sql,
    visible_sql,
)
from memlane.stores.sql_tx import Tx
from memlane.types import Scope

__all__ = ["ACTIVE", "ConsolidationOps", "forget_scope_profiles"]

T = TypeVar("T")
# Memories search sees by default: current (not a past version), neither merged nor archived.
ACTIVE = visible_sql()
_KEY = "(m.user_id, m.agent_id, m.run_id)"


def _vector(value: Any) -> Any:
    """An embedding as read back: SQLite's little-endian float32 bytes, pgvector's ``Vector``."""
    if isinstance(value, bytes | memoryview):
        return np.frombuffer(value, dtype="<f4")
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def forget_scope_profiles(tx: Tx, scope: Scope) -> None:
    """Inside ``delete_scope``: drop the profiles built over any part of ``scope`` (a profile of
    alice is built from every scope of hers, so deleting alice's agent scope drops it too)."""
    parts, params = [], []
    for key, value in scope.as_dict().items():
        if value is not None:
            parts.append(f"(p.{key} = ? OR p.{key} = '')")
            params.append(value)
    tx.execute(f"DELETE FROM profiles AS p WHERE {' AND '.join(parts) or 'TRUE'}", params)


class ConsolidationOps:
    """The consolidation half of :class:`memlane.stores.sql_store.SQLStore`."""

    @abstractmethod
    def _write(self, fn: Callable[[Tx], T]) -> T: ...

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Any]: ...

    @abstractmethod
    def _snapshot(self, fn: Callable[[Tx], T]) -> T: ...

    # -- reads -----------------------------------------------------------------------------------
    def scopes(self, scope: Scope | None) -> builtins.list[Scope]:
        """The exact scopes holding active memories within ``scope`` (all when None), sorted."""
        where, params = scope_sql(scope) if scope is not None else ("TRUE", [])
        rows = self._read(f"SELECT DISTINCT m.user_id, m.agent_id, m.run_id FROM memories m WHERE {where} AND {ACTIVE}"
                          " ORDER BY 1, 2, 3", params)  # fmt: skip
        return [Scope(user_id=none(r[0]), agent_id=none(r[1]), run_id=none(r[2])) for r in rows]

    def consolidation_rows(self, scope: Scope, now: datetime) -> builtins.list[Row]:
        """The active, unexpired memories of one exact scope, with their vectors, use and links."""
        key = (scope.user_id or "", scope.agent_id or "", scope.run_id or "")

        def run(tx: Tx) -> builtins.list[Row]:
            rows = tx.execute(
                f"SELECT {COLUMNS}, m.embedding, a.retrievals, a.last_retrieved, "
                "EXISTS (SELECT 1 FROM memory_links l WHERE l.linked_id = m.id), "
                "EXISTS (SELECT 1 FROM history h WHERE h.memory_id = m.id AND h.event = 'MERGE') "
                "FROM memories m LEFT JOIN memory_access a ON a.memory_id = m.id "
                f"WHERE m.user_id = ? AND m.agent_id = ? AND m.run_id = ? AND {ACTIVE} "
                "AND (m.expires_at IS NULL OR m.expires_at > ?) ORDER BY m.rid",
                (*key, to_iso(now)),
            ).fetchall()
            out = []
            for r in rows:
                m = row_to_memory(r)
                last = max(m.updated_at, r[22] or "")
                out.append(
                    Row(
                        id=m.id, memory=m.memory, hash=m.hash, actor_id=m.actor_id, role=m.role, metadata=m.metadata,
                        timestamp=m.timestamp, created_at=m.created_at, expires_at=m.expires_at,
                        embedding=_vector(r[20]), retrievals=int(r[21] or 0), last_active=last,
                        episodic=m.metadata.get("memory_type") == "episodic", summarised=bool(r[23]),
                        kept_apart=bool(r[24]),
                    )
                )  # fmt: skip
            return out

        return self._snapshot(run)

    def access(self, memory_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Each given memory's ``(retrievals, last retrieved)``, for those ever retrieved."""
        ids = list(dict.fromkeys(memory_ids))
        out: dict[str, tuple[int, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._read(
                f"SELECT memory_id, retrievals, last_retrieved FROM memory_access WHERE memory_id IN ({marks})", chunk
            ):
                out[r[0]] = (int(r[1]), r[2])
        return out

    def fetch_active(self, rids: Iterable[int]) -> dict[int, tuple[StoredMemory, str]]:
        """Memories by row id, each with its last activity (the later of its last change and its
        last retrieval): ``fetch`` and what decay needs, in one read."""
        keys = list(dict.fromkeys(rids))
        out: dict[int, tuple[StoredMemory, str]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self._read(
                f"SELECT {COLUMNS}, a.last_retrieved FROM memories m LEFT JOIN memory_access a "
                f"ON a.memory_id = COALESCE(m.version_of, m.id) WHERE m.rid IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                memory = row_to_memory(r)
                out[int(r[0])] = (memory, max(memory.updated_at, r[20] or ""))
        return out

    def linked(self, memory_id: str) -> builtins.list[StoredMemory]:
        """The memories an episodic memory summarises (those still stored), oldest first."""
        rows = self._read(
            f"SELECT {COLUMNS} FROM memory_links l JOIN memories m ON m.id = l.linked_id "
            "WHERE l.memory_id = ? ORDER BY m.timestamp, m.rid",
            (memory_id,),
        )
        return [row_to_memory(r) for r in rows]

    def profile(self, scope: Scope) -> tuple[dict[str, Any], str, str] | None:
        """The stored profile of one exact scope: ``(profile, input fingerprint, updated_at)``."""
        rows = self._read(
            "SELECT profile, input, updated_at FROM profiles WHERE user_id = ? AND agent_id = ? AND run_id = ?",
            (scope.user_id or "", scope.agent_id or "", scope.run_id or ""),
        )
        return (json.loads(rows[0][0]), rows[0][1], rows[0][2]) if rows else None

    # -- writes ----------------------------------------------------------------------------------
    def record_access(self, hits: Mapping[str, tuple[int, str]]) -> None:
        """Add retrievals: memory id -> (times returned, last time); unknown ids are skipped."""
        items = sorted(hits.items())
        if not items:
            return

        def run(tx: Tx) -> None:
            tx.executemany(
                "INSERT INTO memory_access (memory_id, retrievals, last_retrieved) SELECT ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM memories WHERE id = ?) ON CONFLICT (memory_id) DO UPDATE SET "
                "retrievals = memory_access.retrievals + excluded.retrievals, last_retrieved = CASE WHEN "
                "excluded.last_retrieved > memory_access.last_retrieved THEN excluded.last_retrieved "
                "ELSE memory_access.last_retrieved END",
                [(mid, n, last, mid) for mid, (n, last) in items],
            )

        self._write(run)

    def _active(self, tx: Tx, memory_id: str, content_hash: str, key: tuple[str, str, str]) -> StoredMemory | None:
        row = tx.execute(f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? AND {ACTIVE}", (memory_id,)).fetchone()
        if row is None or (row[2], row[3], row[4]) != key or row[8] != content_hash:
            return None
        return row_to_memory(row)

    def merge(
        self,
        scope: Scope,
        keep: tuple[str, str],
        others: Sequence[tuple[str, str]],
        now: datetime,
        rewrite: NewMemory | None = None,
    ) -> MergeOutcome | None:
        """Merge ``others`` (``(id, hash)`` as the plan saw them) into ``keep`` in one transaction.

        Each merged memory leaves search (state ``merged``, ``merged_into`` set), its provenance,
        entity links and retrievals join the kept one's, and history records a MERGE. ``rewrite``
        (an LLM's merged text) replaces the kept memory's text, whose old text stays a past version.
        Anything changed since the plan was made is left alone; None when nothing was merged.
        """
        key = (scope.user_id or "", scope.agent_id or "", scope.run_id or "")
        at = to_iso(now)

        def run(tx: Tx) -> MergeOutcome | None:
            tx.lock_scope(key)
            kept = self._active(tx, keep[0], keep[1], key)
            if kept is None:
                return None
            gone = [m for m in (self._active(tx, i, h, key) for i, h in others if i != keep[0]) if m is not None]
            if not gone:
                return None
            text = kept.memory
            for m in gone:
                tx.execute(
                    "UPDATE memories SET state = 'merged', merged_into = ?, valid_until = ?, updated_at = ? "
                    "WHERE id = ?",
                    (kept.id, at, at, m.id),
                )
                tx.execute("UPDATE memories SET merged_into = ? WHERE merged_into = ?", (kept.id, m.id))
                tx.execute(
                    "INSERT INTO memory_sources (memory_id, sid) SELECT ?, sid FROM memory_sources WHERE memory_id = ? "
                    "ON CONFLICT DO NOTHING",
                    (kept.id, m.id),
                )
                tx.execute(
                    "INSERT INTO entity_mentions (entity_id, memory_id) SELECT entity_id, ? FROM entity_mentions "
                    "WHERE memory_id = ? ON CONFLICT DO NOTHING",
                    (kept.id, m.id),
                )
                tx.execute(
                    "INSERT INTO memory_links (memory_id, linked_id) SELECT memory_id, ? FROM memory_links "
                    "WHERE linked_id = ? ON CONFLICT DO NOTHING",
                    (kept.id, m.id),
                )
                self._move_access(tx, m.id, kept.id)
            if rewrite is not None and rewrite.hash != kept.hash:
                clash = tx.execute(
                    f"SELECT 1 FROM memories m WHERE m.user_id = ? AND m.agent_id = ? AND m.run_id = ? "
                    f"AND m.actor_id = ? AND m.hash = ? AND {ACTIVE}",
                    (*key, kept.actor_id or "", rewrite.hash),
                ).fetchone()
                if clash is None:
                    keep_version(tx, kept, at, at)
                    tx.execute(
                        "UPDATE memories SET memory = ?, search_text = ?, n_terms = ?, hash = ?, updated_at = ?, "
                        "embedding = ? WHERE id = ?",
                        (rewrite.memory, rewrite.search_text, len(rewrite.search_text.split()), rewrite.hash, at,
                         tx.vector(rewrite.embedding), kept.id),
                    )  # fmt: skip
                    insert_passages(tx, kept.rid, rewrite.passages)
                    replace_graph(tx, rewrite, kept.id, at)
                    record(tx, kept.id, "UPDATE", kept.memory, rewrite.memory, at, at, key)
                    text = rewrite.memory
            for m in gone:
                record(tx, m.id, "MERGE", m.memory, text, at, at, key)
            return MergeOutcome(into=kept.id, merged=tuple(m.id for m in gone), memory=text)

        return self._write(run)

    @staticmethod
    def _move_access(tx: Tx, source: str, target: str) -> None:
        row = tx.execute(
            "SELECT retrievals, last_retrieved FROM memory_access WHERE memory_id = ?", (source,)
        ).fetchone()
        if row is None:
            return
        tx.execute(
            "INSERT INTO memory_access (memory_id, retrievals, last_retrieved) VALUES (?, ?, ?) "
            "ON CONFLICT (memory_id) "
            "DO UPDATE SET retrievals = memory_access.retrievals + excluded.retrievals, last_retrieved = CASE WHEN "
            "excluded.last_retrieved > memory_access.last_retrieved THEN excluded.last_retrieved "
            "ELSE memory_access.last_retrieved END",
            (target, int(row[0]), row[1]),
        )

    def supersede(self, scope: Scope, old: tuple[str, str], new: tuple[str, str], now: datetime) -> bool:
        """End ``old`` because the newer ``new`` contradicts it (both ``(id, hash)`` as planned).

        As when reconciliation invalidates a fact: the old text stays a past version true until the
        newer memory's time (``search(as_of=...)`` and ``history`` keep it), the relations it stated
        end, and history records a DELETE. False when either memory changed since the plan.
        """
        key = (scope.user_id or "", scope.agent_id or "", scope.run_id or "")
        at = to_iso(now)

        def run(tx: Tx) -> bool:
            tx.lock_scope(key)
            gone, newer = self._active(tx, old[0], old[1], key), self._active(tx, new[0], new[1], key)
            if gone is None or newer is None:
                return False
            until = max(newer.timestamp, gone.timestamp)
            keep_version(tx, gone, until, at)
            tx.execute("DELETE FROM memories WHERE id = ?", (gone.id,))
            invalidate_memory(tx, gone.id, until)
            tx.execute("DELETE FROM memory_access WHERE memory_id = ?", (gone.id,))
            tx.execute("UPDATE memories SET merged_into = ? WHERE merged_into = ?", (newer.id, gone.id))
            record(tx, gone.id, "DELETE", gone.memory, None, at, until, key)
            return True

        return self._write(run)

    def add_summary(self, row: NewMemory, linked: Sequence[str], now: datetime) -> builtins.list[str] | None:
        """Write an episodic memory linked to the memories it summarises, in one transaction.

        Links go only to memories still active in the summary's exact scope and not yet covered by
        another summary (a concurrent pass may have written one); with fewer than two left nothing
        is written. Returns the ids linked, or None.
        """
        key = (row.user_id or "", row.agent_id or "", row.run_id or "")
        at = to_iso(now)

        def run(tx: Tx) -> builtins.list[str] | None:
            tx.lock_scope(key)
            ids = list(dict.fromkeys(linked))
            marks = ",".join("?" * len(ids))
            found = {
                r[0]
                for r in tx.execute(
                    f"SELECT m.id FROM memories m WHERE m.id IN ({marks}) AND m.user_id = ? AND m.agent_id = ? "
                    f"AND m.run_id = ? AND {ACTIVE} "
                    "AND NOT EXISTS (SELECT 1 FROM memory_links l WHERE l.linked_id = m.id)",
                    (*ids, *key),
                ).fetchall()
            }
            keep = [i for i in ids if i in found]
            if len(keep) < 2:
                return None
            if tx.execute(
                f"SELECT 1 FROM memories m WHERE m.user_id = ? AND m.agent_id = ? AND m.run_id = ? AND m.actor_id = ? "
                f"AND m.hash = ? AND {ACTIVE}",
                (*key, row.actor_id or "", row.hash),
            ).fetchone():
                return None
            insert_row(tx, row, None)
            write_graph(tx, row, row.id, at)
            record(tx, row.id, "ADD", None, row.memory, at, row.timestamp, key)
            tx.executemany("INSERT INTO memory_links (memory_id, linked_id) VALUES (?, ?)", [(row.id, i) for i in keep])
            tx.execute(
                "INSERT INTO memory_sources (memory_id, sid) SELECT DISTINCT ?, ms.sid FROM memory_sources ms "
                f"WHERE ms.memory_id IN ({','.join('?' * len(keep))}) ON CONFLICT DO NOTHING",
                (row.id, *keep),
            )
            return keep

        return self._write(run)

    def archive(self, scope: Scope, items: Sequence[tuple[str, str]], now: datetime) -> builtins.list[str]:
        """Archive memories (``(id, hash)`` as planned) of one exact scope in one transaction: they
        leave search and ``get_all`` (``include_archived`` shows them), ``get`` still finds them,
        history records an ARCHIVE. Returns the ids archived (those unchanged since the plan)."""
        key = (scope.user_id or "", scope.agent_id or "", scope.run_id or "")
        at = to_iso(now)

        def run(tx: Tx) -> builtins.list[str]:
            tx.lock_scope(key)
            done = []
            for memory_id, content_hash in items:
                m = self._active(tx, memory_id, content_hash, key)
                if m is None:
                    continue
                tx.execute(
                    "UPDATE memories SET state = 'archived', valid_until = ?, updated_at = ? WHERE id = ?",
                    (at, at, m.id),
                )
                record(tx, m.id, "ARCHIVE", m.memory, None, at, at, key)
                done.append(m.id)
            return done

        return self._write(run)

    def restore(self, memory_id: str, now: datetime) -> StoredMemory:
        """Make an archived or merged memory active again (history records an ADD).

        Raises:
            MemoryNotFound: no memory has this id.
            InvalidRequest: it is active already, or an active memory of its scope has its text.
        """
        at = to_iso(now)

        def run(tx: Tx) -> StoredMemory:
            select = f"SELECT {COLUMNS} FROM memories m WHERE m.id = ? AND m.version_of IS NULL"
            row = tx.execute(select, (memory_id,)).fetchone()
            if row is not None and tx.lock_scope((row[2], row[3], row[4])):
                row = tx.execute(select, (memory_id,)).fetchone()
            if row is None:
                raise MemoryNotFound(f"no memory with id {memory_id!r}")
            if row[18] is None:
                raise InvalidRequest(
                    f"memory {memory_id!r} is active already: only archived or merged memories are restored"
                )
            clash = tx.execute(
                "SELECT m.id FROM memories m WHERE m.user_id = ? AND m.agent_id = ? AND m.run_id = ? "
                f"AND m.actor_id = ? "
                f"AND m.hash = ? AND {ACTIVE}",
                (row[2], row[3], row[4], row[5], row[8]),
            ).fetchone()
            if clash is not None:
                raise InvalidRequest(
                    f"memory {clash[0]!r} of the same scope has this text: it cannot be restored beside it"
                )
            tx.execute(
                "UPDATE memories SET state = NULL, merged_into = NULL, valid_until = NULL, updated_at = ? WHERE id = ?",
                (at, memory_id),
            )
            record(tx, memory_id, "ADD", None, row[7], at, at, (row[2], row[3], row[4]))
            restored = tx.execute(f"SELECT {COLUMNS} FROM memories m WHERE m.id = ?", (memory_id,)).fetchone()
            return row_to_memory(restored)

        return self._write(run)

    def put_profile(self, scope: Scope, profile: Mapping[str, Any], fingerprint: str, now: datetime) -> None:
        """Store one exact scope's profile (replacing the one before)."""
        key = (scope.user_id or "", scope.agent_id or "", scope.run_id or "")

        def run(tx: Tx) -> None:
            tx.lock_scope(key)
            tx.execute(
                "INSERT INTO profiles (user_id, agent_id, run_id, profile, input, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (user_id, agent_id, run_id) DO UPDATE SET profile = excluded.profile, "
                "input = excluded.input, updated_at = excluded.updated_at",
                (*key, json.dumps(profile, ensure_ascii=False), fingerprint, to_iso(now)),
            )

        self._write(run)

    def lease(self, name: str, holder: str, seconds: float, now: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``now + seconds`` (epoch); False
        while another holder's lease runs. A crashed holder's lease lapses after ``seconds``.

        One upsert decides, so two processes racing for a free lease cannot both win: the row's
        unique key serialises them and the loser's update finds the winner's live lease.
        """

        def run(tx: Tx) -> bool:
            tx.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "holder = excluded.holder, expires = excluded.expires "
                "WHERE leases.holder = excluded.holder OR leases.expires <= ?",
                (name, holder, now + seconds, now),
            )
            row = tx.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
            return row is not None and row[0] == holder

        return self._write(run)

    def release(self, name: str, holder: str) -> None:
        """Give the lease up (if ``holder`` still holds it)."""
        self._write(lambda tx: tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder)))
