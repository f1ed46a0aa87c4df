"""The audit log in PostgreSQL: records queued by the request, written in batches by one thread.

The trade-off, chosen so auditing never slows a request:

- ``write`` only stamps the record and queues it (microseconds, no network); a background thread
  inserts whatever has queued in one statement, so under load one round trip stores hundreds of
  records and at rest a record is in the table a few milliseconds after its request ends.
- A clean shutdown loses nothing: ``close`` (the server's shutdown, after the last request) waits
  until the queue is stored. If the database stays unreachable past ``close_timeout``, each record
  still queued is written to the server log at ERROR level, as JSON, so it can be replayed.
- A crash of the process (``kill -9``, power loss) loses the records queued and not yet written:
  the last few milliseconds of writes, or more while the database is unreachable (the thread
  retries with backoff; those requests mostly fail on the same database and are answered 503).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from memlane import StoreError
from memlane.server.audit import stamped

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresAuditLog"]

log = logging.getLogger("memlane.server")

Connect = Callable[[], AbstractContextManager["psycopg.Connection[Any]"]]


def _clean(value: Any) -> Any:
    """A value jsonb accepts: no NUL in strings, no NaN or infinity (the file log would keep them)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class PostgresAuditLog:
    """Audit records in ``<schema>.audit_log`` (see the module docstring for when they are stored).

    Args:
        connect: a context manager giving a pooled autocommit connection (errors as ``StoreError``).
        table: the schema-qualified table, e.g. ``"memlane".audit_log``.
        describe: where the table is, for messages.
        batch: records per statement at most.
        close_timeout: seconds ``close`` keeps trying to store the queue.
    """

    def __init__(
        self, connect: Connect, table: str, describe: str, *, batch: int = 500, close_timeout: float = 10.0
    ) -> None:
        self._connect = connect
        self._table = table
        self._describe = describe
        self._batch = batch
        self._close_timeout = close_timeout
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._queued = 0
        self._stored = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline = math.inf

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record, stamped with the time; it is stored in the background."""
        line = _clean(stamped(record))
        with self._cond:
            self._pending.append(line)
            self._queued += 1
            if self._thread is None or not self._thread.is_alive():
                self._closing, self._deadline = False, math.inf  # written after close: store it too
                self._thread = threading.Thread(target=self._run, name="memlane-audit", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is stored; False if ``timeout`` passed first."""
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._stored >= target, timeout)

    def read(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The last ``limit`` records, oldest first, after storing what is queued.

        Raises:
            StoreError: the database failed.
        """
        self.flush(self._close_timeout)
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT record FROM (SELECT id, record FROM {self._table} ORDER BY id DESC LIMIT %s) AS t ORDER BY id",
                (limit,),
            ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        """Store the queue (trying for up to ``close_timeout`` seconds), then stop the thread."""
        with self._cond:
            self._closing, self._deadline = True, time.monotonic() + self._close_timeout
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(self._close_timeout + 5)
        with self._cond:
            left, self._pending = self._pending, []
            self._stored += len(left)
            self._cond.notify_all()
        for record in left:
            log.error("audit record not stored in %s: %s", self._describe, json.dumps(record, default=str))

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """The records to store next, or None when the thread should stop."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._pending) or self._closing)
            if not self._pending or time.monotonic() > self._deadline:
                return None
            return self._pending[: self._batch]

    def _run(self) -> None:
        backoff = 0.05
        while (batch := self._next_batch()) is not None:
            try:
                self._insert(batch)
            except StoreError as exc:
                import psycopg

                if not isinstance(exc.__cause__, psycopg.DataError):
                    log.warning("audit records wait for %s (retrying in %.1f s): %s", self._describe, backoff, exc)
                    with self._cond:
                        self._cond.wait(backoff)
                    backoff = min(5.0, backoff * 2)
                    continue
                # The database refused these records themselves: keep them in the server log.
                for record in batch:
                    log.error("audit record refused by %s: %s", self._describe, json.dumps(record, default=str))
            backoff = 0.05
            with self._cond:
                del self._pending[: len(batch)]
                self._stored += len(batch)
                self._cond.notify_all()

    def _insert(self, batch: list[dict[str, Any]]) -> None:
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO {self._table} (record) SELECT r FROM jsonb_array_elements(%s::jsonb) "
                "WITH ORDINALITY AS x (r, n) ORDER BY n",
                (json.dumps(batch, default=str),),
            )
