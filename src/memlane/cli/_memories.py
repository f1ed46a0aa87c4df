"""Commands over memories: add, search, list, get, update, delete, delete-all, history, reset, and
(from ``_consolidate``) consolidate, profile, restore."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, TypeVar

import click

from memlane import MemoryItem, ScopeRequired
from memlane.cli._app import State, fail_usage, json_object, pass_state, scope_options
from memlane.cli._output import emit_json, show_add, show_history, show_item, show_items, show_search

__all__ = ["COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])


def _include_options(fn: F) -> F:
    """``--include-merged`` and ``--include-archived``: what consolidation set aside, shown too."""
    fn = click.option("--include-archived", is_flag=True, help="Also show memories consolidation archived.")(fn)
    fn = click.option("--include-merged", is_flag=True, help="Also show memories merged into another.")(fn)
    return fn


def _marked(items: Sequence[MemoryItem]) -> list[MemoryItem]:
    """Items with a merged or archived memory's state before its text (the exact item is in --json)."""
    out: list[MemoryItem] = []
    for item in items:
        state = item.get("state")
        if state is not None:
            into = f" into {item['merged_into']}" if "merged_into" in item else ""
            item = {**item, "memory": f"[{state}{into}] {item['memory']}"}
        out.append(item)
    return out


def _read_messages(source: IO[str]) -> list[Mapping[str, Any]]:
    try:
        data = json.load(source)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg}, line {exc.lineno})", param_hint="--messages") from exc
    if not isinstance(data, list):
        raise click.BadParameter('must be a JSON list of {"role", "content", "name"?} objects', param_hint="--messages")
    return data


@click.command()
@click.argument("text", nargs=-1)
@scope_options
@click.option(
    "--messages",
    "messages_file",
    type=click.File("r", encoding="utf-8"),
    help='A JSON list of {"role", "content", "name"?} messages, from FILE or - (stdin).',
)
@click.option("--metadata", callback=json_object, metavar="JSON", help="A JSON object stored with every memory.")
@click.option("--infer/--no-infer", default=None, help="Extract facts with the configured LLM (default: if one is).")
@click.option("--timestamp", metavar="ISO", help="When the messages were said (ISO 8601; default now).")
@click.option("--ttl", type=float, metavar="SECONDS", help="Forget the memories after this many seconds.")
@pass_state
def add(
    state: State,
    text: tuple[str, ...],
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    messages_file: IO[str] | None,
    metadata: dict[str, Any] | None,
    infer: bool | None,
    timestamp: str | None,
    ttl: float | None,
) -> None:
    """Remember TEXT (each one a user message) or --messages in a scope."""
    if text and messages_file is not None:
        fail_usage("give TEXT arguments or --messages, not both")
    if messages_file is not None:
        messages: list[Mapping[str, Any]] = _read_messages(messages_file)
    elif text:
        messages = [{"role": "user", "content": t} for t in text]
    else:
        fail_usage("nothing to add: give TEXT or --messages FILE")
    result = state.backend(create=True).add(
        messages, user_id=user_id, agent_id=agent_id, run_id=run_id, metadata=metadata, infer=infer,
        timestamp=timestamp, ttl=ttl,
    )  # fmt: skip
    if state.json:
        emit_json(result)
    else:
        show_add(result)


@click.command()
@click.argument("query")
@scope_options
@click.option("--limit", type=int, default=10, show_default=True, help="At most this many results.")
@click.option("--filters", callback=json_object, metavar="JSON", help="A metadata filter (JSON object).")
@click.option("--threshold", type=float, help="Drop results scoring below this (0 to 1).")
@click.option("--explain", is_flag=True, help="Show each signal's contribution to the score.")
@click.option("--as-of", metavar="ISO", help="Search what was true at that time (ISO 8601).")
@click.option("--graph", is_flag=True, help="Also find memories naming the query's entities or their neighbours.")
@_include_options
@pass_state
def search(
    state: State,
    query: str,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    limit: int,
    filters: dict[str, Any] | None,
    threshold: float | None,
    explain: bool,
    as_of: str | None,
    graph: bool,
    include_merged: bool,
    include_archived: bool,
) -> None:
    """The memories of a scope most relevant to QUERY, best first."""
    result = state.backend().search(
        query, user_id=user_id, agent_id=agent_id, run_id=run_id, filters=filters, limit=limit,
        threshold=threshold, explain=explain, as_of=as_of, graph=graph, include_merged=include_merged,
        include_archived=include_archived,
    )  # fmt: skip
    if state.json:
        emit_json(result)
    else:
        show_search(_marked(result["results"]), explain=explain)


@click.command(name="list")
@scope_options
@click.option("--limit", type=int, default=100, show_default=True, help="Memories per page.")
@click.option("--filters", callback=json_object, metavar="JSON", help="A metadata filter (JSON object).")
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@click.option("--all", "every", is_flag=True, help="Follow next_cursor until every memory is listed.")
@_include_options
@pass_state
def list_(
    state: State,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    limit: int,
    filters: dict[str, Any] | None,
    cursor: str | None,
    every: bool,
    include_merged: bool,
    include_archived: bool,
) -> None:
    """The memories of a scope, newest first (get_all)."""
    backend = state.backend()
    results: list[Any] = []
    while True:
        page = backend.get_all(
            user_id=user_id, agent_id=agent_id, run_id=run_id, filters=filters, limit=limit, cursor=cursor,
            include_merged=include_merged, include_archived=include_archived,
        )  # fmt: skip
        results += page["results"]
        cursor = page.get("next_cursor")
        if not every or cursor is None:
            break
    if state.json:
        emit_json({"results": results, "next_cursor": cursor})
    else:
        show_items(_marked(results), caption=f"more: --cursor {cursor}" if cursor else None)


@click.command()
@click.argument("memory_id", metavar="ID")
@click.option("--sources", is_flag=True, help="Include the messages the memory was taken from.")
@pass_state
def get(state: State, memory_id: str, sources: bool) -> None:
    """One memory by ID."""
    item = state.backend().get(memory_id, include_sources=sources)
    if state.json:
        emit_json(item)
    else:
        show_item(item)


@click.command()
@click.argument("memory_id", metavar="ID")
@click.argument("text")
@click.option("--metadata", callback=json_object, metavar="JSON", help="Replace the metadata with this JSON object.")
@pass_state
def update(state: State, memory_id: str, text: str, metadata: dict[str, Any] | None) -> None:
    """Replace the text of memory ID with TEXT (history keeps the old text)."""
    item = state.backend().update(memory_id, text, metadata=metadata)
    if state.json:
        emit_json(item)
    else:
        show_item(item)


@click.command()
@click.argument("memory_id", metavar="ID")
@click.option("--purge", is_flag=True, help="Also erase the deleted text from history.")
@pass_state
def delete(state: State, memory_id: str, purge: bool) -> None:
    """Delete memory ID."""
    result = state.backend().delete(memory_id, purge=purge)
    if state.json:
        emit_json(result)
    else:
        click.echo(result["message"])


def _confirm(question: str) -> None:
    """Ask on stderr; anything but yes stops the command with a usage error (exit 2)."""
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:
        agreed = False
    if not agreed:
        fail_usage("not confirmed, nothing changed (pass --yes to skip the question)")


@click.command(name="delete-all")
@scope_options
@click.option("--purge", is_flag=True, help="Also erase the scope's text from history (right to be forgotten).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete_all(
    state: State, user_id: str | None, agent_id: str | None, run_id: str | None, purge: bool, yes: bool
) -> None:
    """Delete every memory of a scope (one of --user, --agent, --run is required)."""
    if user_id is None and agent_id is None and run_id is None:
        raise ScopeRequired("delete-all needs a scope: --user, --agent or --run (to erase everything: memlane reset)")
    if not yes:
        scope = ", ".join(f"{k}={v}" for k, v in (("user", user_id), ("agent", agent_id), ("run", run_id)) if v)
        _confirm(f"Delete every memory of {scope}{' and purge its history' if purge else ''}?")
    result = state.backend().delete_all(user_id=user_id, agent_id=agent_id, run_id=run_id, purge=purge)
    if state.json:
        emit_json(result)
    else:
        click.echo(result["message"])


@click.command()
@click.argument("memory_id", metavar="ID")
@pass_state
def history(state: State, memory_id: str) -> None:
    """Every change to memory ID, oldest first (also after it was deleted)."""
    events = state.backend().history(memory_id)
    if state.json:
        emit_json(events)
    else:
        show_history(events)


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def reset(state: State, yes: bool) -> None:
    """Delete everything in the store: every scope, every history."""
    if not yes:
        _confirm("Delete every memory of every scope, and all history?")
    state.backend().reset()
    if state.json:
        emit_json(None)
    else:
        click.echo("store reset: every memory and all history deleted")


COMMANDS = (add, search, list_, get, update, delete, delete_all, history, reset)
