"""The scheduled consolidation pass: ``memlane serve --consolidate-every 1h``.

Every server process (every uvicorn worker of every server) runs one
:class:`ConsolidationScheduler` thread. When a pass is due it takes the store's lease
``"consolidate"`` (one atomic upsert, :meth:`memlane.protocols.Store.lease`), runs
``Memory.consolidate()`` over the whole store, renewing the lease after each scope, and writes
the counts to the log and to the audit log (``"action": "consolidate", "by": "scheduler"``; ids
and counts, never memory text).

After a pass the lease is not released but kept for ``every`` seconds, as a cooldown: the lease
row then also says when the last pass ran, so N servers sharing a store run one pass per interval
between them, not N, and a server that restarts does not start a pass the interval forbids. (The
lease row is the only state the servers share; releasing it would make "one runner at a time" hold
but let every server run its own pass each interval.) A pass stopped by a shutdown, or one that
lost its lease, releases it so another server may go on. A crashed runner's lease lapses after
:data:`PASS_LEASE` seconds (or the cooldown); each step of a pass is its own transaction, so a
pass cut short leaves nothing half done and the next one finishes the work.

Holders are ``host:pid:random``, unique per process; lease times are ``time.time()``, so servers
on several hosts want their clocks in sync (NTP), as the lease only compares them.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from memlane import ConsolidationReport, InvalidRequest, Memory
from memlane.server.audit import AuditSink

__all__ = ["LEASE", "PASS_LEASE", "ConsolidationScheduler", "holder_id", "parse_interval"]

log = logging.getLogger("memlane.server")

LEASE = "consolidate"
# How long a running pass holds the lease before it must renew it (after each scope): one scope
# with an LLM takes seconds to minutes; a runner that died frees the store after this.
PASS_LEASE = 600.0
# How often a process whose pass is not due, or whose lease another holds, looks again (at most).
POLL = 60.0

_PROBE = "memlane:scheduler"  # the scope of the read that opens the store (it holds nothing)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)


def parse_interval(text: str) -> float:
    """Seconds from an interval such as ``30s``, ``15m``, ``1h``, ``1d`` or ``1.5h`` (plain: seconds).

    Raises:
        InvalidRequest: not a positive number followed by s, m, h or d.
    """
    match = _INTERVAL.fullmatch(text) if isinstance(text, str) else None
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()] if match else math.nan
    if not 0 < seconds < math.inf:
        raise InvalidRequest(f"{text!r} is not an interval: give a positive number and a unit, e.g. 30s, 15m, 1h or 1d")
    return seconds


def holder_id() -> str:
    """A lease holder name unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class _Stopped(Exception):
    """The pass stops between two scopes: the server is shutting down, or the lease was lost."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def counts(report: ConsolidationReport) -> dict[str, Any]:
    """A report as the log keeps it: how many of each change, never memory text."""
    return {
        "dry_run": report["dry_run"],
        "scopes": report["scopes"],
        "examined": report["examined"],
        "merged": sum(len(m["ids"]) for m in report["merged"]),
        "superseded": len(report["superseded"]),
        "summaries": len(report["summaries"]),
        "archived": len(report["archived"]),
        "profiles": len(report["profiles"]),
        "llm_calls": report["usage"]["llm_calls"],
        "seconds": report["seconds"],
    }


class ConsolidationScheduler:
    """A background thread that runs ``consolidate()`` over the whole store every ``every`` seconds,
    one pass at a time across every process sharing the store.

    Args:
        memory: returns the engine to consolidate (the server's, looked up at each pass).
        every: seconds from the end of one pass (by any holder) to the start of the next.
        audit: where each pass is recorded (the server's audit log), or None.
        holder: this process's lease holder name (default :func:`holder_id`).
        pass_lease: seconds a running pass holds the lease between renewals.
        clock: epoch seconds (the lease's time).
    """

    def __init__(
        self,
        memory: Callable[[], Memory],
        every: float,
        *,
        audit: AuditSink | None = None,
        holder: str | None = None,
        pass_lease: float = PASS_LEASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(every, int | float) or isinstance(every, bool) or not 0 < every < math.inf:
            raise InvalidRequest(f"every must be a positive number of seconds, got {every!r}")
        self.every = float(every)
        self.holder = holder or holder_id()
        self._memory = memory
        self._audit = audit
        self._pass_lease = pass_lease
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_due = 0.0  # the first look is at once: the lease says whether a pass is due
        self._opened: Memory | None = None

    def start(self) -> None:
        """Start the thread (a daemon: it never keeps a process alive)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="memlane-consolidate", daemon=True)
            self._thread.start()
            log.info("scheduled consolidation every %g s (lease holder %s)", self.every, self.holder)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread; a running pass stops after its current scope and releases the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # a store that went away: look again later, never let the thread die
                log.exception("scheduled consolidation: could not check or take the lease")
                self._next_due = self._clock() + min(self.every, POLL)
            self._stop.wait(max(0.01, min(self._next_due - self._clock(), POLL)))

    def run_due(self) -> ConsolidationReport | None:
        """Run a pass if one is due and the lease is free; the report, or None when none ran.

        Raises:
            StoreError: the lease could not be read or taken.
        """
        now = self._clock()
        if now < self._next_due or self._stop.is_set():
            return None
        memory = self._memory()
        if memory is not self._opened:
            # Memory opens its store (migrations included) on first use; ``store`` alone does not.
            memory.get_all(user_id=_PROBE, limit=1)
            self._opened = memory
        store = memory.store
        if not store.lease(LEASE, self.holder, self._pass_lease, now):
            self._next_due = now + min(self.every, POLL)  # another holder's pass, or its cooldown
            return None

        def renew(done: int, total: int) -> None:
            if self._stop.is_set():
                raise _Stopped("the server is stopping")
            if not store.lease(LEASE, self.holder, self._pass_lease, self._clock()):
                raise _Stopped("another holder took the lease (this pass outlived it)")

        report: ConsolidationReport | None = None
        error: BaseException | None = None
        try:
            report = memory.consolidate(progress=renew)
        except _Stopped as exc:
            store.release(LEASE, self.holder)
            log.warning("scheduled consolidation stopped after part of the store: %s", exc)
            self._record(now, self._clock(), None, "stopped")
            self._next_due = self._clock() + min(self.every, POLL)
            return None
        except Exception as exc:  # an LLM or store failure: done steps stay done; retry next interval
            error = exc
            log.warning("scheduled consolidation failed: %s: %s", type(exc).__name__, exc)
        finished = self._clock()
        store.lease(LEASE, self.holder, self.every, finished)  # the cooldown: no pass before finished + every
        self._next_due = finished + self.every
        self._record(now, finished, report, None if error is None else type(error).__name__)
        return report

    def _record(self, started: float, finished: float, report: ConsolidationReport | None, error: str | None) -> None:
        record: dict[str, Any] = {
            "key_id": None, "action": "consolidate", "by": "scheduler", "holder": self.holder,
            "status": "ok" if error is None else "error", "started_at": _iso(started), "finished_at": _iso(finished),
        }  # fmt: skip
        if report is not None:
            record |= counts(report)
            log.info("scheduled consolidation by %s: %s", self.holder, counts(report))
        if error is not None:
            record["error"] = error
        if self._audit is not None:
            try:
                self._audit.write(record)
            except Exception:
                log.exception("scheduled consolidation: could not write the audit record")
