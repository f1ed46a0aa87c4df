"""Readers of the vector stores mem0 writes: every entry's id and payload, page by page, no vectors.

One class per backend, each opened from the ``config`` dict of mem0's ``vector_store`` section:

- ``qdrant``: ``path`` (local, mem0's default ``/tmp/qdrant``), ``host`` + ``port``, or ``url`` (+
  ``api_key``), through qdrant-client's scroll;
- ``pgvector``: ``connection_string``, or ``dbname`` / ``user`` / ``password`` / ``host`` / ``port``;
  the table named after the collection (``id uuid, vector, payload jsonb``), through psycopg 3;
- ``chroma``: ``path`` or ``host`` + ``port``, through the chromadb client (the payload is the
  entry's metadata);
- ``faiss``: ``path`` holds ``<collection>.faiss`` and the docstore, ``<collection>.json`` (mem0 2.x)
  or the legacy ``<collection>.pkl``; only the docstore is read (see :func:`_load_pickle`).

mem0 2.x also keeps an entity index in the collection ``<collection>_entities``: it is derived
data (entities linked to memory ids), never imported; ``extra`` reports it.

Client libraries load on first use: ``pip install 'memlane[mem0]'`` (qdrant-client), ``[postgres]``
(psycopg), or chromadb for Chroma.
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from memlane.errors import ConfigError, StoreError

__all__ = ["Page", "VectorReader", "open_reader"]

Page = list[tuple[str, dict[str, Any]]]


class VectorReader(Protocol):
    """Lists a mem0 collection: ``(id, payload)`` pages, the entry count, skipped side collections."""

    def pages(self, size: int) -> Iterator[Page]: ...

    def extra(self) -> list[str]: ...

    def close(self) -> None: ...


def _module(name: str, extra: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"reading this mem0 store needs {name.split('.')[0]}: pip install {extra}") from exc


def _entities(collection: str) -> str:
    return f"{collection}_entities"


def _missing(kind: str, collection: str, where: str, found: list[str]) -> ConfigError:
    return ConfigError(
        f"no {kind} collection {collection!r} at {where} (found: {', '.join(sorted(found)) or 'none'}): "
        "give mem0's collection_name with --collection"
    )


class QdrantReader:
    """A mem0 collection in Qdrant (local directory or server)."""

    def __init__(self, config: Mapping[str, Any], collection: str) -> None:
        qdrant = _module("qdrant_client", "'memlane[mem0]'")
        params: dict[str, Any] = {}
        if config.get("url"):
            params = {"url": config["url"], "api_key": config.get("api_key")}
            self.where = str(config["url"])
        elif config.get("host") and config.get("port"):
            params = {"host": config["host"], "port": int(config["port"]), "api_key": config.get("api_key")}
            self.where = f"{config['host']}:{config['port']}"
        else:
            path = Path(str(config.get("path") or "/tmp/qdrant")).expanduser()
            if not (path / "meta.json").is_file():  # qdrant-client would start a new store there
                raise ConfigError(
                    f"no local Qdrant store at {path} (no meta.json): give mem0's vector_store path with --qdrant-path"
                )
            params, self.where = {"path": str(path)}, str(path)
        if "path" not in params:
            # The client otherwise asks the server its version in a background thread, to warn about
            # mismatches; a read-only scroll works across 1.x, and the thread would outlive a failure.
            params["check_compatibility"] = False
            if config.get("https") is not None:
                params["https"] = bool(config["https"])
        try:
            self.client = qdrant.QdrantClient(**params)
        except RuntimeError as exc:  # a local directory another process holds (mem0 still running)
            raise ConfigError(f"cannot open the Qdrant directory {self.where}: {exc} (stop mem0 first)") from exc
        try:
            names = [c.name for c in self.client.get_collections().collections]
        except Exception as exc:
            self.client.close()
            raise StoreError(f"cannot read Qdrant at {self.where}: {exc}") from exc
        if collection not in names:
            self.client.close()
            raise _missing("Qdrant", collection, self.where, names)
        self.collection, self.names = collection, names

    def pages(self, size: int) -> Iterator[Page]:
        """Every point's id and payload, ``size`` at a time."""
        offset: Any = None
        while True:
            try:
                points, offset = self.client.scroll(
                    self.collection, limit=size, offset=offset, with_payload=True, with_vectors=False
                )
            except Exception as exc:
                raise StoreError(f"reading Qdrant collection {self.collection!r} at {self.where}: {exc}") from exc
            yield [(str(p.id), dict(p.payload or {})) for p in points]
            if offset is None:
                return

    def extra(self) -> list[str]:
        """The entity collection, when mem0 made one."""
        name = _entities(self.collection)
        if name not in self.names:
            return []
        return [f"{name} ({self.client.count(name).count} entities)"]

    def close(self) -> None:
        """Release the client (and a local directory's lock)."""
        self.client.close()


class PgvectorReader:
    """A mem0 table in PostgreSQL (``id uuid, vector vector(n), payload jsonb``)."""

    def __init__(self, config: Mapping[str, Any], collection: str) -> None:
        psycopg = _module("psycopg", "'memlane[postgres]'")
        conninfo = config.get("connection_string")
        if conninfo:
            kwargs: dict[str, Any] = {}
        else:
            conninfo = ""
            kwargs = {k: config[k] for k in ("dbname", "user", "password", "host", "port") if config.get(k)}
            kwargs.setdefault("dbname", "postgres")
        if config.get("sslmode"):
            kwargs["sslmode"] = config["sslmode"]
        self.where = f"database {kwargs.get('dbname') or '(connection string)'}"
        try:
            self.conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to mem0's PostgreSQL ({exc}): check the pgvector settings") from exc
        self.sql = importlib.import_module("psycopg.sql")
        self.collection = collection
        if not self._exists(collection):
            self.conn.close()
            raise ConfigError(
                f"no table {collection!r} in mem0's PostgreSQL {self.where}: "
                "give mem0's collection_name with --collection"
            )

    def _exists(self, table: str) -> bool:
        name = self.sql.Identifier(table).as_string(self.conn)
        return self.conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None

    def pages(self, size: int) -> Iterator[Page]:
        """Every row's id and payload by id, ``size`` at a time (keyset pagination)."""
        table = self.sql.Identifier(self.collection)
        first = self.sql.SQL("SELECT id::text, payload FROM {} ORDER BY id LIMIT %s").format(table)
        after = self.sql.SQL("SELECT id::text, payload FROM {} WHERE id > %s::uuid ORDER BY id LIMIT %s").format(table)
        last: str | None = None
        while True:
            try:
                rows = self.conn.execute(first, (size,)) if last is None else self.conn.execute(after, (last, size))
                page = [(str(r[0]), _payload(r[1])) for r in rows.fetchall()]
            except Exception as exc:
                raise StoreError(f"reading mem0's table {self.collection!r} failed: {exc}") from exc
            yield page
            if len(page) < size:
                return
            last = page[-1][0]

    def extra(self) -> list[str]:
        """The entity table, when mem0 made one."""
        name = _entities(self.collection)
        if not self._exists(name):
            return []
        count = self.conn.execute(self.sql.SQL("SELECT count(*) FROM {}").format(self.sql.Identifier(name))).fetchone()
        return [f"{name} ({count[0]} entities)"]

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _payload(value: object) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str | bytes) else value
    return dict(loaded) if isinstance(loaded, Mapping) else {}


class ChromaReader:
    """A mem0 collection in Chroma (persistent directory or server)."""

    def __init__(self, config: Mapping[str, Any], collection: str) -> None:
        chromadb = _module("chromadb", "chromadb")
        settings = importlib.import_module("chromadb.config").Settings(anonymized_telemetry=False)
        path = Path(str(config.get("path") or "db")).expanduser()
        server = bool(config.get("host") and config.get("port"))
        self.where = f"{config['host']}:{config['port']}" if server else str(path)
        if not server and not path.is_dir():
            raise ConfigError(f"no Chroma directory at {path}: give mem0's vector_store path with --chroma-path")
        try:
            if server:
                self.client = chromadb.HttpClient(host=config["host"], port=int(config["port"]), settings=settings)
            else:
                self.client = chromadb.PersistentClient(path=str(path), settings=settings)
            self.names = [getattr(c, "name", c) for c in self.client.list_collections()]
        except Exception as exc:
            raise StoreError(f"cannot read Chroma at {self.where}: {exc}") from exc
        if collection not in self.names:
            raise _missing("Chroma", collection, self.where, [str(n) for n in self.names])
        self.collection = self.client.get_collection(collection)

    def pages(self, size: int) -> Iterator[Page]:
        """Every entry's id and metadata, ``size`` at a time."""
        offset = 0
        while True:
            try:
                got = self.collection.get(include=["metadatas"], limit=size, offset=offset)
            except Exception as exc:
                raise StoreError(f"reading Chroma collection at {self.where} failed: {exc}") from exc
            page = [(str(i), dict(m or {})) for i, m in zip(got["ids"], got["metadatas"] or [], strict=False)]
            yield page
            if len(page) < size:
                return
            offset += size

    def extra(self) -> list[str]:
        """The entity collection, when mem0 made one."""
        name = _entities(self.collection.name)
        if name not in self.names:
            return []
        return [f"{name} ({self.client.get_collection(name).count()} entities)"]

    def close(self) -> None:
        """Nothing to release (the client has no close)."""


class _Unpickler(pickle.Unpickler):
    """Builds only plain containers and scalars: any other class in the file is refused."""

    _SAFE = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bool"})

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in self._SAFE:
            return getattr(__import__("builtins"), name)
        raise pickle.UnpicklingError(f"refused {module}.{name}: a mem0 docstore holds only plain dicts and strings")


def _load_pickle(path: Path) -> Any:
    """A legacy mem0 FAISS docstore. Pickle can run code when loaded: read only your own deployment's
    files. The unpickler above refuses every class but plain containers and scalars."""
    with path.open("rb") as handle:
        return _Unpickler(handle).load()


class FaissReader:
    """A mem0 FAISS store: the docstore beside ``<collection>.faiss`` (the vectors are not needed)."""

    def __init__(self, config: Mapping[str, Any], collection: str) -> None:
        self.dir = Path(str(config.get("path") or f"/tmp/faiss/{collection}")).expanduser()
        self.collection = collection
        json_path, pkl_path = self.dir / f"{collection}.json", self.dir / f"{collection}.pkl"
        try:
            if json_path.is_file():
                data = json.loads(json_path.read_text(encoding="utf-8"))
                docstore = data.get("docstore") if isinstance(data, dict) else None
            elif pkl_path.is_file():
                data = _load_pickle(pkl_path)
                docstore = data[0] if isinstance(data, tuple) and len(data) == 2 else None
            else:
                raise ConfigError(
                    f"no mem0 FAISS docstore ({json_path.name} or {pkl_path.name}) in {self.dir}: give mem0's "
                    "vector_store path with --faiss-path and its collection_name with --collection"
                )
        except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
            raise ConfigError(f"cannot read mem0's FAISS docstore in {self.dir}: {exc}") from exc
        if not isinstance(docstore, dict):
            raise ConfigError(f"mem0's FAISS docstore in {self.dir} is not a mapping of memory ids to payloads")
        self.docstore: dict[str, Any] = docstore

    def pages(self, size: int) -> Iterator[Page]:
        """Every docstore entry, ``size`` at a time."""
        items = [(str(k), dict(v) if isinstance(v, Mapping) else {}) for k, v in self.docstore.items()]
        for start in range(0, max(len(items), 1), size):
            yield items[start : start + size]

    def extra(self) -> list[str]:
        """The entity docstore, when mem0 made one."""
        names = [f"{_entities(self.collection)}.{ext}" for ext in ("json", "pkl")]
        return [f"{n} (entities)" for n in names if (self.dir / n).is_file()]

    def close(self) -> None:
        """Nothing to release."""


READERS: dict[str, type[QdrantReader] | type[PgvectorReader] | type[ChromaReader] | type[FaissReader]] = {
    "qdrant": QdrantReader,
    "pgvector": PgvectorReader,
    "chroma": ChromaReader,
    "faiss": FaissReader,
}


def open_reader(provider: str, config: Mapping[str, Any], collection: str) -> VectorReader:
    """A reader of mem0's ``provider`` store.

    Raises:
        ConfigError: an unsupported provider, a missing store or collection, a missing client library.
        StoreError: the store could not be reached or read.
    """
    cls = READERS.get(provider)
    if cls is None:
        raise ConfigError(
            f"mem0 vector_store provider {provider!r} is not supported by import-mem0: supported are "
            f"{', '.join(sorted(READERS))} (export the memories to one of them with mem0 first)"
        )
    return cls(config, collection)
