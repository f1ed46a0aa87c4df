"""Commands about the installation rather than memories: serve, keys, config, info."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from memlane import MemlaneError, Memory, ServiceUnavailable, __version__
from memlane.cli._app import State, database_url_option, pass_state
from memlane.cli._output import emit_json, show_mapping, show_table
from memlane.config import PostgresStoreOptions, mask_url

if TYPE_CHECKING:
    from memlane.server.keys import ApiKey, KeyStore

__all__ = ["COMMANDS", "mask_secrets"]


def _interval(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: ``30s``, ``15m``, ``1h``, ``1d`` as seconds."""
    if value is None:
        return None
    from memlane.server.scheduler import parse_interval  # memlane.server loads FastAPI: only for serve

    try:
        return parse_interval(value)
    except MemlaneError as exc:
        raise click.BadParameter(str(exc)) from exc


_SECRET_WORDS = ("key", "secret", "token", "password")
_KEY_TABLES = ("api_keys", "rate_buckets")
MASK = "********"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8420, show_default=True, help="TCP port.")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes (each loads the model).")
@click.option("--no-auth", is_flag=True, help="Serve without API keys (refused unless --host is loopback).")
@click.option("--rate-limit", type=float, help="Requests per second per API key.")
@click.option("--max-body-bytes", type=int, help="Largest request body accepted.")
@click.option("--max-text-chars", type=int, help="Longest message, query or update text accepted (characters).")
@click.option("--request-timeout", type=float, help="Seconds before a request is answered with a timeout.")
@click.option(
    "--consolidate-every",
    metavar="INTERVAL",
    callback=_interval,
    help="Run consolidate() over the whole store every INTERVAL (30s, 15m, 1h, 1d; one pass at a time "
    "across every server of the store). Default: off.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
    default="info",
    show_default=True,
)
@database_url_option
@pass_state
def serve(
    state: State,
    host: str,
    port: int,
    workers: int,
    no_auth: bool,
    rate_limit: float | None,
    max_body_bytes: int | None,
    max_text_chars: int | None,
    request_timeout: float | None,
    consolidate_every: float | None,
    log_level: str,
    database_url: str | None,
) -> None:
    """Run the memlane REST server on the local store until interrupted."""
    # Imported here: uvicorn and FastAPI load only for this command.
    from memlane.server import serve as run_server

    if database_url:
        state.use_database_url(database_url)
    given = {
        "rate_limit": rate_limit,
        "max_body_bytes": max_body_bytes,
        "max_text_chars": max_text_chars,
        "request_timeout": request_timeout,
        "consolidate_every": consolidate_every,
    }
    limits = {name: value for name, value in given.items() if value is not None}
    run_server(
        host=host, port=port, workers=workers, auth=not no_auth, config_file=state.config_file, home=state.home,
        log_level=log_level, database_url=state.database_url if state.database_url_explicit else None, **limits,
    )  # fmt: skip


@click.group()
def keys() -> None:
    """API keys of the local server (only their hashes are stored)."""


def _keys_database_url(fn: Any) -> Any:
    return click.option(
        "--database-url",
        metavar="URL",
        help="The keys of the PostgreSQL store at URL, whatever --config says (as the global --database-url).",
    )(fn)


def _key_store(state: State, database_url: str | None) -> KeyStore:
    """The keys ``memlane serve`` would use: the PostgreSQL store's tables, else ``<home>/keys.db``."""
    state.local_only("memlane keys")
    if database_url:
        state.use_database_url(database_url)
    # Imported here: memlane.server's package import loads FastAPI and uvicorn.
    from memlane.server.keys import key_store_for

    cfg = state.config()
    store = key_store_for(cfg.store(), cfg.home_path())
    click.get_current_context().call_on_close(store.close)
    return store


def _show_keys(found: list[ApiKey]) -> None:
    rows = [(k.id, k.name, k.role, k.namespace, k.rate_limit, k.created_at, k.revoked_at or "") for k in found]
    columns = ("id", "name", "role", "namespace", "rate limit", "created", "revoked")
    show_table(columns, rows, caption=None if rows else "no API keys (create one: memlane keys create)")


@keys.command(name="create")
@click.option("--name", required=True, help="A label for people, e.g. acme-prod.")
@click.option("--admin", is_flag=True, help="An admin key: every scope, reset, export, import.")
@click.option("--namespace", metavar="NS", help="A tenant key: only user and agent ids starting with NS:.")
@click.option("--rate-limit", type=float, help="Requests per second for this key (default: the server's).")
@_keys_database_url
@pass_state
def keys_create(
    state: State, name: str, admin: bool, namespace: str | None, rate_limit: float | None, database_url: str | None
) -> None:
    """Create an API key and print its token (shown this once only)."""
    store = _key_store(state, database_url)
    key, token = store.create(name, admin=admin, namespace=namespace, rate_limit=rate_limit)
    if state.json:
        emit_json({"key": key.as_dict(), "token": token})
    else:
        _show_keys([key])
        click.echo(token)
    click.echo("warning: store this token now: it is not shown again (only its hash is kept)", err=True)


@keys.command(name="list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@_keys_database_url
@pass_state
def keys_list(state: State, include_revoked: bool, database_url: str | None) -> None:
    """The API keys (never their secrets), oldest first."""
    found = _key_store(state, database_url).list(include_revoked=include_revoked)
    if state.json:
        emit_json([k.as_dict() for k in found])
    else:
        _show_keys(found)


@keys.command(name="revoke")
@click.argument("key", metavar="ID_OR_NAME")
@_keys_database_url
@pass_state
def keys_revoke(state: State, key: str, database_url: str | None) -> None:
    """Revoke a key by id (or by name); it stops working at once, on every server of the store."""
    revoked = _key_store(state, database_url).revoke(key)
    if state.json:
        emit_json(revoked.as_dict())
    else:
        click.echo(f"revoked key {revoked.id} ({revoked.name})")


def mask_secrets(value: Any) -> Any:
    """A copy with every string under a key naming a secret ("key", "secret", "token", "password") masked."""
    if isinstance(value, dict):
        return {
            k: MASK
            if isinstance(v, str) and v and any(word in str(k).lower() for word in _SECRET_WORDS)
            else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


@click.command()
@pass_state
def config(state: State) -> None:
    """The effective configuration as JSON (secrets masked)."""
    cfg = state.config()
    data = cfg.model_dump(mode="json")
    data["home"] = str(cfg.home_path())
    for section in ("llm", "embedder"):
        data[section] = mask_secrets(data[section])
    store = cfg.store().model_dump(mode="json")  # the store the commands use: the environment applied
    if store["config"].get("url"):
        store["config"]["url"] = mask_url(store["config"]["url"])
    data["vector_store"] = mask_secrets(store)
    emit_json(data)


def _file(path: Path) -> dict[str, Any]:
    return {"path": str(path), "size_bytes": path.stat().st_size if path.is_file() else None}


def _stored_embedder(db: Path) -> dict[str, Any] | None:
    """The embedder the store records (read-only: info must not migrate or create anything)."""
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'embedder_%'").fetchall())
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {"error": f"cannot read {db}: {exc}"}
    dimension = meta.get("embedder_dimension")
    return {"model_id": meta.get("embedder_id"), "dimension": int(dimension) if dimension else None}


def _embedder_info(state: State, stored: dict[str, Any] | None) -> dict[str, Any]:
    cfg = state.config()
    out: dict[str, Any] = {"provider": cfg.embedder.provider}
    try:
        embedder = Memory(config=cfg).embedder  # builds the provider object; no model loads
        out["model_id"] = embedder.model_id
        if stored and stored.get("model_id") == embedder.model_id:
            out["dimension"] = stored.get("dimension")  # some providers ask their server otherwise
        else:
            out["dimension"] = embedder.dimension
    except MemlaneError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["stored"] = stored
    return out


def _local_info(state: State) -> dict[str, Any]:
    cfg = state.config()
    home = cfg.home_path()
    store = cfg.store()
    db = cfg.database_path()
    # PostgreSQL is not contacted: info reads nothing it would have to connect for.
    database = {"store": store.describe()} if store.provider == "postgres" else _file(db)
    stored = _stored_embedder(db) if store.provider == "sqlite" else None
    llm: dict[str, Any] | str
    if cfg.llm is None:
        llm = "none: messages stored verbatim"
    else:
        llm = {"provider": cfg.llm.provider, "model": cfg.llm.config.get("model")}
    keys, audit_log = _file(home / "keys.db"), _file(home / "audit.log")
    if isinstance(store.config, PostgresStoreOptions):  # the server keeps them in the store's schema
        keys = {"store": store.describe(), "tables": [f"{store.config.db_schema}.{t}" for t in _KEY_TABLES]}
        audit_log = {"store": store.describe(), "table": f"{store.config.db_schema}.audit_log"}
    return {
        "version": __version__,
        "home": str(home),
        "config_file": state.config_file,
        "database": database,
        "keys": keys,
        "audit_log": audit_log,
        "embedder": _embedder_info(state, stored),
        "llm": llm,
    }


def _remote_info(state: State) -> dict[str, Any]:
    assert state.url is not None
    client: Any = state.backend()
    if callable(getattr(client, "version", None)):
        server = client.version()
    else:
        import httpx  # only --url needs it

        headers = {"Authorization": f"Bearer {state.api_key}"} if state.api_key else {}
        try:
            response = httpx.get(f"{state.url.rstrip('/')}/v1/version", headers=headers, timeout=10.0)
            response.raise_for_status()
            server = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise ServiceUnavailable(f"cannot get {state.url}/v1/version: {exc}") from exc
    return {"version": __version__, "url": state.url, "server": server}


@click.command()
@pass_state
def info(state: State) -> None:
    """Where the data lives, which embedder and LLM are configured, and the version."""
    data = _remote_info(state) if state.url else _local_info(state)
    if state.json:
        emit_json(data)
        return
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "server":
            for sub, item in value.items():
                flat[f"{key}.{sub}"] = item
        else:
            flat[key] = value
    show_mapping(flat, title="memlane")


COMMANDS = (serve, keys, config, info)
