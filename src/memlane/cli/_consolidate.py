"""Commands over consolidation: consolidate, profile, restore (see ``docs/cli.md``).

They take the scope as the other commands do (``--user/-u``, ``--agent/-a``, ``--run/-r``) and
also under mem0's names (``--user-id``, ``--agent-id``, ``--run-id``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from memlane import ConsolidationReport, Profile
from memlane.cli._app import State, pass_state
from memlane.cli._output import emit_json, shorten, show_item, show_table
from memlane.cli._transfer import _progress_bar

__all__ = ["COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])


def _scope_options(fn: F) -> F:
    """The scope options, under memlane's names and mem0's."""
    fn = click.option("--run", "--run-id", "-r", "run_id", metavar="ID", help="Run (session) id of the scope.")(fn)
    fn = click.option("--agent", "--agent-id", "-a", "agent_id", metavar="ID", help="Agent id of the scope.")(fn)
    fn = click.option("--user", "--user-id", "-u", "user_id", metavar="ID", help="User id of the scope.")(fn)
    return fn


def _json_option(fn: F) -> F:
    return click.option("--json", "json_here", is_flag=True, help="Machine output (as the global --json).")(fn)


def _use_json(state: State, json_here: bool) -> None:
    state.json = state.json or json_here  # set before the call, so errors come out as JSON too


def _show_report(report: ConsolidationReport) -> None:
    """The counts in one line, then a table of every change (ids, and the text each concerns)."""
    merged = sum(len(m["ids"]) for m in report["merged"])
    verb = "would change" if report["dry_run"] else "changed"
    click.echo(
        f"{'dry run: ' if report['dry_run'] else ''}{report['scopes']} scopes, {report['examined']} memories examined "
        f"in {report['seconds']:g} s; {verb}: {merged} merged, {len(report['superseded'])} superseded, "
        f"{len(report['summaries'])} summaries, {len(report['archived'])} archived, "
        f"{len(report['profiles'])} profiles"
    )
    rows: list[Sequence[object]] = []
    rows += [("merged", ", ".join(m["ids"]), f"into {m['into']}", shorten(m["memory"])) for m in report["merged"]]
    rows += [("superseded", s["id"], f"by {s['by']}", shorten(s["memory"])) for s in report["superseded"]]
    rows += [("summary", s["id"] or "", s["episode"], shorten(s["memory"])) for s in report["summaries"]]
    rows += [("archived", a["id"], a["reason"], shorten(a["memory"])) for a in report["archived"]]
    if rows:
        show_table(("change", "id", "detail", "memory"), rows)
    usage = report["usage"]
    if usage["llm_calls"]:
        click.echo(f"LLM calls: {usage['llm_calls']}, tokens: {usage['prompt_tokens']}+{usage['completion_tokens']}")
    if report["profiles"]:
        click.echo(f"profiles rebuilt: {', '.join(report['profiles'])}")
    for reason in report["skipped"]:
        click.echo(f"skipped: {reason}")


@click.command()
@_scope_options
@click.option("--dry-run", is_flag=True, help="Report what would change, and change nothing.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@_json_option
@pass_state
def consolidate(
    state: State,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    dry_run: bool,
    progress: bool | None,
    json_here: bool,
) -> None:
    """Tidy a scope: merge duplicates, supersede outdated facts, summarise, archive, rebuild profiles.

    Without a scope: every scope in the store (with --url: admin keys only).
    """
    _use_json(state, json_here)
    with _progress_bar(progress, "consolidate") as bar:
        report = state.backend().consolidate(
            user_id=user_id, agent_id=agent_id, run_id=run_id, dry_run=dry_run, progress=bar.update
        )
    if state.json:
        emit_json(report)
    else:
        _show_report(report)


def _show_profile(profile: Profile) -> None:
    if profile["mode"] == "empty" or not profile["text"]:
        click.echo(f"nothing known about {profile['user_id']} yet")
        return
    click.echo(profile["text"])


@click.command()
@click.option("--user", "--user-id", "-u", "user_id", required=True, metavar="ID", help="The user.")
@click.option("--refresh", is_flag=True, help="Rebuild it now if its memories changed.")
@_json_option
@pass_state
def profile(state: State, user_id: str, refresh: bool, json_here: bool) -> None:
    """A user's stable facts (preferences, people, places, work, other), for a prompt."""
    _use_json(state, json_here)
    result = state.backend().profile(user_id=user_id, refresh=refresh)
    if state.json:
        emit_json(result)
    else:
        _show_profile(result)


@click.command()
@click.argument("memory_id", metavar="ID")
@_json_option
@pass_state
def restore(state: State, memory_id: str, json_here: bool) -> None:
    """Bring merged or archived memory ID back into search and listings."""
    _use_json(state, json_here)
    item = state.backend().restore(memory_id)
    if state.json:
        emit_json(item)
    else:
        show_item(item)


COMMANDS = (consolidate, profile, restore)
