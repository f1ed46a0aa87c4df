"""The ``memlane`` click group: global options, the backend it drives, and error handling.

Every command goes through :class:`State` for its backend: an embedded :class:`memlane.Memory`
or, with ``--url``, a ``memlane.MemoryClient``; both have the same methods, arguments, results
and exceptions, so commands are written once against :class:`Backend`.

The embedded store is the config's: SQLite under ``--home``, or PostgreSQL. ``--database-url``
given on the command line beats the config file; from ``MEMLANE_DATABASE_URL`` it applies only
when the config names no store provider (the same rule as ``Memory``, see ``memlane.config``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, Protocol, TypeVar

import click
from click.core import ParameterSource

from memlane import (
    AddResult,
    AuthenticationError,
    ConfigError,
    ConsolidationReport,
    EmbedderMismatch,
    EntityItem,
    EntityList,
    HistoryEvent,
    InvalidRequest,
    MemlaneError,
    Memory,
    MemoryClient,
    MemoryConfig,
    MemoryConflict,
    MemoryItem,
    MemoryNotFound,
    NeighbourList,
    PathResult,
    PermissionDenied,
    Profile,
    ProviderAuthError,
    ProviderError,
    RateLimited,
    RelationList,
    SearchResult,
    ServiceUnavailable,
    StoreError,
    __version__,
)

__all__ = [
    "EXIT_CODES",
    "Backend",
    "MemlaneGroup",
    "State",
    "database_url_option",
    "exit_code",
    "json_object",
    "pass_state",
    "scope_options",
]

F = TypeVar("F", bound=Callable[..., Any])

# One table, first match wins (MemoryConflict subclasses InvalidRequest, so it comes first).
EXIT_CODES: tuple[tuple[type[MemlaneError], int], ...] = (
    (MemoryConflict, 6),
    (InvalidRequest, 2),
    (ConfigError, 2),
    (EmbedderMismatch, 2),
    (MemoryNotFound, 3),
    (AuthenticationError, 4),
    (PermissionDenied, 4),
    # The provider refused its credentials: retrying will not help, fixing the key will.
    (ProviderAuthError, 4),
    (ServiceUnavailable, 5),
    (RateLimited, 5),
    (StoreError, 5),
    (ProviderError, 5),
)


def exit_code(exc: BaseException) -> int:
    """The process exit code for an exception (see the table in ``memlane.cli``)."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


class Backend(Protocol):
    """What the CLI needs from ``Memory`` and ``MemoryClient`` (they share these signatures)."""

    def add(
        self,
        messages: str | Mapping[str, Any] | list[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        infer: bool | None = None,
        timestamp: str | None = None,
        ttl: float | None = None,
    ) -> AddResult: ...

    def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int = 10,
        threshold: float | None = None,
        explain: bool = False,
        as_of: str | None = None,
        graph: bool = False,
        include_merged: bool = False,
        include_archived: bool = False,
    ) -> SearchResult: ...

    def get(self, memory_id: str, *, include_sources: bool = False) -> MemoryItem: ...

    def get_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        include_merged: bool = False,
        include_archived: bool = False,
    ) -> SearchResult: ...

    def update(self, memory_id: str, data: str, *, metadata: Mapping[str, Any] | None = None) -> MemoryItem: ...

    def delete(self, memory_id: str, *, purge: bool = False) -> dict[str, str]: ...

    def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        purge: bool = False,
    ) -> dict[str, Any]: ...

    def history(self, memory_id: str) -> list[HistoryEvent]: ...

    def reset(self) -> None: ...

    def export_records(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> Iterator[dict[str, Any]]: ...

    def import_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        on_conflict: str = "error",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]: ...

    def entities(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> EntityList: ...

    def entity(self, entity_id: str) -> EntityItem: ...

    def relations(
        self,
        entity: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        predicate: str | None = None,
        direction: Literal["out", "in", "both"] = "both",
        as_of: str | None = None,
    ) -> RelationList: ...

    def neighbours(
        self,
        entity: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        depth: int = 1,
        as_of: str | None = None,
    ) -> NeighbourList: ...

    def path(
        self,
        a: str,
        b: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        as_of: str | None = None,
    ) -> PathResult: ...

    def consolidate(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ConsolidationReport: ...

    def profile(self, *, user_id: str, refresh: bool = False) -> Profile: ...

    def restore(self, memory_id: str) -> MemoryItem: ...

    def close(self) -> None: ...


@dataclass
class State:
    """The global options, and the backend built from them on first use."""

    home: str | None = None
    config_file: str | None = None
    url: str | None = None
    api_key: str | None = None
    json: bool = False
    database_url: str | None = field(default=None, repr=False)  # repr=False: it may hold a password
    database_url_explicit: bool = False
    _config: MemoryConfig | None = field(default=None, repr=False)
    _backend: Backend | None = field(default=None, repr=False)

    def config(self) -> MemoryConfig:
        """The effective ``MemoryConfig``: ``--config`` (or defaults), with ``home`` from ``--home``.

        Raises:
            ConfigError: the file is unreadable or invalid.
        """
        if self._config is None:
            cfg = MemoryConfig.from_file(self.config_file) if self.config_file else MemoryConfig.from_dict({})
            cfg = cfg.model_copy(update={"home": self.home}) if self.home else cfg
            if self.database_url and self.database_url_explicit:
                cfg = cfg.with_database_url(self.database_url)
            self._config = cfg
        return self._config

    def use_database_url(self, url: str) -> None:
        """Drive the PostgreSQL store at ``url`` (a subcommand's ``--database-url``), whatever the config says.

        Raises:
            InvalidRequest: ``--url`` is given too.
        """
        self.database_url, self.database_url_explicit, self._config = url, True, None
        self.check_targets()

    def check_targets(self) -> None:
        """Refuse ``--database-url`` given on the command line together with ``--url``.

        Raises:
            InvalidRequest: both are given.
        """
        if self.url and self.database_url_explicit:
            raise InvalidRequest(
                "--database-url drives a local PostgreSQL store and --url a memlane server: give one "
                "(unset MEMLANE_URL to use the database)"
            )

    def backend(self, *, create: bool = False) -> Backend:
        """The embedded ``Memory`` or, with ``--url``, a ``MemoryClient``; closed when the command ends.

        Args:
            create: the command writes new data, so the database may be created. Without it, a
                missing database is served by an empty in-memory store, so reads, deletes of
                unknown ids and validation errors behave as usual and nothing appears on disk.
        """
        if self._backend is None:
            backend = self._client() if self.url else self._memory(create)
            click.get_current_context().call_on_close(backend.close)
            self._backend = backend
        return self._backend

    def _memory(self, create: bool) -> Backend:
        cfg = self.config()
        memory: Backend
        if cfg.store().provider == "postgres":
            memory = Memory(config=cfg)  # a server: nothing to keep off the disk
        elif not create and not cfg.database_path().exists():
            memory = Memory(":memory:", config=cfg)
        else:
            memory = Memory(config=cfg)
        return memory

    def _client(self) -> Backend:
        client: Backend = MemoryClient(self.url, api_key=self.api_key)
        return client

    def local_only(self, what: str) -> None:
        """Refuse a command that works on local files when ``--url`` is given."""
        if self.url:
            raise InvalidRequest(
                f"{what} works on this machine's memlane home, not through --url {self.url}: "
                "run it on the server host without --url (or unset MEMLANE_URL)"
            )


pass_state = click.make_pass_decorator(State)


def _json_wanted(ctx: click.Context) -> bool:
    state = ctx.find_object(State)
    # The group's callback (which builds State) runs after the subcommand name is resolved.
    return state.json if state is not None else bool(ctx.params.get("json_output"))


def report_error(json_wanted: bool, exc: BaseException, *, note: str = "") -> None:
    """One line on stderr and, with ``--json``, ``{"error": {...}}`` on stdout."""
    name = type(exc).__name__
    message = " ".join((str(exc) or name).split())  # one line, whatever the message holds
    if json_wanted:
        _json_error(name, message)
    click.echo(f"error: {name}: {message}{note}", err=True)


def _json_error(name: str, message: str) -> None:
    click.echo(json.dumps({"error": {"type": name, "message": message}}, ensure_ascii=False))


class MemlaneGroup(click.Group):
    """A group that turns memlane's exceptions into one error line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; map errors to exit codes (never a traceback for a ``MemlaneError``)."""
        try:
            return super().invoke(ctx)
        except MemlaneError as exc:
            report_error(_json_wanted(ctx), exc)
            raise click.exceptions.Exit(exit_code(exc)) from None
        except click.ClickException as exc:
            # click prints its own message (with usage) to stderr; --json callers also get JSON.
            if _json_wanted(ctx):
                _json_error(type(exc).__name__, exc.format_message())
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`memlane export | head`): stop quietly.
            _silence_stdout()
            raise click.exceptions.Exit(1) from None
        except Exception as exc:
            if os.environ.get("MEMLANE_DEBUG"):
                raise
            note = " (unexpected: a bug in memlane; MEMLANE_DEBUG=1 shows the traceback)"
            report_error(_json_wanted(ctx), exc, note=note)
            raise click.exceptions.Exit(1) from None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def fail_usage(message: str) -> NoReturn:
    """Stop with a usage error (exit 2)."""
    raise click.UsageError(message)


def json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any] | None:
    """A click callback: parse a JSON object given on the command line."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at column {exc.colno}): {value!r}") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter(f'must be a JSON object such as \'{{"topic": "food"}}\', got {value!r}')
    return parsed


def database_url_option(fn: F) -> F:
    """``--database-url URL`` on a subcommand (serve, mcp): the global option, also accepted after the command."""
    return click.option(
        "--database-url",
        metavar="URL",
        help="Serve the PostgreSQL store at URL, whatever --config says (as the global --database-url).",
    )(fn)


def scope_options(fn: F) -> F:
    """``--user/-u``, ``--agent/-a``, ``--run/-r``: the scope, as ``user_id``, ``agent_id``, ``run_id``."""
    fn = click.option("--run", "-r", "run_id", metavar="ID", help="Run (session) id of the scope.")(fn)
    fn = click.option("--agent", "-a", "agent_id", metavar="ID", help="Agent id of the scope.")(fn)
    fn = click.option("--user", "-u", "user_id", metavar="ID", help="User id of the scope.")(fn)
    return fn


@click.group(cls=MemlaneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="MEMLANE_HOME",
    type=click.Path(file_okay=False),
    help="Where the data lives (default ~/.memlane). [env: MEMLANE_HOME]",
)
@click.option(
    "--config",
    "config_file",
    envvar="MEMLANE_CONFIG",
    type=click.Path(exists=True, dir_okay=False),
    help="A JSON MemoryConfig file. [env: MEMLANE_CONFIG]",
)
@click.option(
    "--url", envvar="MEMLANE_URL", help="Talk to a memlane server instead of the local store. [env: MEMLANE_URL]"
)
@click.option("--api-key", envvar="MEMLANE_API_KEY", help="API key for --url. [env: MEMLANE_API_KEY]")
@click.option(
    "--database-url",
    envvar="MEMLANE_DATABASE_URL",
    metavar="URL",
    help="Use the PostgreSQL store at URL (postgresql://user:password@host:5432/db) instead of the "
    "SQLite file; on the command line it beats --config. [env: MEMLANE_DATABASE_URL]",
)
@click.option(
    "--json", "json_output", is_flag=True, envvar="MEMLANE_JSON", help="Machine output: one JSON document on stdout."
)
@click.version_option(__version__, prog_name="memlane")
@click.pass_context
def cli(
    ctx: click.Context,
    home: str | None,
    config_file: str | None,
    url: str | None,
    api_key: str | None,
    database_url: str | None,
    json_output: bool,
) -> None:
    """memlane: a memory layer for LLM agents, from the command line.

    Without --url the commands work on the embedded store under --home (or the PostgreSQL store of
    --database-url); with --url they talk to a memlane server. Exit codes: 0 ok, 1 internal error,
    2 bad input, 3 not found, 4 authentication or permission, 5 unavailable / retry later, 6 conflict.
    """
    explicit = ctx.get_parameter_source("database_url") not in (ParameterSource.ENVIRONMENT, ParameterSource.DEFAULT)
    ctx.obj = State(
        home=home, config_file=config_file, url=url, api_key=api_key, json=json_output,
        database_url=database_url, database_url_explicit=bool(database_url) and explicit,
    )  # fmt: skip
    ctx.obj.check_targets()
