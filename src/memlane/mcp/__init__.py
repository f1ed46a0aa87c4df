"""``memlane mcp``: memlane's memories as MCP tools, for Claude Desktop, Claude Code, Cursor and other hosts.

Built on the official MCP Python SDK (2.x ``MCPServer``); install with ``pip install 'memlane[mcp]'``.

Tools: ``add_memory``, ``search_memories``, ``list_memories``, ``get_memory``, ``update_memory``,
``delete_memory``, ``memory_history`` and ``explore_entity`` (the graph around an entity);
``--read-only``: only the five that read.

Scope: a connection is bound to a :class:`Grant` of user / agent / run ids: the server's
``--user-id`` / ``--agent-id`` / ``--run-id`` and, over HTTP, the connection's
``X-Memlane-User-Id`` (...) headers. A tool call may narrow it (name a run inside a user's
grant), never leave it; memories outside it answer exactly like ids that do not exist.

Transports: stdio (the host starts ``memlane mcp --user-id me``), and streamable HTTP at
``/mcp`` (``memlane mcp --transport http``) behind the REST server's API keys, namespaces and
rate limits. Either works on the embedded store or, with ``--url``, against a memlane server.

Memories reach the model as quoted, labelled data (see :mod:`memlane.mcp._render`).
"""

from __future__ import annotations

try:
    import mcp.server.mcpserver  # noqa: F401  (the SDK is an optional extra)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("memlane's MCP server needs the MCP SDK 2.x: pip install 'memlane[mcp]'") from exc

from typing import TYPE_CHECKING, Literal

from memlane import Memory, MemoryClient
from memlane.mcp._grant import Grant
from memlane.mcp._http import MCP_PATH, http_app
from memlane.mcp._tools import build_server

if TYPE_CHECKING:
    from memlane.server.audit import AuditSink
    from memlane.server.keys import KeyStore

__all__ = ["MCP_PATH", "Grant", "build_server", "http_app", "run", "warm_up"]


def warm_up(backend: Memory | MemoryClient, grant: Grant | None) -> None:
    """Open the store and load the embedder (or reach the server) before serving, so errors show at start.

    Raises:
        MemlaneError: the store, the embedder or the memlane server is not usable.
    """
    if isinstance(backend, Memory):
        backend.embedder.embed(["warm up"], kind="query")
        backend.get_all(user_id="memlane:readiness-probe", limit=1)
    else:
        backend.version()
    if grant is not None and not grant.scope().is_empty():
        # A memlane server's key may not reach this scope: better to hear it now.
        backend.get_all(user_id=grant.user_id, agent_id=grant.agent_id, run_id=grant.run_id, limit=1)


def run(
    backend: Memory | MemoryClient,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    grant: Grant | None = None,
    read_only: bool = False,
    host: str = "127.0.0.1",
    port: int = 8421,
    keys: KeyStore | None = None,
    audit: AuditSink | None = None,
    rate_limit: float | None = None,
    log_level: str = "warning",
) -> None:
    """Serve MCP until the host disconnects (stdio) or the process is interrupted (HTTP).

    Args:
        backend: the embedded ``Memory`` or a ``MemoryClient``.
        transport: ``stdio`` or ``http`` (streamable HTTP at ``/mcp``).
        grant: the scope to serve; required for stdio, optional for HTTP (connections bring it).
        keys: HTTP only: the key store to authenticate against and rate-limit with (``memlane mcp``
            uses the REST server's: ``keys.db``, or the PostgreSQL store's); ``None`` serves
            without keys (refused unless ``host`` is loopback).
        audit: HTTP only: where to record each write (the REST server's audit log).
        rate_limit: HTTP only: requests per second per key (keys may carry their own).
    Raises:
        ScopeRequired: stdio without a grant.
        InvalidRequest: no keys on a non-loopback host.
        MemlaneError: the warm-up failed.
    """
    from memlane.server.settings import ServerSettings, require_auth_or_loopback

    if transport == "stdio":
        granted = grant or Grant()
        Grant.of(**granted.scope().as_dict(), where="--user-id, --agent-id or --run-id")
        warm_up(backend, granted)
        build_server(backend, grant=granted, read_only=read_only).run("stdio")
        return
    require_auth_or_loopback(host, auth=keys is not None)
    import uvicorn

    warm_up(backend, grant)
    settings = ServerSettings(rate_limit=rate_limit) if rate_limit is not None else ServerSettings()
    app = http_app(backend, grant=grant, keys=keys, settings=settings, read_only=read_only, audit=audit, host=host)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    finally:
        if audit is not None:
            audit.close()
        if keys is not None:
            keys.close()
