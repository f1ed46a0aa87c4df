"""``import-mem0``: move a mem0 deployment into memlane (a shell over ``memlane.mem0_import``)."""

from __future__ import annotations

from typing import Any

import click

from memlane import MemlaneError
from memlane.cli._app import State, pass_state
from memlane.cli._output import emit_json
from memlane.cli._transfer import _progress_bar
from memlane.mem0_import import BATCH, Mem0ImportReport, Mem0Source, import_mem0, load_config_file

__all__ = ["COMMANDS"]

_SHOWN = 10  # problem lines printed per kind (--json has them all)


def _vector_store(
    config: dict[str, Any], qdrant_path: str | None, qdrant_url: str | None, qdrant_api_key: str | None,
    pgvector_url: str | None, chroma_path: str | None, faiss_path: str | None,
) -> dict[str, Any]:  # fmt: skip
    """mem0's config with the vector store a flag names (at most one) laid over the file's."""
    chosen = {
        "qdrant": {"path": qdrant_path} if qdrant_path else ({"url": qdrant_url} if qdrant_url else None),
        "pgvector": {"connection_string": pgvector_url} if pgvector_url else None,
        "chroma": {"path": chroma_path} if chroma_path else None,
        "faiss": {"path": faiss_path} if faiss_path else None,
    }
    given = {k: v for k, v in chosen.items() if v is not None}
    if qdrant_path and qdrant_url:
        raise click.UsageError("give --qdrant-path (a local store) or --qdrant-url (a server), not both")
    if len(given) > 1:
        raise click.UsageError(f"give one mem0 vector store, got {', '.join(sorted(given))}")
    if not given:
        return config
    provider, settings = next(iter(given.items()))
    if provider == "qdrant" and qdrant_api_key:
        settings["api_key"] = qdrant_api_key
    store = config.get("vector_store") or {}
    if isinstance(store, dict) and store.get("provider", "qdrant") == provider:
        # Same provider as the file: keep its other settings (collection, port, ...), drop its location.
        base = {k: v for k, v in (store.get("config") or {}).items() if k not in ("path", "url", "host", "port")}
        settings = {**base, **settings}
    return {**config, "vector_store": {"provider": provider, "config": settings}}


def _show(report: Mem0ImportReport) -> None:
    verb = "would import" if report.dry_run else "imported"
    click.echo(f"mem0 source: {report.source}")
    click.echo(f"found {report.found} memories in {len(report.scopes)} scopes, {report.deleted_in_mem0} deleted in "
               "mem0 (history only)")  # fmt: skip
    for label, count in sorted(report.scopes.items()):
        click.echo(f"  {label}: {count}")
    click.echo(f"{verb} {report.imported} memories and {report.history_events} history events; "
               f"{report.already_present} already in memlane (skipped); {report.problems} problems")  # fmt: skip
    kinds = (("without scope (use --default-user-id)", report.without_scope),
             ("duplicate texts (history kept, memory not imported)", report.duplicates),
             ("not importable", report.unmappable), ("notes", report.notes))  # fmt: skip
    for title, lines in kinds:
        if lines:
            click.echo(f"{title}: {len(lines)}")
            for line in lines[:_SHOWN]:
                click.echo(f"  {line}")
            if len(lines) > _SHOWN:
                click.echo(f"  ... {len(lines) - _SHOWN} more (--json lists all)")
    for name in report.skipped_collections:
        click.echo(f"skipped: {name}: mem0's entity index, derived data memlane does not use")
    if report.skipped_messages:
        click.echo(f"skipped: {report.skipped_messages} rows of mem0's messages table (extraction context)")


@click.command(name="import-mem0")
@click.option("--mem0-config", "mem0_config", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="mem0's config dict as JSON or YAML (vector_store, history_db_path).")  # fmt: skip
@click.option("--qdrant-path", metavar="DIR", help="mem0's local Qdrant directory (mem0's default: /tmp/qdrant).")
@click.option("--qdrant-url", metavar="URL", help="A Qdrant server, e.g. http://localhost:6333.")
@click.option("--qdrant-api-key", metavar="KEY", envvar="QDRANT_API_KEY", help="API key of --qdrant-url.")
@click.option("--pgvector-url", metavar="URL", help="mem0's PostgreSQL (pgvector), as postgresql://user:pw@host/db.")
@click.option("--chroma-path", metavar="DIR", help="mem0's local Chroma directory.")
@click.option("--faiss-path", metavar="DIR", help="mem0's FAISS directory (<collection>.faiss and its docstore).")
@click.option("--collection", metavar="NAME", help="mem0's collection_name (default: the config's, else mem0).")
@click.option("--history-db", metavar="FILE", help="mem0's history_db_path (default: ~/.mem0/history.db).")
@click.option("--no-history", is_flag=True, help="Import without mem0's history (deleted memories are then lost).")
@click.option("--default-user-id", metavar="ID", help="User id for mem0 memories that have no scope id at all.")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH, show_default=True,
              help="Memories per transaction.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Read everything, write nothing: report what would be imported.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@pass_state
def import_mem0_command(
    state: State, mem0_config: str | None, qdrant_path: str | None, qdrant_url: str | None,
    qdrant_api_key: str | None, pgvector_url: str | None, chroma_path: str | None, faiss_path: str | None,
    collection: str | None, history_db: str | None, no_history: bool, default_user_id: str | None,
    batch_size: int, dry_run: bool, progress: bool | None,
) -> None:  # fmt: skip
    """Import a mem0 deployment (its vector store and history database); resumable, --dry-run to preview."""
    if no_history and history_db:
        raise click.UsageError("give --history-db or --no-history, not both")
    config = load_config_file(mem0_config) if mem0_config else {}
    config = _vector_store(config, qdrant_path, qdrant_url, qdrant_api_key, pgvector_url, chroma_path, faiss_path)
    if history_db:
        config = {**config, "history_db_path": history_db}
    source = Mem0Source.from_config(config, history=not no_history, overrides={"collection_name": collection})
    backend = state.backend(create=not dry_run)
    done = [0, 0]
    with _progress_bar(progress, "import-mem0" + (" (dry run)" if dry_run else "")) as bar:

        def tick(n: int, total: int) -> None:
            done[:] = [n, total]
            bar.update(n, total)

        try:
            report = import_mem0(backend, source, batch_size=batch_size, default_user_id=default_user_id,
                                 dry_run=dry_run, progress=tick)  # fmt: skip
        except MemlaneError:
            if done[0] and not dry_run:
                click.echo(f"stopped after {done[0]} of {done[1]} mem0 memories; what was imported stays: "
                           "run the same command again to import the rest", err=True)  # fmt: skip
            raise
    if state.json:
        emit_json(report.to_dict())
    else:
        _show(report)


COMMANDS = (import_mem0_command,)
