"""``export`` and ``import``: the portable JSON-lines format (see ``memlane.core.portable``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from memlane import InvalidRequest
from memlane.cli._app import State, pass_state, scope_options
from memlane.cli._output import emit_json

__all__ = ["COMMANDS"]


class _Bar:
    """A progress bar on stderr, or nothing when it is not wanted."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def set_completed(self, done: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done)

    def update(self, done: int, total: int) -> None:
        """``done`` of ``total`` (the total may grow while the work runs)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, total=total)


@contextmanager
def _progress_bar(wanted: bool | None, label: str, total: int | None = None) -> Iterator[_Bar]:
    """A bar when ``--progress`` was given, or by default when stderr is a terminal."""
    show = wanted if wanted is not None else sys.stderr.isatty()
    if not show:
        yield _Bar(None, None)
        return
    console = Console(file=sys.stderr)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Bar(progress, progress.add_task(label, total=total))


@contextmanager
def _output(file: str | None) -> Iterator[IO[str]]:
    """stdout, or FILE written whole or not at all (a temporary file renamed at the end)."""
    if file is None or file == "-":
        yield sys.stdout
        return
    target = Path(file)
    partial = target.with_name(f".{target.name}.partial")
    try:
        handle = partial.open("w", encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot write {file}: {exc.strerror}", param_hint="FILE") from exc
    try:
        with handle:
            yield handle
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@click.command()
@click.argument("file", required=False, metavar="[FILE]")
@scope_options
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@pass_state
def export(
    state: State,
    file: str | None,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    progress: bool | None,
) -> None:
    """Write memories and history as JSON lines to FILE (default stdout); a scope narrows it."""
    records = state.backend().export_records(user_id=user_id, agent_id=agent_id, run_id=run_id)
    counts: dict[str, int] = {}
    with _output(file) as out, _progress_bar(progress, "export") as bar:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            kind = str(record.get("type"))
            counts[kind] = counts.get(kind, 0) + 1
            bar.advance()
        out.flush()
    if file is not None and file != "-":
        summary = {"file": file, "memories": counts.get("memory", 0), "history": counts.get("history", 0)}
        if state.json:
            emit_json(summary)
        else:
            click.echo(f"exported {summary['memories']} memory records and {summary['history']} histories to {file}")


def _records(source: IO[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines stream (blank lines skipped); errors name the line."""
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"line {number}: not valid JSON ({exc.msg}): is this a `memlane export` file?"
            ) from exc
        if not isinstance(value, dict):
            raise InvalidRequest(f"line {number}: a record must be a JSON object, got {type(value).__name__}")
        yield value


@click.command(name="import")
@click.argument("source", type=click.File("r", encoding="utf-8"), metavar="FILE|-")
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="A memory id that already exists: fail the whole import, or skip that record.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@pass_state
def import_(state: State, source: IO[str], on_conflict: str, progress: bool | None) -> None:
    """Load an export (JSON lines from FILE, or - for stdin); all or nothing."""
    records = list(_records(source))
    memories = sum(1 for r in records if r.get("type") == "memory")
    # The callback counts memories embedded so far; the write itself is one transaction at the end.
    with _progress_bar(progress, "import", total=memories) as bar:
        result = state.backend(create=True).import_records(records, on_conflict=on_conflict, progress=bar.set_completed)
    if state.json:
        emit_json(result)
    else:
        click.echo(
            f"imported {result['imported']} memories, skipped {result['skipped']}, {result['history']} history events"
        )


COMMANDS = (export, import_)
