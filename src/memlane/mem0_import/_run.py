"""The import driver: survey the mem0 deployment, then import it batch by batch, resumably.

1. Survey (reads only): every entry of the vector store is mapped once, to count memories per
   scope and find those that cannot be placed (no scope id, no text, ...) and texts that repeat in
   one scope. Memories without any scope id stop a real import here, before anything is written,
   unless a default user id is given.
2. Memories, ``batch_size`` at a time: ids memlane already knows (as a memory or in history) are
   skipped *before* embedding, so a rerun embeds nothing twice; the rest go to one
   ``import_records`` call (one transaction: a failed batch leaves nothing behind, and the next run
   picks it up again).
3. The history of memories deleted in mem0 (in the history database, not in the vector store),
   the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from memlane.core.scope import validate_scope_id
from memlane.errors import InvalidRequest, MemoryNotFound
from memlane.mem0_import._history import HistoryDB, Mem0Event
from memlane.mem0_import._mapping import Mapped, history_record, map_memory, scope_label
from memlane.mem0_import._readers import VectorReader
from memlane.mem0_import._source import Mem0Source

__all__ = ["BATCH", "Mem0ImportReport", "Target", "import_mem0"]

BATCH = 100
_SHOWN = 20  # ids listed per problem kind in the refusal message


class Target(Protocol):
    """What the import needs from ``memlane.Memory`` (``MemoryClient`` has the same methods)."""

    def get(self, memory_id: str, *, include_sources: bool = False) -> Any: ...

    def history(self, memory_id: str) -> Any: ...

    def import_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        on_conflict: str = "error",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]: ...


@dataclass
class Mem0ImportReport:
    """What an import (or a dry run) found and did. Counts are of mem0 memory ids.

    Attributes:
        found: memories in mem0's vector store.
        deleted_in_mem0: memory ids present only in the history database (deleted in mem0).
        scopes: memories per scope, ``"user_id=alice"`` -> count (as placed in memlane).
        imported: memories written (a dry run: that would be written).
        already_present: memories (or deleted memories' histories) memlane already had: skipped.
        history_events: history events written (a dry run: that would be).
        without_scope: ids with no user_id, agent_id or run_id (not imported).
        duplicates: ``"<id>: ..."``: texts repeated in one scope and speaker; memlane keeps one
            current memory per text, so these are not imported as memories (their history is).
        unmappable: ``"<id>: <reason>"``: memories that could not be imported.
        notes: what was adapted (imported anyway).
        skipped_collections: mem0's side collections not imported (the entity index).
        skipped_messages: rows of mem0's ``messages`` table (extraction context), not imported.
    """

    source: str
    dry_run: bool
    found: int = 0
    deleted_in_mem0: int = 0
    scopes: dict[str, int] = field(default_factory=dict)
    imported: int = 0
    already_present: int = 0
    history_events: int = 0
    without_scope: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unmappable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped_collections: list[str] = field(default_factory=list)
    skipped_messages: int = 0

    @property
    def problems(self) -> int:
        """Memories not imported for a reason other than being there already."""
        return len(self.without_scope) + len(self.duplicates) + len(self.unmappable)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``problems`` included)."""
        return {**asdict(self), "problems": self.problems}


@dataclass
class _Survey:
    ids: set[str] = field(default_factory=set)
    skip: set[str] = field(default_factory=set)  # unmappable or without scope: never written
    duplicates: set[str] = field(default_factory=set)  # imported as history only
    texts: dict[tuple[str, ...], str] = field(default_factory=dict)


def _known(target: Target, memory_id: str) -> bool:
    """memlane knows this id already: as a memory, or in history (a deleted one)."""
    try:
        target.get(memory_id)
        return True
    except MemoryNotFound:
        return bool(target.history(memory_id))


def _survey(reader: VectorReader, report: Mem0ImportReport, default_user_id: str | None, batch: int) -> _Survey:
    out, now = _Survey(), datetime.now(UTC)
    for page in reader.pages(batch):
        for memory_id, payload in page:
            report.found += 1
            out.ids.add(memory_id)
            m = map_memory(memory_id, payload, [], default_user_id=default_user_id, now=now)
            if m.no_scope:
                report.without_scope.append(memory_id)
                out.skip.add(memory_id)
            elif m.problem is not None:
                report.unmappable.append(f"{memory_id}: {m.problem}")
                out.skip.add(memory_id)
            elif m.text_key in out.texts:
                first = out.texts[m.text_key]
                report.duplicates.append(f"{memory_id}: same text as {first} in {scope_label(m.scope)}")
                out.duplicates.add(memory_id)
            else:
                if m.text_key is not None:
                    out.texts[m.text_key] = memory_id
                label = scope_label(m.scope)
                report.scopes[label] = report.scopes.get(label, 0) + 1
    return out


def _refuse_unscoped(ids: list[str]) -> InvalidRequest:
    shown = ", ".join(ids[:_SHOWN]) + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")
    return InvalidRequest(
        f"{len(ids)} mem0 memories have no user_id, agent_id or run_id ({shown}); memlane keeps every memory "
        "in a scope: give --default-user-id ID (default_user_id=) to import them under that user. Nothing was "
        "imported."
    )


class _Writer:
    """Sends one batch of records per ``import_records`` call and keeps the counts."""

    def __init__(self, target: Target, report: Mem0ImportReport, dry_run: bool) -> None:
        self.target, self.report, self.dry_run = target, report, dry_run

    def write(self, batch: list[Mapped]) -> None:
        """One transaction for the batch; memories memlane skipped as duplicates are reported."""
        for m in batch:
            self.report.notes.extend(m.notes)
            if m.problem is not None:
                self.report.unmappable.append(f"{m.memory_id}: {m.problem}")
        batch = [m for m in batch if m.records]
        if not batch:
            return
        if self.dry_run:
            self.report.imported += sum(m.records[0]["type"] == "memory" for m in batch)
            self.report.history_events += sum(m.events for m in batch)
            return
        result = self.target.import_records([r for m in batch for r in m.records], on_conflict="skip")
        self.report.imported += result["imported"]
        self.report.history_events += result["history"]
        if result["skipped"]:
            self._duplicates([m for m in batch if not _known(self.target, m.memory_id)])

    def _duplicates(self, skipped: list[Mapped]) -> None:
        """Memories whose text memlane already holds in their scope: reported; their history still travels."""
        for m in skipped:
            self.report.duplicates.append(
                f"{m.memory_id}: same text as a memory already in memlane in {scope_label(m.scope)}"
            )
        histories = [r for m in skipped for r in m.records if r["type"] == "history"]
        if histories:
            self.report.history_events += self.target.import_records(histories, on_conflict="skip")["history"]


def _memories(
    reader: VectorReader, history: HistoryDB | None, survey: _Survey, writer: _Writer, *,
    default_user_id: str | None, batch: int, tick: Callable[[int], None],
) -> None:  # fmt: skip
    now = datetime.now(UTC)
    for page in reader.pages(batch):
        wanted = [(i, p) for i, p in page if i not in survey.skip]
        fresh = [(i, p) for i, p in wanted if not _known(writer.target, i)]
        writer.report.already_present += len(wanted) - len(fresh)
        rows = history.events(i for i, _ in fresh) if history is not None else {}
        mapped: list[Mapped] = []
        for memory_id, payload in fresh:
            events = rows.get(memory_id, [])
            if memory_id in survey.duplicates:
                mapped.append(history_record(memory_id, events))
            else:
                mapped.append(map_memory(memory_id, payload, events, default_user_id=default_user_id, now=now))
        writer.write(mapped)
        tick(len(page))


def _deleted(history: HistoryDB, ids: list[str], writer: _Writer, batch: int, tick: Callable[[int], None]) -> None:
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        fresh = [i for i in chunk if not writer.target.history(i)]
        writer.report.already_present += len(chunk) - len(fresh)
        rows: dict[str, list[Mem0Event]] = history.events(fresh)
        writer.write([history_record(i, rows.get(i, [])) for i in fresh])
        tick(len(chunk))


@contextmanager
def _opened(source: Mem0Source) -> Iterator[tuple[VectorReader, HistoryDB | None]]:
    history = HistoryDB(source.history_db) if source.history_db is not None else None
    try:
        reader = source.open()
    except BaseException:
        if history is not None:
            history.close()
        raise
    try:
        yield reader, history
    finally:
        reader.close()
        if history is not None:
            history.close()


def import_mem0(
    target: Target,
    source: Mem0Source,
    *,
    batch_size: int = BATCH,
    default_user_id: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Mem0ImportReport:
    """Import a mem0 deployment (vector store + history database) into ``target``.

    Resumable and idempotent: memories (and deleted memories' histories) ``target`` already knows
    are skipped before anything is embedded, and each batch is one transaction, so rerunning after
    a failure, or after a complete run, imports only what is missing.

    Args:
        target: a ``memlane.Memory`` (or ``MemoryClient``): its embedder embeds the texts again.
        source: the mem0 deployment (:meth:`Mem0Source.from_config`).
        batch_size: memories per ``import_records`` call (per transaction).
        default_user_id: the user id of memories that have no scope id in mem0; None refuses them.
        dry_run: read everything, write nothing: the report says what an import would do.
        progress: called as ``progress(done, total)`` (mem0 memory ids) after each batch.
    Returns:
        The :class:`Mem0ImportReport`.
    Raises:
        InvalidRequest: a bad argument, or memories without scope and no ``default_user_id``
            (nothing was written).
        ConfigError: the store, collection or history database is missing or unreadable, or a
            client library is not installed.
        StoreError: mem0's store or memlane's failed (batches written before stay; rerun).
        ProviderError: the embedder failed (batches written before stay; rerun).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequest(f"batch_size must be a positive integer, got {batch_size!r}")
    default_user_id = validate_scope_id("default_user_id", default_user_id)
    report = Mem0ImportReport(source=source.describe(), dry_run=dry_run)
    with _opened(source) as (reader, history):
        report.skipped_collections = reader.extra()
        survey = _survey(reader, report, default_user_id, batch_size)
        if report.without_scope and default_user_id is None and not dry_run:
            raise _refuse_unscoped(report.without_scope)
        deleted = sorted(history.memory_ids() - survey.ids) if history is not None else []
        report.deleted_in_mem0 = len(deleted)
        report.skipped_messages = history.messages() if history is not None else 0
        total, done = report.found + len(deleted), 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        writer = _Writer(target, report, dry_run)
        _memories(reader, history, survey, writer, default_user_id=default_user_id, batch=batch_size, tick=tick)
        if history is not None:
            _deleted(history, deleted, writer, batch_size, tick)
    return report
