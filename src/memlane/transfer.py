"""Export and import of a whole store or one scope, as portable records (:mod:`memlane.core.portable`).

``Memory.export_records`` and ``Memory.import_records`` are thin shells over these two functions.
Export streams: the store hands over a page at a time (by row id, then history by memory id), so
the memory in use does not grow with the store. Import validates every record first, embeds the
texts in batches outside any transaction, and then writes everything in one store transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

from memlane._indexing import index_texts
from memlane.config import PassageConfig
from memlane.core.filters import to_iso
from memlane.core.portable import (
    entity_record,
    header_record,
    history_record,
    memory_record,
    parse_records,
    relation_record,
)
from memlane.core.records import PortableEvent
from memlane.errors import InvalidRequest
from memlane.protocols import Embedder, Store
from memlane.types import Scope

__all__ = ["EMBED_BATCH", "PAGE", "export_records", "import_records"]

PAGE = 500
EMBED_BATCH = 256


def export_records(
    open_store: Callable[[], Store], embedder: Embedder, scope: Scope | None, now: datetime
) -> Iterator[dict[str, Any]]:
    """The header, every memory row of ``scope`` (all when None) by row id, its entities and
    relations by id, then each memory's history. Consolidation's states, summary links and
    search statistics go on the memory records; profiles are not exported (consolidation
    rebuilds them).

    ``open_store`` runs on the first ``next()``, so building the iterator does no I/O.
    """
    store = open_store()
    yield header_record(embedder.model_id, embedder.dimension, to_iso(now))
    after_rid = 0
    while True:
        page = store.export_page(scope, after_rid, PAGE)
        for row in page:
            yield memory_record(row)
        if len(page) < PAGE:
            break
        after_rid = page[-1].rid
    yield from _graph(store, scope)
    yield from _history(store, scope)


def _graph(store: Store, scope: Scope | None) -> Iterator[dict[str, Any]]:
    """Every entity (with the memories naming it), then every relation, page by page."""
    after: str | None = None
    while entities := store.entity_page(scope, after, PAGE):
        yield from (entity_record(e) for e in entities)
        after = entities[-1].entity.id
        if len(entities) < PAGE:
            break
    after = None
    while relations := store.relation_page(scope, after, PAGE):
        yield from (relation_record(r) for r in relations)
        after = relations[-1].id
        if len(relations) < PAGE:
            break


def _history(store: Store, scope: Scope | None) -> Iterator[dict[str, Any]]:
    """One record per memory id, gathered from pages that may split a memory's events."""
    group: list[PortableEvent] = []
    after: tuple[str, int] | None = None
    while True:
        page = store.history_page(scope, after, PAGE)
        for event in page:
            if group and group[0].memory_id != event.memory_id:
                yield history_record(group[0].memory_id, group)
                group = []
            group.append(event)
        if len(page) < PAGE:
            break
        after = (page[-1].memory_id, page[-1].seq)
    if group:
        yield history_record(group[0].memory_id, group)


def import_records(
    store: Store,
    embedder: Embedder,
    records: Iterable[Mapping[str, Any]],
    *,
    on_conflict: str,
    progress: Callable[[int], None] | None,
    now: datetime,
    passages: PassageConfig | None = None,
) -> dict[str, int]:
    """Validate, embed (in batches, reporting progress) and write the records in one transaction.

    Entities and relations are written in that transaction too (ids kept); the counts returned
    are those of memory rows, skipped memories and history events, as before.

    Passages are not part of the records: a long memory is cut into passages here again (with
    ``passages``, the importing Memory's settings) and they are embedded with the texts.

    Raises:
        InvalidRequest: a bad record (named by number) or argument; nothing was written.
        MemoryConflict: an id or text already in the store, with ``on_conflict="error"``.
        ProviderError: the embedder failed; nothing was written.
        StoreError: the write failed; nothing was written.
    """
    mode = _conflict_mode(on_conflict)
    if progress is not None and not callable(progress):
        raise InvalidRequest(f"progress must be a callable taking the count of memories embedded, got {progress!r}")
    parsed = parse_records(records)
    memories = parsed.memories
    items = [(m.memory, m.actor_id) for m in memories]
    indexed = index_texts(embedder, items, passages or PassageConfig(), progress=progress, batch=EMBED_BATCH)
    for row, ix in zip(memories, indexed, strict=True):
        row.embedding, row.search_text, row.passages = ix.embedding, ix.search_text, ix.passages
    outcome = store.import_records(
        memories, parsed.events, on_conflict=mode, now=now, entities=parsed.entities, relations=parsed.relations
    )
    return {"imported": outcome.imported, "skipped": outcome.skipped, "history": outcome.history}


def _conflict_mode(value: object) -> Literal["error", "skip"]:
    if value == "error":
        return "error"
    if value == "skip":
        return "skip"
    raise InvalidRequest(f"on_conflict must be 'error' or 'skip', got {value!r}")
