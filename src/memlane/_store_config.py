"""The ``vector_store`` section of a config: which store backend, its options, and building it.

Two providers: ``"sqlite"`` (the embedded file) and ``"postgres"`` (PostgreSQL with pgvector,
``pip install 'memlane[postgres]'``). The ``config`` options are validated against the model of
the chosen provider, so an option of the other one is an error that names it.

Which store a ``Memory`` gets, first match wins:

1. ``Memory(store=...)``: that object.
2. ``Memory(path=...)``: the SQLite file at ``path`` (an error if the config names ``postgres``).
3. ``vector_store.provider`` named in the config: that store (``postgres`` without a ``url``
   takes ``$MEMLANE_DATABASE_URL``).
4. ``$MEMLANE_DATABASE_URL`` set: PostgreSQL at that URL.
5. The SQLite file ``<home>/memlane.db``.

mem0's ``pgvector`` config is accepted where it maps cleanly (see :func:`from_mem0_pgvector`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from memlane.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from memlane.protocols import Store

__all__ = [
    "DATABASE_URL_ENV",
    "INSTALL_POSTGRES",
    "PostgresStoreOptions",
    "SQLiteStoreOptions",
    "StoreConfig",
    "build_store",
    "from_mem0_pgvector",
    "mask_url",
    "postgres_store_config",
]

DATABASE_URL_ENV = "MEMLANE_DATABASE_URL"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
INSTALL_POSTGRES = "pip install 'memlane[postgres]'"


class SQLiteStoreOptions(BaseModel):
    """Options of the embedded SQLite store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    busy_timeout: float = Field(30.0, gt=0)
    durability: Literal["full", "normal"] = "full"


class PostgresStoreOptions(BaseModel):
    """Options of the PostgreSQL store.

    Attributes:
        url: ``postgresql://user:password@host:5432/dbname`` (or a libpq ``key=value`` string);
            None: ``$MEMLANE_DATABASE_URL``.
        db_schema: ``"schema"`` in a config: the PostgreSQL schema holding memlane's tables (one
            store per schema; a lower-case SQL identifier).
        min_connections, max_connections: the connection pool's bounds, per process.
        timeout: seconds to wait for a connection from the pool.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    url: str | None = None
    # "schema" would shadow a BaseModel attribute, so the field has another name and that alias.
    db_schema: str = Field("memlane", alias="schema")
    min_connections: int = Field(1, ge=1)
    max_connections: int = Field(10, ge=1)
    timeout: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("db_schema")
    @classmethod
    def _schema(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a safe schema name: use 1-63 lowercase letters, digits and _, "
                "starting with a letter or _ (e.g. 'memlane' or 'memlane_staging')"
            )
        if value.startswith("pg_"):
            raise ValueError(f"{value!r}: PostgreSQL reserves the pg_ prefix for system schemas; pick another name")
        return value

    @model_validator(mode="after")
    def _pool(self) -> PostgresStoreOptions:
        if self.max_connections < self.min_connections:
            raise ValueError(
                f"max_connections ({self.max_connections}) must be at least min_connections ({self.min_connections})"
            )
        return self


_OPTIONS: dict[str, type[BaseModel]] = {"sqlite": SQLiteStoreOptions, "postgres": PostgresStoreOptions}


def _option_names(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def check_url(url: str) -> str:
    """A PostgreSQL URL or libpq ``key=value`` string, checked for its form only (no connection).

    Raises:
        ValueError: not one of those forms; the message shows the expected one.
    """
    value = url.strip()
    if not value:
        raise ValueError("is empty: give postgresql://user:password@host:5432/dbname")
    scheme = value.split("://", 1)[0].lower() if "://" in value else None
    if scheme is not None and scheme.startswith(("postgresql+", "postgres+")):
        raise ValueError(
            f"has the SQLAlchemy driver suffix {scheme!r}: memlane uses psycopg itself, "
            "so write postgresql://... without '+driver'"
        )
    if scheme is not None and scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"has scheme {scheme!r}: give a PostgreSQL URL such as postgresql://user:password@host:5432/dbname"
        )
    if scheme is None and "=" not in value:
        raise ValueError(f"{mask_url(value)!r} is neither a postgresql:// URL nor a libpq 'host=... dbname=...' string")
    return value


def mask_url(url: str) -> str:
    """The URL (or libpq ``key=value`` string) with any password replaced by ``***``, for messages and output."""
    if "://" not in url:
        return re.sub(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed (e.g. an unclosed IPv6 bracket): show nothing that might be secret
        return url.split("://", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class StoreConfig(BaseModel):
    """The storage backend (mem0's ``vector_store`` key).

    ``provider`` None (the default) means "not named": PostgreSQL when ``$MEMLANE_DATABASE_URL``
    is set, else SQLite (see :meth:`resolved` and the module docstring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["sqlite", "postgres"] | None = None
    config: SQLiteStoreOptions | PostgresStoreOptions = Field(default_factory=dict, validate_default=True)
    # mem0's pgvector ``embedding_model_dims``: the dimension the app expects; Memory checks the embedder has it.
    embedding_model_dims: int | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _mem0(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("provider") == "pgvector":
            options = data.get("config") or {}
            if not isinstance(options, dict):
                raise ValueError(f"config of provider 'pgvector' must be an object, got {type(options).__name__}")
            options = dict(options)
            dims = options.pop("embedding_model_dims", None)
            return {**data, "provider": "postgres", "config": from_mem0_pgvector(options), "embedding_model_dims": dims}
        return data

    @field_validator("provider", mode="before")
    @classmethod
    def _known(cls, value: object) -> object:
        if value is not None and value not in _OPTIONS:
            raise ValueError(
                f"unsupported store provider {value!r}; available: 'sqlite' (embedded, the default) and "
                "'postgres' (PostgreSQL + pgvector; mem0's 'pgvector' config is accepted too). Memories that "
                "mem0 keeps in Qdrant, Chroma, FAISS or pgvector move over with `memlane import-mem0`"
            )
        return value

    @field_validator("config", mode="before")
    @classmethod
    def _options(cls, value: Any, info: ValidationInfo) -> Any:
        if "provider" not in info.data:
            return value  # the provider itself was invalid; that error is reported
        provider = info.data["provider"] or "sqlite"
        model = _OPTIONS[provider]
        if isinstance(value, BaseModel):
            if not isinstance(value, model):
                raise ValueError(f"provider {provider!r} takes {model.__name__}, got {type(value).__name__}")
            return value
        if not isinstance(value, dict):
            return value  # the model reports the type error
        own = _option_names(model)
        foreign = sorted(k for k in value if k not in own and any(k in _option_names(m) for m in _OPTIONS.values()))
        if foreign:
            other = "postgres" if provider == "sqlite" else "sqlite"
            hint = " (name provider 'postgres' to use PostgreSQL)" if provider == "sqlite" else ""
            raise ValueError(
                f"{', '.join(foreign)}: option(s) of the {other!r} store, not of {provider!r}{hint}; "
                f"{provider!r} takes: {', '.join(sorted(own))}"
            )
        return model.model_validate(value)

    def resolved(self) -> StoreConfig:
        """The store to build, with the environment applied (see the module docstring).

        Returns:
            A copy with ``provider`` set and, for PostgreSQL, ``url`` filled in.
        Raises:
            ConfigError: PostgreSQL without a URL, or SQLite options with no provider named while
                ``$MEMLANE_DATABASE_URL`` is set.
        """
        env = os.environ.get(DATABASE_URL_ENV, "").strip() or None
        if self.provider is None:
            if env is None:
                return self.model_copy(update={"provider": "sqlite"})
            if self.config.model_fields_set:
                raise ConfigError(
                    f"vector_store.config holds SQLite options but names no provider, and {DATABASE_URL_ENV} "
                    'is set: add "provider": "sqlite" to keep the SQLite file, or drop the options '
                    f"(or unset {DATABASE_URL_ENV}) to use PostgreSQL"
                )
            return StoreConfig(provider="postgres", config=_postgres(url=env, source=DATABASE_URL_ENV))
        if isinstance(self.config, PostgresStoreOptions) and self.config.url is None:
            if env is None:
                raise ConfigError(
                    "vector_store provider 'postgres' needs a URL: set vector_store.config.url "
                    f"(postgresql://user:password@host:5432/dbname) or {DATABASE_URL_ENV}"
                )
            return self.model_copy(update={"config": _postgres(self.config, url=env, source=DATABASE_URL_ENV)})
        return self

    def describe(self) -> str:
        """The store for people: ``postgres postgresql://u:***@host/db schema memlane`` or ``sqlite``."""
        if isinstance(self.config, PostgresStoreOptions):
            url = mask_url(self.config.url) if self.config.url else f"${DATABASE_URL_ENV}"
            return f"postgres {url} (schema {self.config.db_schema})"
        return f"sqlite {self.config.path}" if self.config.path else "sqlite"


def _postgres(
    base: PostgresStoreOptions | None = None, *, source: str = "PostgreSQL store options", **changes: Any
) -> PostgresStoreOptions:
    """Postgres options from ``base`` with ``changes``, validated (a bad URL or schema is a ConfigError
    naming ``source``, where the values came from)."""
    data = base.model_dump(by_alias=True, exclude_unset=True) if base is not None else {}
    data.update({("schema" if k == "db_schema" else k): v for k, v in changes.items()})
    try:
        return PostgresStoreOptions.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"invalid {source}: {_first_message(exc)}") from exc


def _first_message(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {str(first['msg']).removeprefix('Value error, ')}"
    return str(exc)


def postgres_store_config(base: StoreConfig, url: str, *, schema: str | None = None) -> StoreConfig:
    """``base`` pointed at PostgreSQL ``url`` (``MemoryConfig.with_database_url``).

    The pool options are kept when ``base`` is PostgreSQL already.

    Raises:
        ConfigError: a bad URL or schema name.
    """
    changes: dict[str, Any] = {"url": url}
    if schema is not None:
        changes["db_schema"] = schema
    current = base.config if isinstance(base.config, PostgresStoreOptions) else None
    return StoreConfig(provider="postgres", config=_postgres(current, **changes))


# -- mem0 ------------------------------------------------------------------------------------
_MEM0_DROPPED = {
    "connection_pool": "a pool object cannot travel in a config; pass Memory(store=PostgresStore(...)) instead",
    "diskann": "memlane indexes vectors with pgvector's HNSW; DiskANN is not supported",
}
_MEM0_KEYS = {"embedding_model_dims", "dbname", "collection_name", "user", "password", "host", "port", "hnsw",
              "minconn", "maxconn", "sslmode", "connection_string", "schema_name", *_MEM0_DROPPED}  # fmt: skip


def from_mem0_pgvector(options: dict[str, Any]) -> dict[str, Any]:
    """mem0's ``pgvector`` options as memlane ``postgres`` options.

    - ``connection_string`` is the URL; otherwise ``user``, ``password``, ``host``, ``port``,
      ``dbname`` (default ``postgres``) and ``sslmode`` make one.
    - ``schema_name``, else ``collection_name``, is the schema: mem0 keeps a collection in one
      table, memlane a store in one schema, so each collection stays a separate store.
    - ``minconn`` / ``maxconn`` are ``min_connections`` / ``max_connections``.
    - ``hnsw: true`` is what memlane does anyway; ``hnsw: false``, ``diskann: true`` and
      ``connection_pool`` are refused with the reason; ``embedding_model_dims`` is checked against
      the embedder by ``Memory`` (see :class:`StoreConfig`).
    - Keys of memlane's own options pass through, so both spellings may be mixed.

    Raises:
        ValueError: a key that does not map, with what to do instead.
    """
    data = dict(options)
    for key, why in _MEM0_DROPPED.items():
        value = data.pop(key, None)
        if value is not None and value is not False:
            raise ValueError(f"pgvector option {key} is not supported: {why}; remove it")
    if data.pop("hnsw", True) is False:
        raise ValueError("pgvector option hnsw=false is not supported: memlane always builds an HNSW index")
    out: dict[str, Any] = {k: v for k, v in data.items() if k not in _MEM0_KEYS}
    unknown = sorted(set(out) - _option_names(PostgresStoreOptions))
    if unknown:
        raise ValueError(
            f"unknown pgvector option(s) {', '.join(unknown)}; mem0's pgvector keys: {', '.join(sorted(_MEM0_KEYS))}"
        )
    schema, collection = data.get("schema_name"), data.get("collection_name")
    if schema is not None and collection is not None and schema != collection:
        raise ValueError(
            "give schema_name or collection_name, not both: memlane keeps one store per PostgreSQL schema, "
            "with fixed table names"
        )
    if schema or collection:
        out.setdefault("schema", schema or collection)
    for mem0_key, key in (("minconn", "min_connections"), ("maxconn", "max_connections")):
        if data.get(mem0_key) is not None:
            out.setdefault(key, data[mem0_key])
    url = _mem0_url(data)
    if url is not None:
        if "url" in out:
            raise ValueError("give connection_string (or host, port, user, password, dbname) or url, not both")
        out["url"] = url
    return out


def _mem0_url(data: dict[str, Any]) -> str | None:
    """mem0's connection keys as one URL (None when none is given)."""
    keys = ("user", "password", "host", "port", "dbname", "sslmode")
    if data.get("connection_string"):
        if any(data.get(k) for k in keys):
            raise ValueError(
                "give connection_string or user/password/host/port/dbname/sslmode, not both "
                "(mem0 ignores the others; memlane refuses to guess)"
            )
        return str(data["connection_string"])
    user, password, host, port, dbname, sslmode = (data.get(k) for k in keys)
    if all(v is None for v in (user, password, host, port, dbname, sslmode)):
        return None
    query: dict[str, str] = {}
    server = str(host or "")
    if server.startswith("/"):  # a Unix socket directory cannot sit in the netloc
        query["host"], server = server, ""
    elif ":" in server:
        server = f"[{server}]"  # an IPv6 address
    if port:
        if server:
            server += f":{int(port)}"
        else:
            query["port"] = str(int(port))
    if sslmode:
        query["sslmode"] = str(sslmode)
    userinfo = quote(str(user), safe="") if user else ""
    if password:
        userinfo += ":" + quote(str(password), safe="")
    netloc = f"{userinfo}@{server}" if userinfo else server
    tail = f"?{urlencode(query)}" if query else ""
    return f"postgresql://{netloc}/{quote(str(dbname or 'postgres'), safe='')}{tail}"


# -- building the store ----------------------------------------------------------------------
def build_store(config: StoreConfig, path: str | Path | None, default_path: Path) -> Store:
    """The store object ``Memory`` uses when none is injected (no I/O: nothing connects or is created).

    Args:
        config: the config's ``vector_store``.
        path: ``Memory(path=...)``: a SQLite file, which beats ``$MEMLANE_DATABASE_URL``.
        default_path: the SQLite file when neither ``path`` nor the config names one.
    Raises:
        InvalidRequest: ``path`` given while the config names the ``postgres`` provider.
        ConfigError: PostgreSQL without a URL, or its extra is not installed.
    """
    if path is not None:
        if config.provider == "postgres":
            raise InvalidRequest(
                f"path={str(path)!r} is a SQLite file, but the config's store is {config.describe()}: "
                "drop path to use PostgreSQL, or configure vector_store provider 'sqlite'"
            )
        return _sqlite(config, Path(path).expanduser())
    effective = config.resolved()
    if isinstance(effective.config, PostgresStoreOptions):
        return _postgres_store(effective.config)
    return _sqlite(effective, default_path)


def _sqlite(config: StoreConfig, path: Path) -> Store:
    from memlane.stores.sqlite import SQLiteStore

    opts = config.config if isinstance(config.config, SQLiteStoreOptions) else SQLiteStoreOptions()
    return SQLiteStore(path, busy_timeout=opts.busy_timeout, durability=opts.durability)


def _postgres_store(opts: PostgresStoreOptions) -> Store:
    try:
        from memlane.stores.postgres import PostgresStore
    except ImportError as exc:
        missing = f" ({exc.name} is missing)" if exc.name else ""
        raise ConfigError(f"the PostgreSQL store needs its extra{missing}: {INSTALL_POSTGRES}") from exc
    assert opts.url is not None  # resolved() filled it in
    store: Store = PostgresStore(
        opts.url,
        schema=opts.db_schema,
        min_size=opts.min_connections,
        max_size=opts.max_connections,
        timeout=opts.timeout,
    )
    return store
