"""mem0's history database (SQLite, ``history_db_path``), read-only.

mem0 2.x keeps one row per change in table ``history``: ``id`` (a uuid4), ``memory_id``,
``old_memory``, ``new_memory``, ``event`` (ADD / UPDATE / DELETE), ``created_at`` (the memory's
creation time), ``updated_at`` (when an UPDATE or DELETE happened), ``is_deleted``, ``actor_id``,
``role``. Older releases had the same core columns, some without ``actor_id`` / ``role``, and the
oldest a ``new_value`` column; whatever is missing reads as null. The ``messages`` table (the last
ten messages of each session, mem0's extraction context) is not memories: it is counted, not read.

The file is opened read-only (``mode=ro``), so a running mem0 is never disturbed and a missing
file is never created.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from memlane.errors import ConfigError, StoreError

__all__ = ["HistoryDB", "Mem0Event"]

_CHUNK = 500
_OPTIONAL = ("old_memory", "new_memory", "new_value", "created_at", "updated_at", "actor_id", "role")


@dataclass(frozen=True)
class Mem0Event:
    """One row of mem0's history table; ``seq`` is its SQLite rowid (insertion order, breaks time ties)."""

    memory_id: str
    event: str
    old_memory: str | None
    new_memory: str | None
    created_at: str | None
    updated_at: str | None
    seq: int


class HistoryDB:
    """Reads mem0's history SQLite file.

    Args:
        path: the ``history_db_path`` of the mem0 deployment.
    Raises:
        ConfigError: the file is missing or is not a mem0 history database.
    """

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(
                f"no mem0 history database at {path}: give its path with --history-db (mem0's "
                "history_db_path, default ~/.mem0/history.db), or --no-history to import the memories "
                "without their history (the history of memories deleted in mem0 is then lost)"
            )
        self.path = path
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(history)")}
        except sqlite3.Error as exc:
            raise ConfigError(f"{path} is not a readable SQLite database ({exc})") from exc
        if not {"memory_id", "event"} <= columns:
            raise ConfigError(
                f"{path} has no mem0 history table (a table 'history' with memory_id and event columns): "
                "is it mem0's history_db_path?"
            )
        self._select = ", ".join(c if c in columns else "NULL" for c in _OPTIONAL)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[tuple[object, ...]]:
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading mem0's history database {self.path} failed: {exc}") from exc

    def memory_ids(self) -> set[str]:
        """Every memory id with at least one history row."""
        return {str(r[0]) for r in self._query("SELECT DISTINCT memory_id FROM history WHERE memory_id IS NOT NULL")}

    def events(self, memory_ids: Iterable[str]) -> dict[str, list[Mem0Event]]:
        """The history rows of these memories, by memory id, in insertion order."""
        ids = list(dict.fromkeys(memory_ids))
        out: dict[str, list[Mem0Event]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(
                f"SELECT rowid, memory_id, event, {self._select} FROM history WHERE memory_id IN ({marks}) "
                "ORDER BY rowid",
                chunk,
            )
            for r in rows:
                old, new, new_value, created, updated = (_text(v) for v in r[3:8])
                event = Mem0Event(
                    memory_id=str(r[1]), event=str(r[2] or "").upper(), old_memory=old,
                    new_memory=new if new is not None else new_value, created_at=created, updated_at=updated,
                    seq=int(str(r[0])),
                )  # fmt: skip
                out.setdefault(event.memory_id, []).append(event)
        return out

    def messages(self) -> int:
        """Rows of mem0's ``messages`` table (extraction context, not imported); 0 when it has none."""
        found = self._query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
        return int(str(self._query("SELECT count(*) FROM messages")[0][0])) if found else 0


def _text(value: object) -> str | None:
    return None if value is None else str(value)
