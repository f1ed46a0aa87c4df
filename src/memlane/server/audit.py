"""The audit log: one JSON line per write or deletion (who, what, which ids, when, outcome).

It never holds memory text, metadata or queries: only key ids, scope ids, memory ids, events and
statuses. Lines are appended with one ``write`` on an ``O_APPEND`` descriptor, so several worker
processes can share the file without interleaving lines.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]


class AuditLog:
    """Appends audit records to a JSON-lines file (created with its directory on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record, stamped with the time."""
        line = json.dumps({"at": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}, ensure_ascii=False)
        data = (line + "\n").encode()
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, data)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
