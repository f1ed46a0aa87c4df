"""Output: exact API values as JSON (``--json``), or rich tables for people."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from memlane import AddResult, HistoryEvent, MemoryItem

__all__ = [
    "emit_json",
    "shorten",
    "show_add",
    "show_history",
    "show_item",
    "show_items",
    "show_mapping",
    "show_search",
    "show_table",
    "stdout_console",
    "when",
]

MAX_CELL = 120


def stdout_console() -> Console:
    """A console on the current stdout (looked up at call time, so test runners can capture it).

    A terminal sets the width; piped output is 160 columns wide (unless ``COLUMNS`` says otherwise)
    rather than rich's 80, so ids and memories are not folded into narrow columns.
    """
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(file=sys.stdout, highlight=False, width=160 if piped else None)


def emit_json(value: Any) -> None:
    """Print ``value`` as one JSON document on stdout."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def shorten(text: str | None, limit: int = MAX_CELL) -> str:
    """One line of at most ``limit`` characters (newlines folded, an ellipsis when cut)."""
    if text is None:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def when(iso: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` UTC for tables (the exact value is in ``--json``)."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


# Columns that take the spare width (and wrap); every other column keeps its cells on one line.
_FLEX = {"memory", "value", "content", "old", "new", "name", "scope", "time", "created"}
_MIN_WIDTH = {"memory": 16, "value": 16, "content": 16}


def show_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None, caption: str | None = None
) -> None:
    """A table on stdout; cells are plain text (never rich markup). No rows: just the caption."""
    cells = [[Text("" if cell is None else str(cell)) for cell in row] for row in rows]
    console = stdout_console()
    if not cells and caption:
        console.print(Text(caption))
        return
    table = Table(
        title=title, caption=caption, title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for name in columns:
        flex = name in _FLEX
        table.add_column(name, no_wrap=not flex, overflow="fold", min_width=_MIN_WIDTH.get(name))
    for row in cells:
        table.add_row(*row)
    console.print(table)


def show_mapping(values: Mapping[str, object], *, title: str | None = None) -> None:
    """Two columns, field and value; dicts and lists as compact JSON."""
    rows = [(key, _cell(value)) for key, value in values.items()]
    show_table(("field", "value"), rows, title=title)


def _cell(value: object) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _scope(item: Mapping[str, Any]) -> str:
    parts = [f"{key[0]}={item[key]}" for key in ("user_id", "agent_id", "run_id") if item.get(key)]
    return " ".join(parts)


def show_add(result: AddResult) -> None:
    """The events of an ``add``."""
    rows = [(r["event"], r["id"], shorten(r["memory"])) for r in result["results"]]
    usage = result["usage"]
    caption = f"mode: {result['mode']}"
    if usage["llm_calls"]:
        caption += f"; LLM calls: {usage['llm_calls']}, tokens: {usage['prompt_tokens']}+{usage['completion_tokens']}"
    show_table(("event", "id", "memory"), rows, caption=caption)


def show_search(results: Sequence[MemoryItem], *, explain: bool) -> None:
    """Search hits, best first; with ``explain``, each signal's value under the memory's text."""
    rows: list[tuple[object, ...]] = []
    for hit in results:
        text = shorten(hit["passage"]["text"] if "passage" in hit else hit["memory"])  # a long memory: its passage
        if explain and "explain" in hit:
            ex = hit["explain"]
            text += (
                f"\ndense {ex['dense']:.2f} · keyword {ex['keyword']:.2f} · entity {ex['entity']:.2f}"
                f" · recency {ex['recency']:.2f}{' · +context' if ex['context'] else ''}"
            )
            if "graph" in ex:
                linked = ex["graph"]
                text += f" · graph {linked['value']:.2f} ({linked['entity']}"
                text += f", via {linked['via']} {linked['relation']})" if linked["relation"] else ")"
        time = when(hit["timestamp"]) + (f" (until {when(hit['valid_until'])})" if "valid_until" in hit else "")
        rows.append((f"{hit.get('score', 0.0):.3f}", hit["id"], text, time))
    show_table(("score", "id", "memory", "time"), rows, caption=None if rows else "no matching memories")


def show_items(items: Sequence[MemoryItem], *, caption: str | None = None) -> None:
    """Memories as a table: id, memory, scope, created."""
    rows = [(m["id"], shorten(m["memory"]), _scope(m), when(m["created_at"])) for m in items]
    show_table(("id", "memory", "scope", "created"), rows, caption=caption or (None if rows else "no memories"))


def show_item(item: MemoryItem) -> None:
    """One memory, field by field (its sources, if asked for, as a second table)."""
    fields = {k: v for k, v in item.items() if k != "sources"}
    show_mapping(fields)
    if "sources" in item:
        rows = [(when(s["timestamp"]), s["role"], s["name"], shorten(s["content"])) for s in item["sources"]]
        show_table(("time", "role", "name", "content"), rows, title="sources")


def show_history(events: Sequence[HistoryEvent]) -> None:
    """A memory's changes, oldest first."""
    rows = [
        (
            when(e["created_at"]),
            e["event"],
            "[redacted]" if e["redacted"] else shorten(e["old_memory"], 60),
            "[redacted]" if e["redacted"] else shorten(e["new_memory"], 60),
        )
        for e in events
    ]
    show_table(("time", "event", "old", "new"), rows, caption=None if rows else "no history for this id")
