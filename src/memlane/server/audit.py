"""The audit log file: one JSON line per write or deletion (who, what, which ids, when, outcome).

It never holds memory text, metadata or queries: only key ids, scope ids, memory ids, events and
statuses. Lines are appended with one ``write`` on an ``O_APPEND`` descriptor, so several worker
processes can share the file without interleaving lines. This is the embedded store's audit log;
on PostgreSQL the records go to a table instead (:mod:`memlane.server.audit_postgres`).
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AuditLog", "AuditSink", "stamped"]


class AuditSink(Protocol):
    """Where audit records go: one record per write request (who, what, which ids, the outcome)."""

    def write(self, record: dict[str, Any]) -> None:
        """Record one request (stamped with the time as ``at``); never blocks on the network."""

    def read(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The last ``limit`` records, oldest first (after everything written so far is stored)."""

    def close(self) -> None:
        """Store every record written so far and release the sink."""


def stamped(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the log keeps it: the time first, as ``at`` (UTC, milliseconds)."""
    return {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}


class AuditLog:
    """Appends audit records to a JSON-lines file (created with its directory on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record, stamped with the time."""
        data = (json.dumps(stamped(record), ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, data)

    def read(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The last ``limit`` records, oldest first ([] before the first write)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in deque(lines, maxlen=limit) if line.strip()]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
