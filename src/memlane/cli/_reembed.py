"""``reembed``: move the configured store to another embedder (a shell over ``memlane.reembed``).

The store is built from the config alone (as ``migrate`` does): the old embedder is not needed,
since texts are read from the store; after the switch the config must name the new embedder.
"""

from __future__ import annotations

import json
from typing import Any

import click

from memlane import InvalidRequest
from memlane._store_config import build_store
from memlane.cli._app import State, json_object, pass_state
from memlane.cli._output import emit_json
from memlane.cli._transfer import _progress_bar
from memlane.providers import registry
from memlane.reembed import BATCH, reembed

__all__ = ["COMMANDS"]


@click.command(name="reembed")
@click.option("--embedder", "provider", required=True, metavar="NAME", help="The new embedder's provider name.")
@click.option(
    "--embedder-config",
    metavar="JSON",
    callback=json_object,
    help="Its options as a JSON object, e.g. '{\"max_tokens\": 256}'.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=BATCH,
    show_default=True,
    help="Texts per embedder call and per transaction.",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@pass_state
def reembed_command(
    state: State, provider: str, embedder_config: dict[str, Any] | None, batch_size: int, progress: bool | None
) -> None:
    """Re-embed every stored vector with another embedder, then switch the store to it.

    Resumable: rerun the same command after an interruption. Until the switch the store keeps
    working with its old embedder (adds meanwhile are re-embedded too).
    """
    state.local_only("memlane reembed")
    cfg = state.config()
    store_cfg = cfg.store()
    if store_cfg.provider == "sqlite" and not cfg.database_path().exists():
        raise InvalidRequest(f"no store at {cfg.database_path()}: nothing to re-embed (check --home or --config)")
    embedder = registry.embedder(provider, embedder_config or {})
    store = build_store(store_cfg, None, cfg.database_path())
    click.get_current_context().call_on_close(store.close)
    with _progress_bar(progress, "reembed") as bar:
        result = reembed(store, embedder, batch_size=batch_size, progress=bar.update)
    if state.json:
        emit_json(result)
        return
    where = result["store"]
    if not result["switched"] and result["previous"] == result["embedder"]:
        dims = result["dimension"]
        click.echo(f"nothing to do: {where} already uses embedder {result['embedder']} ({dims} dimensions)")
        return
    if result["previous"] is None:
        click.echo(f"{where} holds no vectors yet: it now records embedder {result['embedder']}")
    else:
        click.echo(
            f"re-embedded {result['vectors']} vectors of {where} with {result['embedder']} "
            f"({result['dimension']} dimensions, was {result['previous']}): {result['embedded']} now, "
            f"{result['resumed']} kept from an interrupted run"
        )
    section = {"provider": provider, "config": embedder_config or {}}
    shown = json.dumps(section, ensure_ascii=False)
    click.echo(f'the store now needs this embedder: set "embedder": {shown} in your config')


COMMANDS = (reembed_command,)
