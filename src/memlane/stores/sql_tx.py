"""One transaction, seen the same way by every SQL backend.

The row-level logic of the stores (:mod:`memlane.stores.sql_rows`, :mod:`memlane.stores.sql_export`,
:mod:`memlane.stores.sql_store`) is written once, in SQL that SQLite and PostgreSQL both accept,
with ``?`` placeholders. A :class:`Tx` runs it on one backend's connection inside a transaction the
store opened: it translates placeholders, returns generated keys, encodes vectors, and takes the
per-scope write lock where the backend needs one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from memlane.errors import EmbedderMismatch
from memlane.protocols import Vector

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresTx", "Recorded", "Rows", "SQLiteTx", "Tx", "check_recorded", "pg_sql"]

# The embedder (id, dimension) a store was opened with: vectors written through a Tx must be its.
Recorded = tuple[str, int]


class Rows(Protocol):
    """What ``execute`` returns: a cursor's fetch methods and row count."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """A connection inside an open transaction."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    def insert(self, sql: str, params: Sequence[Any], key: str) -> int:
        """Run an ``INSERT`` of one row and return its generated ``key`` column."""
        ...

    def vector(self, value: Vector) -> Any:
        """``value`` as the backend stores an embedding (the first call checks the store still
        records the embedder it was opened with: see :func:`check_recorded`)."""
        ...

    def encode_vector(self, value: Vector) -> Any:
        """``value`` as the backend stores an embedding, unchecked (re-embedding stages other vectors)."""
        ...

    def lock_scope(self, scope: Sequence[str]) -> bool:
        """Hold the write lock of one exact scope ``(user, agent, run)`` until the transaction ends.

        Returns True when a lock was taken now (rows read before it may be stale: read them
        again), False when the backend already serialises every write (SQLite).
        """
        ...


def check_recorded(tx: Tx, opened: Recorded) -> None:
    """Refuse a write of vectors when the store now records another embedder than ``opened``.

    ``memlane reembed`` may switch a store's embedder while other processes still have it open
    with the old one; their next write of a vector fails here instead of mixing two models.

    Raises:
        EmbedderMismatch: the store records another embedder (id or dimension).
    """
    rows = dict(tx.execute("SELECT key, value FROM meta WHERE key IN ('embedder_id', 'embedder_dimension')").fetchall())
    if (rows.get("embedder_id"), rows.get("embedder_dimension")) != (opened[0], str(opened[1])):
        raise EmbedderMismatch(
            f"this store now records embedder {rows.get('embedder_id')!r} ({rows.get('embedder_dimension')} "
            f"dimensions), not {opened[0]!r} ({opened[1]}) that it was opened with: it was re-embedded "
            "(memlane reembed); configure the new embedder and reopen it"
        )


class SQLiteTx:
    """A :class:`Tx` over an ``sqlite3`` connection inside ``BEGIN IMMEDIATE``."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, opened: Recorded | None = None) -> None:
        self.conn = conn
        self._unchecked = opened

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def insert(self, sql: str, params: Sequence[Any], key: str) -> int:
        # Every table memlane inserts into keys rows by an INTEGER PRIMARY KEY: lastrowid is it.
        return int(self.conn.execute(sql, params).lastrowid or 0)

    def vector(self, value: Vector) -> Any:
        if self._unchecked is not None:
            check_recorded(self, self._unchecked)
            self._unchecked = None
        return self.encode_vector(value)

    def encode_vector(self, value: Vector) -> Any:
        return np.asarray(value, dtype="<f4").tobytes()

    def lock_scope(self, scope: Sequence[str]) -> bool:
        # BEGIN IMMEDIATE already holds the database's single write lock.
        return False


@lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """``?`` placeholders -> psycopg's ``%s`` (literal ``%`` doubled). The shared SQL holds no ``?``
    inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresTx:
    """A :class:`Tx` over a psycopg connection inside a transaction.

    Args:
        conn: the connection (pgvector's types registered on it).
        lock_space: a string that makes this store's advisory-lock keys its own (schema name).
        opened: the embedder the store was opened with (vectors written are checked against it).
    """

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any], lock_space: str, opened: Recorded | None = None) -> None:
        self.conn = conn
        self.lock_space = lock_space
        self._unchecked = opened
        self._locked: set[tuple[str, ...]] = set()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self.conn.execute(pg_sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(pg_sql(sql), rows)

    def insert(self, sql: str, params: Sequence[Any], key: str) -> int:
        row = self.conn.execute(pg_sql(f"{sql} RETURNING {key}"), params).fetchone()
        assert row is not None
        return int(row[0])

    def vector(self, value: Vector) -> Any:
        if self._unchecked is not None:
            check_recorded(self, self._unchecked)
            self._unchecked = None
        return self.encode_vector(value)

    def encode_vector(self, value: Vector) -> Any:
        return np.asarray(value, dtype=np.float32)

    def lock_scope(self, scope: Sequence[str]) -> bool:
        """A transaction-scoped advisory lock on the scope: every write that can create or change
        a memory of that exact scope holds it, so check-then-write (duplicates, reconciliation,
        conversation links) sees the same rows it writes next to, across processes and machines."""
        key = tuple(scope)
        if key in self._locked:
            return False
        self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            ("\x1f".join((self.lock_space, *key)),),
        )
        self._locked.add(key)
        return True
