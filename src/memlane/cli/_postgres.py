"""``migrate`` and ``copy``: schema migrations of the configured store, and moving a store into PostgreSQL.

``copy`` uses only the public transfer API: ``export_records`` of the current store, then
``import_records`` of a ``Memory`` on the PostgreSQL store, batch by batch. An import must hold
every row of a memory (current text and past versions) together with its history, and an
export lists all rows first and all history last; so the export is first spooled to a temporary
SQLite file on disk, grouped by memory there, and read back a batch of memories at a time. Memory
use stays bounded by the batch, whatever the size of the store.

Batches keep the export's order (a message's predecessor is copied before it), with the deleted
memories (history only) first. A memory that names a later one (a merged memory's
``merged_into``, a summary's ``summarises``) stretches its batch to cover that memory, so the
import finds every such link's target in the batch or in the store already.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from memlane import InvalidRequest, MemlaneError, Memory
from memlane._store_config import build_store
from memlane.cli._app import Backend, State, pass_state, scope_options
from memlane.cli._output import emit_json
from memlane.cli._transfer import _progress_bar

__all__ = ["COMMANDS"]

_SPOOL_CHUNK = 1000


# -- migrate -----------------------------------------------------------------------------------
@click.command()
@pass_state
def migrate(state: State) -> None:
    """Apply pending schema migrations to the configured store (SQLite or PostgreSQL)."""
    state.local_only("memlane migrate")
    cfg = state.config()
    store = cfg.store()
    # The store alone (no embedder is built: migrations do not need one); nothing connects yet.
    backend = build_store(store, None, cfg.database_path())
    click.get_current_context().call_on_close(backend.close)
    where = backend.describe()
    applied = backend.migrate()
    result = {"store": store.provider, "description": where, "applied": applied}
    if state.json:
        emit_json(result)
    elif applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))} to {store.provider} {where}")
    else:
        click.echo(f"{store.provider} {where} is up to date: no migration to apply")


# -- copy --------------------------------------------------------------------------------------
class _Spool:
    """An export on disk, grouped by memory: each memory's rows (in export order) and history."""

    def __init__(self, directory: str) -> None:
        self.conn = sqlite3.connect(str(Path(directory) / "spool.db"))
        self.conn.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            "CREATE TABLE rows (pos INTEGER PRIMARY KEY, memory_id TEXT NOT NULL, record TEXT NOT NULL);"
            "CREATE TABLE history (memory_id TEXT PRIMARY KEY, record TEXT NOT NULL);"
            "CREATE TABLE groups (ord INTEGER PRIMARY KEY, memory_id TEXT NOT NULL UNIQUE);"
            "CREATE TABLE graph (pos INTEGER PRIMARY KEY, record TEXT NOT NULL);"
            "CREATE TABLE refs (memory_id TEXT NOT NULL, target TEXT NOT NULL);"
        )
        self.header: dict[str, Any] | None = None

    def fill(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Spool every record; returns the number of memories (with rows, or history only)."""
        rows: list[tuple[int, str, str]] = []
        events: list[tuple[str, str]] = []
        graph: list[tuple[int, str]] = []
        refs: list[tuple[str, str]] = []
        for pos, record in enumerate(records):
            kind = record.get("type")
            if kind == "memory":
                memory_id = str(record.get("version_of") or record.get("id"))
                rows.append((pos, memory_id, json.dumps(record)))
                targets = [record.get("merged_into"), *(record.get("summarises") or ())]
                refs += [(memory_id, str(t)) for t in targets if t is not None]
            elif kind == "history":
                events.append((str(record.get("memory_id")), json.dumps(record)))
            elif kind in ("entity", "relation"):  # entities come before the relations linking them
                graph.append((pos, json.dumps(record)))
            elif pos == 0:
                self.header = dict(record)
            else:
                raise InvalidRequest(f"export record {pos + 1} has an unexpected type {kind!r}")
            if len(rows) + len(events) + len(graph) + len(refs) >= _SPOOL_CHUNK:
                self._flush(rows, events, graph, refs)
        self._flush(rows, events, graph, refs)
        # Deleted memories first (a merged memory may name one); then a memory's place is its
        # first row's, so a message's predecessor is copied before it.
        self.conn.executescript(
            "CREATE INDEX rows_memory ON rows (memory_id);"
            "INSERT INTO groups (memory_id) SELECT memory_id FROM history "
            "WHERE memory_id NOT IN (SELECT memory_id FROM rows) ORDER BY memory_id;"
            "INSERT INTO groups (memory_id) SELECT memory_id FROM rows GROUP BY memory_id ORDER BY MIN(pos);"
            "CREATE TABLE spans AS SELECT DISTINCT a.ord AS source, b.ord AS target FROM refs "
            "JOIN groups a ON a.memory_id = refs.memory_id JOIN groups b ON b.memory_id = refs.target "
            "WHERE b.ord > a.ord;"
            "CREATE INDEX spans_source ON spans (source);"
        )
        self.conn.commit()
        return int(self.conn.execute("SELECT count(*) FROM groups").fetchone()[0])

    def _flush(
        self,
        rows: list[tuple[int, str, str]],
        events: list[tuple[str, str]],
        graph: list[tuple[int, str]],
        refs: list[tuple[str, str]],
    ) -> None:
        self.conn.executemany("INSERT INTO rows (pos, memory_id, record) VALUES (?, ?, ?)", rows)
        self.conn.executemany("INSERT INTO history (memory_id, record) VALUES (?, ?)", events)
        self.conn.executemany("INSERT INTO graph (pos, record) VALUES (?, ?)", graph)
        self.conn.executemany("INSERT INTO refs (memory_id, target) VALUES (?, ?)", refs)
        for pending in (rows, events, graph, refs):
            pending.clear()

    def batches(self, size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """``(memories, records)`` for up to ``size`` memories at a time: header, rows, then history;
        then the graph (entities, then relations), ``size`` records at a time (0 memories each), once
        every memory it links to is in the target."""
        yield from self._memory_batches(size)
        after = -1
        while chunk := self.conn.execute(
            "SELECT pos, record FROM graph WHERE pos > ? ORDER BY pos LIMIT ?", (after, size)
        ).fetchall():
            after = int(chunk[-1][0])
            head = [self.header] if self.header is not None else []
            yield 0, head + [json.loads(row[1]) for row in chunk]

    def _end(self, after: int, size: int) -> int | None:
        """The last group of the batch after ``after``: ``size`` groups on, stretched over every later
        group a memory of the batch names (None when no group is left)."""
        last = self.conn.execute(
            "SELECT max(ord) FROM (SELECT ord FROM groups WHERE ord > ? ORDER BY ord LIMIT ?)", (after, size)
        ).fetchone()[0]
        while last is not None:
            further = self.conn.execute(
                "SELECT max(target) FROM spans WHERE source > ? AND source <= ?", (after, last)
            ).fetchone()[0]
            if further is None or further <= last:
                break
            last = further
        return None if last is None else int(last)

    def _memory_batches(self, size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        after = 0
        while True:
            end = self._end(after, size)
            if end is None:
                return
            span = (after, end)
            count = self.conn.execute("SELECT count(*) FROM groups WHERE ord > ? AND ord <= ?", span).fetchone()[0]
            records = [self.header] if self.header is not None else []
            for sql in (
                "SELECT r.record FROM rows r JOIN groups g USING (memory_id) WHERE g.ord > ? AND g.ord <= ? "
                "ORDER BY r.pos",
                "SELECT h.record FROM history h JOIN groups g USING (memory_id) WHERE g.ord > ? AND g.ord <= ? "
                "ORDER BY g.ord",
            ):
                records += [json.loads(row[0]) for row in self.conn.execute(sql, span)]
            yield int(count), records
            after = span[1]

    def close(self) -> None:
        self.conn.close()


def _where(state: State) -> str:
    """The configured store for people: ``sqlite <file>`` or ``postgres <url, password masked> (schema s)``."""
    cfg = state.config()
    store = cfg.store()
    return f"sqlite {cfg.database_path()}" if store.provider == "sqlite" else store.describe()


def _target(state: State, source: Backend, url: str, schema: str | None) -> Memory:
    """The ``Memory`` on the PostgreSQL store to copy into (sharing the source's embedder object)."""
    cfg = state.config().with_database_url(url, schema=schema)
    if not state.url:
        here, there = state.config().store(), cfg.store()
        if here.provider == "postgres" and here.config == there.config:
            raise InvalidRequest(
                f"the source and the target are the same store ({there.describe()}): "
                "copy into another database (--to-database-url) or schema (--to-schema)"
            )
    embedder = source.embedder if isinstance(source, Memory) else None
    target = Memory(config=cfg, embedder=embedder)
    click.get_current_context().call_on_close(target.close)
    return target


@click.command()
@click.option(
    "--to-database-url",
    required=True,
    metavar="URL",
    help="The PostgreSQL database to copy into (postgresql://user:password@host:5432/db).",
)
@click.option("--to-schema", metavar="NAME", help="Its schema (default: memlane, or the configured one).")
@scope_options
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="A memory already in the target: stop with an error, or skip it (and resume a copy).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Memories per transaction in the target.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@pass_state
def copy(
    state: State,
    to_database_url: str,
    to_schema: str | None,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    on_conflict: str,
    batch_size: int,
    progress: bool | None,
) -> None:
    """Copy every memory, with its history, past versions, sources, graph and consolidation, into a PostgreSQL store."""
    source = state.backend()
    target = _target(state, source, to_database_url, to_schema)
    origin = state.url or _where(state)
    destination = target.config.store().describe()
    totals = {"imported": 0, "skipped": 0, "history": 0}
    with tempfile.TemporaryDirectory(prefix="memlane-copy-") as directory:
        spool = _Spool(directory)
        try:
            memories = spool.fill(source.export_records(user_id=user_id, agent_id=agent_id, run_id=run_id))
            with _progress_bar(progress, "copy", total=memories) as bar:
                for done, (count, records) in enumerate(spool.batches(batch_size)):
                    try:
                        result = target.import_records(records, on_conflict=on_conflict)
                    except MemlaneError:
                        if done:
                            click.echo(
                                f"note: {totals['imported']} memory records of {done} earlier batches are in "
                                f"{destination} already; rerun with --on-conflict skip to copy the rest",
                                err=True,
                            )
                        raise
                    for key in totals:
                        totals[key] += int(result[key])
                    bar.advance(count)
        finally:
            spool.close()
    summary = {"source": origin, "target": destination, "memories": memories, **totals}
    if state.json:
        emit_json(summary)
    else:
        click.echo(
            f"copied {totals['imported']} memory records (past versions included) and {totals['history']} history "
            f"events of {memories} memories from {origin} to {destination}; skipped {totals['skipped']}"
        )


COMMANDS = (migrate, copy)
