"""mem0 memories and history rows as memlane portable records (:mod:`memlane.core.portable`): pure, no I/O.

A mem0 payload holds the text (``data``), mem0's md5 ``hash``, ``created_at`` / ``updated_at``, the
scope ids, ``actor_id`` / ``role`` (messages added with ``infer=False``), ``expiration_date``
(``YYYY-MM-DD``: mem0 hides the memory once that day is over in UTC), ``text_lemmatized`` (mem0's
BM25 text), ``attributed_to`` (set by mem0's extraction) and, beside them, the user's metadata.

What becomes what (the table is in docs/import-mem0.md):

- text, id, scope ids, actor_id, role, created_at, updated_at: the same memlane fields;
- expiration_date D: ``expires_at`` = D + 1 day at 00:00 UTC (the first instant mem0 hides it);
- hash: metadata ``mem0_hash`` (memlane computes its own sha256); attributed_to: metadata
  ``mem0_attributed_to``; an expiration_date that is not a date: metadata ``mem0_expiration_date``
  (mem0 never expired it either);
- text_lemmatized: dropped (memlane analyses the text itself);
- every other payload key: user metadata, unchanged.

A history row's time is ``created_at`` for an ADD and ``updated_at`` for an UPDATE or DELETE (mem0
writes the memory's creation time into ``created_at`` of every row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memlane.core.compat import expiry_of_date
from memlane.core.filters import to_iso
from memlane.core.inputs import parse_time
from memlane.core.portable import parse_records
from memlane.core.scope import SCOPE_KEYS
from memlane.core.text import content_hash
from memlane.errors import InvalidRequest
from memlane.mem0_import._history import Mem0Event

__all__ = [
    "ATTRIBUTED_KEY",
    "EXPIRATION_KEY",
    "HASH_KEY",
    "Mapped",
    "history_record",
    "map_memory",
    "scope_label",
]

HASH_KEY = "mem0_hash"
ATTRIBUTED_KEY = "mem0_attributed_to"
EXPIRATION_KEY = "mem0_expiration_date"
_FIELDS = {"data", "hash", "text_lemmatized", "created_at", "updated_at", "actor_id", "role", "expiration_date",
           "attributed_to", "id", *SCOPE_KEYS}  # fmt: skip
_EVENTS = ("ADD", "UPDATE", "DELETE")


@dataclass
class Mapped:
    """One mem0 memory as records, or why it cannot be placed.

    ``records`` holds the memory record and, when it has history, its history record; empty when
    ``problem`` says why the memory cannot be imported. ``no_scope``: the problem is only a missing
    scope id (fixed by a default user id). ``notes``: what was adapted (imported anyway).
    """

    memory_id: str
    scope: tuple[str | None, str | None, str | None] = (None, None, None)
    text_key: tuple[str, ...] | None = None  # scope, speaker and sha256 of the text: memlane's duplicate key
    records: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    problem: str | None = None
    no_scope: bool = False
    notes: list[str] = field(default_factory=list)


def scope_label(scope: Sequence[str | None]) -> str:
    """``user_id=alice agent_id=bot``: a scope as the report shows it."""
    return " ".join(f"{k}={v}" for k, v in zip(SCOPE_KEYS, scope, strict=True) if v is not None) or "(none)"


def _time(value: object) -> str | None:
    if value is None or value == "":
        return None
    try:
        return to_iso(parse_time(value, "time"))
    except (InvalidRequest, OverflowError, ValueError):
        return None


def expires_at(expiration_date: object) -> str | None:
    """mem0 shows a memory through its expiration day (UTC) and hides it from the next midnight on.

    Raises:
        ValueError: not a ``YYYY-MM-DD`` date.
    """
    if expiration_date is None or expiration_date == "":
        return None
    return to_iso(expiry_of_date(expiration_date))  # the rule mem0's call shapes use too


def _event_time(e: Mem0Event) -> str | None:
    first, second = (e.created_at, e.updated_at) if e.event == "ADD" else (e.updated_at, e.created_at)
    return _time(first) or _time(second)


def _events(
    memory_id: str, rows: Sequence[Mem0Event], scope: Mapping[str, str | None], out: Mapped
) -> list[dict[str, Any]]:
    timed: list[tuple[str, int, Mem0Event]] = []
    for e in rows:
        when = _event_time(e)
        if e.event not in _EVENTS:
            out.notes.append(f"history row of {memory_id} with event {e.event!r} left out (not ADD/UPDATE/DELETE)")
        elif when is None:
            out.notes.append(f"{e.event} history row of {memory_id} without a readable time left out")
        else:
            timed.append((when, e.seq, e))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [
        {"memory_id": memory_id, "event": e.event, "old_memory": e.old_memory, "new_memory": e.new_memory,
         "created_at": when, **scope}
        for when, _, e in timed
    ]  # fmt: skip


def history_record(memory_id: str, rows: Sequence[Mem0Event]) -> Mapped:
    """The history of a memory deleted in mem0 (its vector is gone, its history is all that is left).

    mem0's history table records no scope, so these events carry none.
    """
    out = Mapped(memory_id=memory_id)
    events = _events(memory_id, rows, dict.fromkeys(SCOPE_KEYS), out)
    if events:
        out.records = [{"type": "history", "memory_id": memory_id, "events": events}]
        out.events = len(events)
    return _checked(out)


def _scope(payload: Mapping[str, Any], default_user_id: str | None, out: Mapped) -> dict[str, str | None] | None:
    scope: dict[str, str | None] = {}
    for key in SCOPE_KEYS:
        value = payload.get(key)
        if value is not None and value != "" and not isinstance(value, str):
            out.problem = f"{key} {value!r} is not a string"
            return None
        scope[key] = value or None
    if all(v is None for v in scope.values()):
        if default_user_id is None:
            out.problem, out.no_scope = "no user_id, agent_id or run_id", True
            return None
        scope["user_id"] = default_user_id
    return scope


def _metadata(payload: Mapping[str, Any], out: Mapped) -> tuple[dict[str, Any], str | None]:
    meta = {k: v for k, v in payload.items() if k not in _FIELDS}
    if payload.get("hash") is not None:
        meta[HASH_KEY] = payload["hash"]
    if payload.get("attributed_to") is not None:
        meta[ATTRIBUTED_KEY] = payload["attributed_to"]
    try:
        expiry = expires_at(payload.get("expiration_date"))
    except ValueError:
        expiry = None
        meta[EXPIRATION_KEY] = payload.get("expiration_date")
        out.notes.append(f"{out.memory_id}: expiration_date {payload.get('expiration_date')!r} is not a date "
                         f"(mem0 never expired it): kept in metadata {EXPIRATION_KEY}")  # fmt: skip
    return meta, expiry


def map_memory(
    memory_id: str,
    payload: Mapping[str, Any],
    rows: Sequence[Mem0Event],
    *,
    default_user_id: str | None,
    now: datetime,
) -> Mapped:
    """A mem0 vector-store entry and its history rows as a memory record (+ history record).

    Args:
        memory_id: the point / row id in mem0's store (kept as memlane's id).
        payload: its payload (mem0's metadata dict).
        rows: its history rows (any order).
        default_user_id: the user id given to a memory without any scope id (None: refuse it).
        now: the import time, the creation time of last resort.
    Returns:
        A :class:`Mapped`; ``problem`` set when the memory cannot be imported.
    """
    out = Mapped(memory_id=memory_id)
    text = payload.get("data")
    if not isinstance(text, str) or not text.strip():
        out.problem = "no text (payload key 'data' is missing or empty)"
        return out
    scope = _scope(payload, default_user_id, out)
    if scope is None:
        return out
    out.scope = (scope["user_id"], scope["agent_id"], scope["run_id"])
    meta, expiry = _metadata(payload, out)
    events = _events(memory_id, rows, scope, out)
    first_add = next((e["created_at"] for e in events if e["event"] == "ADD"), None)
    created = _time(payload.get("created_at")) or first_add or _time(payload.get("updated_at"))
    if created is None:
        created = to_iso(now)
        out.notes.append(f"{memory_id}: no readable created_at; the import time stands in")
    actor = payload.get("actor_id") or None
    record: dict[str, Any] = {
        "type": "memory", "id": memory_id, "memory": text, **scope, "role": payload.get("role") or None,
        "actor_id": actor, "metadata": meta, "created_at": created,
        "updated_at": _time(payload.get("updated_at")) or created, "expires_at": expiry,
    }  # fmt: skip
    out.records = [record]
    if events:
        out.records.append({"type": "history", "memory_id": memory_id, "events": events})
        out.events = len(events)
    out.text_key = (*(v or "" for v in out.scope), str(actor or ""), content_hash(text))
    return _checked(out)


def _checked(out: Mapped) -> Mapped:
    """Validate the records as ``import_records`` will, so a bad memory is reported instead of failing a batch."""
    if not out.records:
        return out
    try:
        parse_records(out.records)
    except InvalidRequest as exc:
        out.problem = str(exc).removeprefix("record 1: ").removeprefix("record 2: ")
        out.records, out.events = [], 0
    return out
