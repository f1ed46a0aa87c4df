"""Commands over the graph: entities, entity, relations, neighbours, path (see ``docs/graph.md``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import click

from memlane import EntityItem, RelationItem
from memlane.cli._app import State, pass_state, scope_options
from memlane.cli._output import emit_json, show_mapping, show_table, when

__all__ = ["COMMANDS"]

ENTITY_HELP = "an entity id, or a name as memories use it"


def _scope(item: Mapping[str, Any]) -> str:
    return " ".join(f"{key[0]}={item[key]}" for key in ("user_id", "agent_id", "run_id") if item.get(key))


def _entity_rows(items: Sequence[EntityItem]) -> list[tuple[object, ...]]:
    return [(e["id"], e["name"], e["type"] or "", ", ".join(e["aliases"]), _scope(e)) for e in items]


def _statement(relation: RelationItem) -> str:
    return f"{relation['subject']['name']} {relation['predicate']} {relation['object']['name']}"


def _show_relations(items: Sequence[RelationItem], *, caption: str) -> None:
    rows = [
        (_statement(r), when(r["valid_from"]), when(r["valid_until"]), r["memory_id"] or "", r["id"]) for r in items
    ]
    show_table(("relation", "since", "until", "memory", "id"), rows, caption=None if rows else caption)


@click.command()
@scope_options
@pass_state
def entities(state: State, user_id: str | None, agent_id: str | None, run_id: str | None) -> None:
    """The entities of a scope (named by its memories), by name."""
    result = state.backend().entities(user_id=user_id, agent_id=agent_id, run_id=run_id)
    if state.json:
        emit_json(result)
    else:
        rows = _entity_rows(result["results"])
        show_table(("id", "name", "type", "aliases", "scope"), rows, caption=None if rows else "no entities")


@click.command()
@click.argument("entity_id", metavar="ID")
@pass_state
def entity(state: State, entity_id: str) -> None:
    """One entity by ID."""
    item = state.backend().entity(entity_id)
    if state.json:
        emit_json(item)
    else:
        show_mapping(dict(item))


@click.command()
@click.argument("ref", metavar="ENTITY")
@scope_options
@click.option("--predicate", metavar="P", help='Only this predicate ("reports_to"; "Reports to" is the same).')
@click.option(
    "--direction",
    type=click.Choice(["out", "in", "both"]),
    default="both",
    show_default=True,
    help="out: ENTITY is the subject; in: the object.",
)
@click.option("--as-of", metavar="ISO", help="What held at that time (ISO 8601), closed relations included.")
@pass_state
def relations(
    state: State,
    ref: str,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    predicate: str | None,
    direction: Literal["out", "in", "both"],
    as_of: str | None,
) -> None:
    """The relations of ENTITY (an id or a name) that hold now, oldest first."""
    result = state.backend().relations(
        ref, user_id=user_id, agent_id=agent_id, run_id=run_id, predicate=predicate, direction=direction, as_of=as_of
    )
    if state.json:
        emit_json(result)
    else:
        _show_relations(result["results"], caption="no relations")


@click.command()
@click.argument("ref", metavar="ENTITY")
@scope_options
@click.option("--depth", type=int, default=1, show_default=True, help="How many relations away (1 to 6).")
@click.option("--as-of", metavar="ISO", help="Walk the relations that held at that time (ISO 8601).")
@pass_state
def neighbours(
    state: State,
    ref: str,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    depth: int,
    as_of: str | None,
) -> None:
    """The entities within --depth relations of ENTITY, nearest first."""
    result = state.backend().neighbours(
        ref, user_id=user_id, agent_id=agent_id, run_id=run_id, depth=depth, as_of=as_of
    )
    if state.json:
        emit_json(result)
    else:
        rows = [
            (n["distance"], *row) for n, row in zip(result["results"], _entity_rows(result["results"]), strict=True)
        ]
        show_table(("distance", "id", "name", "type", "aliases", "scope"), rows,
                   caption=None if rows else "no neighbours")  # fmt: skip


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@scope_options
@click.option("--as-of", metavar="ISO", help="Over the relations that held at that time (ISO 8601).")
@pass_state
def path(
    state: State, a: str, b: str, user_id: str | None, agent_id: str | None, run_id: str | None, as_of: str | None
) -> None:
    """The shortest chain of relations joining entities A and B (at most 6)."""
    result = state.backend().path(a, b, user_id=user_id, agent_id=agent_id, run_id=run_id, as_of=as_of)
    if state.json:
        emit_json(result)
    elif not result["found"]:
        click.echo(f"no chain of relations joins {a} and {b}")
    else:
        _show_relations(result["results"], caption=f"{a} and {b} are the same entity")


COMMANDS = (entities, entity, relations, neighbours, path)
