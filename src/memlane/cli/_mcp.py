"""``memlane mcp``: serve the memory tools to an MCP host (stdio) or over streamable HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from memlane import InvalidRequest, Memory, MemoryClient
from memlane.cli._app import State, database_url_option, pass_state

if TYPE_CHECKING:
    from memlane.server.keys import KeyStore

__all__ = ["COMMANDS"]


@click.command(name="mcp")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio for a host that starts this command; http for streamable HTTP at /mcp.",
)
@click.option("--user-id", envvar="MEMLANE_USER_ID", help="Bind every call to this user. [env: MEMLANE_USER_ID]")
@click.option("--agent-id", envvar="MEMLANE_AGENT_ID", help="Bind every call to this agent. [env: MEMLANE_AGENT_ID]")
@click.option("--run-id", envvar="MEMLANE_RUN_ID", help="Bind every call to this run. [env: MEMLANE_RUN_ID]")
@click.option("--read-only", is_flag=True, help="Offer only search, list, get and history.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: interface to listen on.")
@click.option("--port", type=int, default=8421, show_default=True, help="HTTP: TCP port.")
@click.option("--no-auth", is_flag=True, help="HTTP: serve without API keys (refused unless --host is loopback).")
@click.option("--rate-limit", type=float, help="HTTP: requests per second per API key.")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
)
@database_url_option
@pass_state
def mcp(
    state: State,
    transport: str,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    read_only: bool,
    host: str,
    port: int,
    no_auth: bool,
    rate_limit: float | None,
    log_level: str,
    database_url: str | None,
) -> None:
    """Serve memories as MCP tools (add, search, list, get, update, delete, history).

    stdio needs a scope (--user-id and/or --agent-id, --run-id); over HTTP each connection may
    bring its own with X-Memlane-User-Id (...) headers, checked against its API key's namespace.
    With --url the tools work against a memlane server instead of the local store.
    """
    # Imported here: the MCP SDK is an optional extra and loads only for this command.
    try:
        from memlane.mcp import Grant, run
    except ImportError as exc:
        raise click.UsageError(str(exc)) from exc

    if transport == "stdio" and (no_auth or rate_limit is not None):
        raise InvalidRequest("--no-auth and --rate-limit apply to --transport http only")
    if database_url:
        state.use_database_url(database_url)
    grant = Grant(user_id=user_id, agent_id=agent_id, run_id=run_id)
    backend: Memory | MemoryClient = (
        MemoryClient(state.url, api_key=state.api_key) if state.url else Memory(config=state.config())
    )
    click.get_current_context().call_on_close(backend.close)
    keys: KeyStore | None = None
    if transport == "http":
        # The REST server's keys, rate limits and audit log (keys.db, or the PostgreSQL store's tables).
        from memlane.server.keys import key_store_for

        cfg = state.config()
        keys = key_store_for(cfg.store(), cfg.home_path())
        click.get_current_context().call_on_close(keys.close)
    run(
        backend, transport="stdio" if transport == "stdio" else "http", grant=grant, read_only=read_only,
        host=host, port=port, keys=None if no_auth else keys, audit=keys.audit if keys else None,
        rate_limit=rate_limit, log_level=log_level,
    )  # fmt: skip


COMMANDS = (mcp,)
