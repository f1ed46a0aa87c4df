"""Re-embedding a SQL store with another embedder: staged vectors, then one switching transaction.

``memlane.reembed`` drives it; the store side is this mixin of both SQL stores:

- :meth:`Reembedding.reembed_begin` records the target embedder (``meta.embedder_next``). Nothing
  else changes: the store keeps its embedder, and every process keeps reading and writing it.
- :meth:`Reembedding.reembed_pending` / :meth:`Reembedding.reembed_stage`: the method pair, per
  vector table (:data:`VECTOR_TABLES`). Pending rows are those without a staged vector; a batch of
  new vectors is staged in ``reembed_vectors`` in one transaction, each only if its row still
  holds the text that was embedded. Triggers drop a row's staged vector when its text changes or
  the row goes, so an add, update or delete by any process during the run makes that row pending
  again. Staged batches survive a crash: a rerun continues with the rows still pending.
- :meth:`Reembedding.reembed_switch`: in one transaction that holds off writers, check nothing is
  pending, move every staged vector into its table (the backend's ``_swap_vectors``), record the
  new embedder and empty the staging table. Before it commits, readers see the old embedder's
  store; after it, the new one's (processes still open with the old embedder get
  ``EmbedderMismatch`` on their next search or write).

A new table of vectors is one more :class:`VectorTable` entry, plus the two triggers that keep its
staged vectors honest (in a migration), plus a line in each backend's ``_swap_vectors`` if the
table needs more than a column swap.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from memlane.errors import InvalidRequest
from memlane.protocols import Vectors
from memlane.stores.sql_tx import Recorded, Tx

__all__ = ["VECTOR_TABLES", "PendingRow", "ReembedStart", "Reembedding", "VectorTable"]

T = TypeVar("T")
_NEXT = "embedder_next"  # an 'embedder_%' key: SQLite's reset clears it with the embedder record


@dataclass(frozen=True)
class VectorTable:
    """A table whose rows carry a vector, and the text each vector embeds.

    Attributes:
        name: the table; its vector column is ``embedding`` and its integer key ``key``.
        key: the key column.
        source: the FROM clause (the table as ``alias``, joined to what holds its text).
        alias: the table's alias in ``source``.
        text: four SQL expressions: the content, the speaker name ('' for none), and the
            character range of the content that was embedded (``-1, -1``: all of it).
    """

    name: str
    key: str
    source: str
    alias: str
    text: tuple[str, str, str, str]

    @property
    def key_expr(self) -> str:
        return f"{self.alias}.{self.key}"


VECTOR_TABLES: tuple[VectorTable, ...] = (
    # A long memory's own vector is that of its first passage (memlane._indexing).
    VectorTable(
        "memories",
        "rid",
        "memories m LEFT JOIN passages p0 ON p0.rid = m.rid AND p0.seq = 0",
        "m",
        ("m.memory", "m.actor_id", "COALESCE(p0.char_start, -1)", "COALESCE(p0.char_end, -1)"),
    ),
    VectorTable(
        "passages",
        "pid",
        "passages p JOIN memories m ON m.rid = p.rid",
        "p",
        ("m.memory", "m.actor_id", "p.char_start", "p.char_end"),
    ),
)


@dataclass(frozen=True)
class PendingRow:
    """A row still waiting for its new vector, with the text its vector embeds."""

    key: int
    content: str
    speaker: str
    start: int
    end: int

    @property
    def embedded(self) -> tuple[str, str | None]:
        """(the embedded part of the content, the speaker name or None)."""
        part = self.content[self.start : self.end] if self.start >= 0 else self.content
        return part, (self.speaker or None)


@dataclass(frozen=True)
class ReembedStart:
    """What ``reembed_begin`` found.

    Attributes:
        recorded: the embedder the store records, or None (a new or reset store).
        total: vectors in the store.
        staged: vectors already staged for this target (by an interrupted run).
        discarded: vectors staged for another target, dropped now.
    """

    recorded: Recorded | None
    total: int
    staged: int
    discarded: int


def _table(name: str) -> VectorTable:
    for table in VECTOR_TABLES:
        if table.name == name:
            return table
    raise InvalidRequest(f"no vector table {name!r}; tables: {[t.name for t in VECTOR_TABLES]}")


def _meta(tx: Tx) -> dict[str, str]:
    keys = "('embedder_id', 'embedder_dimension', '" + _NEXT + "')"
    return dict(tx.execute(f"SELECT key, value FROM meta WHERE key IN {keys}").fetchall())


def _recorded(meta: dict[str, str]) -> Recorded | None:
    if "embedder_id" not in meta:
        return None
    return meta["embedder_id"], int(meta["embedder_dimension"])


def _target(meta: dict[str, str]) -> Recorded | None:
    raw = meta.get(_NEXT)
    if raw is None:
        return None
    data = json.loads(raw)
    return str(data["id"]), int(data["dimension"])


def _check_target(tx: Tx, target: Recorded) -> None:
    found = _target(_meta(tx))
    if found != target:
        raise InvalidRequest(
            f"the store is now being re-embedded with {found[0]!r} ({found[1]} dimensions), not {target[0]!r}: "
            "another `memlane reembed` started meanwhile; let it finish"
            if found is not None
            else f"the re-embedding with {target[0]!r} was finished or reset by another process; nothing to do"
        )


def _pending_sql(table: VectorTable, *, count: bool = False) -> str:
    key = table.key_expr
    unstaged = f"NOT EXISTS (SELECT 1 FROM reembed_vectors s WHERE s.tbl = ? AND s.k = {key})"
    if count:
        return f"SELECT count(*) FROM {table.source} WHERE {unstaged}"
    columns = ", ".join(table.text)
    return f"SELECT {key}, {columns} FROM {table.source} WHERE {key} > ? AND {unstaged} ORDER BY {key} LIMIT ?"


def _pending_count(tx: Tx) -> int:
    return sum(int(tx.execute(_pending_sql(t, count=True), (t.name,)).fetchone()[0]) for t in VECTOR_TABLES)


class Reembedding:
    """The re-embedding half of a SQL store (see the module docstring)."""

    # -- what a backend supplies (SQLStore has the first two) ---------------------------------
    def _write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _snapshot(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _attach(self) -> None:
        """Connect and migrate without checking the embedder (``open`` checks it)."""
        raise NotImplementedError

    def _lock_for_switch(self, tx: Tx) -> None:
        """Hold off every other writer until the switch commits."""
        raise NotImplementedError

    def _swap_vectors(self, tx: Tx, table: VectorTable, dimension: int) -> None:
        """Replace every vector of ``table`` by its staged one (all rows have one)."""
        raise NotImplementedError

    # -- the public steps ----------------------------------------------------------------------
    def reembed_tables(self) -> builtins.list[str]:
        """The tables whose vectors ``reembed`` renews, in the order it works on them."""
        return [t.name for t in VECTOR_TABLES]

    def reembed_begin(self, target_id: str, dimension: int) -> ReembedStart:
        """Record ``(target_id, dimension)`` as the embedder being moved to (in one transaction).

        Vectors staged for another target are dropped. A store that records no embedder yet
        records the target at once (it holds no vectors). Nothing changes when the target is the
        recorded embedder (``recorded`` says so).

        Raises:
            StoreError: the store cannot be opened or written.
        """
        self._attach()
        target = (target_id, int(dimension))

        def run(tx: Tx) -> ReembedStart:
            meta = _meta(tx)
            recorded = _recorded(meta)
            if recorded is None:
                tx.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("embedder_id", target_id), ("embedder_dimension", str(dimension))],
                )
                return ReembedStart(None, 0, 0, 0)
            discarded = 0
            if _target(meta) != target:
                discarded = int(tx.execute("SELECT count(*) FROM reembed_vectors").fetchone()[0])
                tx.execute("DELETE FROM reembed_vectors")
                tx.execute(f"DELETE FROM meta WHERE key = '{_NEXT}'")
                if recorded != target:
                    value = json.dumps({"id": target_id, "dimension": int(dimension)})
                    tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (_NEXT, value))
            total, staged = self._counts(tx)
            return ReembedStart(recorded, total, staged, discarded)

        return self._write(run)

    def reembed_progress(self) -> tuple[int, int]:
        """(vectors in the store, vectors staged for the target so far), read in one transaction."""
        return self._snapshot(self._counts)

    @staticmethod
    def _counts(tx: Tx) -> tuple[int, int]:
        total = sum(int(tx.execute(f"SELECT count(*) FROM {t.source}").fetchone()[0]) for t in VECTOR_TABLES)
        return total, total - _pending_count(tx)

    def reembed_pending(self, table: str, after: int, limit: int) -> builtins.list[PendingRow]:
        """Up to ``limit`` rows of ``table`` with key above ``after`` and no staged vector, by key."""
        spec = _table(table)
        rows = self._snapshot(lambda tx: tx.execute(_pending_sql(spec), (after, spec.name, limit)).fetchall())
        return [PendingRow(int(r[0]), r[1], r[2] or "", int(r[3]), int(r[4])) for r in rows]

    def reembed_stage(
        self, table: str, target_id: str, dimension: int, rows: Sequence[PendingRow], vectors: Vectors
    ) -> int:
        """Stage one batch of new vectors in one transaction; returns how many were staged.

        A row whose text changed (or that was deleted) since ``reembed_pending`` read it is left
        out: it is pending again, and a later batch embeds its new text.

        Raises:
            InvalidRequest: the store is no longer being re-embedded with this target.
        """
        spec = _table(table)
        target = (target_id, int(dimension))
        content, speaker, start, end = spec.text
        sql = (
            "INSERT INTO reembed_vectors (tbl, k, embedding) "
            f"SELECT CAST(? AS TEXT), {spec.key_expr}, ? FROM {spec.source} "
            f"WHERE {spec.key_expr} = ? AND {content} = ? AND {speaker} = ? AND {start} = ? AND {end} = ? "
            "ON CONFLICT (tbl, k) DO UPDATE SET embedding = excluded.embedding"
        )

        def run(tx: Tx) -> int:
            _check_target(tx, target)
            staged = 0
            for row, vector in zip(rows, vectors, strict=True):
                params: list[Any] = [spec.name, tx.encode_vector(vector), row.key, row.content]
                params += [row.speaker, row.start, row.end]
                staged += max(0, tx.execute(sql, params).rowcount)
            return staged

        return self._write(run)

    def reembed_switch(self, target_id: str, dimension: int) -> int:
        """Switch the store to the target embedder in one transaction, if no vector is pending.

        Returns:
            0 when the store now records the target; otherwise the number of rows still
            pending (added or changed meanwhile): nothing changed, stage them and call again.
        Raises:
            InvalidRequest: the store is no longer being re-embedded with this target.
        """
        target = (target_id, int(dimension))

        def run(tx: Tx) -> int:
            self._lock_for_switch(tx)
            _check_target(tx, target)
            left = _pending_count(tx)
            if left:
                return left
            for table in VECTOR_TABLES:
                self._swap_vectors(tx, table, int(dimension))
            tx.execute("DELETE FROM reembed_vectors")
            tx.execute(f"DELETE FROM meta WHERE key IN ('embedder_id', 'embedder_dimension', '{_NEXT}')")
            tx.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("embedder_id", target_id), ("embedder_dimension", str(dimension))],
            )
            return 0

        return self._write(run)
