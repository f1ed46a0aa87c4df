"""``memlane``: the command line, a thin shell over the public API (``Memory`` / ``MemoryClient``).

Without ``--url`` the commands drive an embedded :class:`memlane.Memory` (config from ``--config``,
data under ``--home``); with ``--url`` a ``MemoryClient`` talking to a memlane server. Both have the
same methods, results and errors, so every command is written once. ``--json`` prints the exact API
return value as one JSON document (JSON lines for ``export``). See ``docs/cli.md``.

Commands: add, search, list, get, update, delete, delete-all, history, reset, consolidate, profile,
restore, entities, entity, relations,
neighbours, path, export, import, import-mem0, migrate, copy, reembed, serve, mcp, keys (create, list,
revoke), config, info. ``--database-url`` (or
``MEMLANE_DATABASE_URL``) puts the local store in PostgreSQL (see ``docs/postgres.md``).

Exit codes (errors print ``error: <TypeName>: <message>`` on stderr; with ``--json`` also
``{"error": {"type", "message"}}`` on stdout; never a traceback for a ``MemlaneError``):

====  =====================================================================================
0     success
1     unexpected internal error (a bug: ``MEMLANE_DEBUG=1`` shows the traceback)
2     usage error or bad input: click usage errors, ``InvalidRequest`` (``ScopeRequired``,
      ``InvalidFilter``, ...), ``ConfigError`` (``LLMRequired``), ``EmbedderMismatch``, a
      confirmation not given
3     ``MemoryNotFound``, ``EntityNotFound`` (also an unknown API key in ``keys revoke``)
4     ``AuthenticationError``, ``PermissionDenied``, ``ProviderAuthError``
5     worth retrying: ``ServiceUnavailable`` (``RequestTimeout``), ``RateLimited``, ``StoreError``
      (``StoreBusy``), ``ProviderError``
6     ``MemoryConflict`` (checked before ``InvalidRequest``, which it subclasses)
====  =====================================================================================
"""

from __future__ import annotations

from memlane.cli._admin import COMMANDS as _ADMIN
from memlane.cli._app import EXIT_CODES, cli, exit_code
from memlane.cli._consolidate import COMMANDS as _CONSOLIDATE
from memlane.cli._graph import COMMANDS as _GRAPH
from memlane.cli._mcp import COMMANDS as _MCP
from memlane.cli._mem0 import COMMANDS as _MEM0
from memlane.cli._memories import COMMANDS as _MEMORIES
from memlane.cli._postgres import COMMANDS as _POSTGRES
from memlane.cli._reembed import COMMANDS as _REEMBED
from memlane.cli._transfer import COMMANDS as _TRANSFER

__all__ = ["EXIT_CODES", "cli", "exit_code", "main"]

for _command in (*_MEMORIES, *_CONSOLIDATE, *_GRAPH, *_TRANSFER, *_MEM0, *_POSTGRES, *_REEMBED, *_ADMIN, *_MCP):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``memlane`` script and ``python -m memlane``."""
    cli.main(prog_name="memlane")
