"""Which mem0 deployment to read: its vector store and history database, from mem0's own config.

mem0 is configured with a dict (``Memory.from_config(config)``); its ``vector_store`` section
(``provider`` + ``config``) and ``history_db_path`` are all the importer needs. Other sections
(``llm``, ``embedder``, ``graph_store``, ...) are ignored: memlane re-embeds with its own embedder.
Without a ``vector_store`` section mem0 uses Qdrant in ``/tmp/qdrant``, collection ``mem0``; without
``history_db_path``, ``$MEM0_DIR/history.db`` (default ``~/.mem0/history.db``). The same defaults
apply here.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlane.errors import ConfigError
from memlane.mem0_import._readers import READERS, VectorReader, open_reader

__all__ = ["Mem0Source", "default_history_path", "load_config_file"]


def default_history_path() -> Path:
    """mem0's default ``history_db_path``: ``$MEM0_DIR/history.db``, else ``~/.mem0/history.db``."""
    return Path(os.environ.get("MEM0_DIR") or Path("~/.mem0").expanduser()) / "history.db"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """mem0's config dict from a JSON file, or YAML (``.yaml`` / ``.yml``, needs PyYAML).

    Raises:
        ConfigError: unreadable, not JSON/YAML, or not a mapping.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the mem0 config {file}: {exc.strerror}") from exc
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            try:
                yaml: Any = importlib.import_module("yaml")
            except ImportError as exc:
                raise ConfigError(f"{file} is YAML: pip install 'memlane[mem0]' (PyYAML), or give JSON") from exc
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"the mem0 config {file} is not valid {file.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the mem0 config {file} must hold a mapping (mem0's config dict), got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Mem0Source:
    """A mem0 deployment to import: its vector store and (unless ``history_db`` is None) its history.

    Attributes:
        provider: mem0's vector_store provider: ``qdrant``, ``pgvector``, ``chroma`` or ``faiss``.
        config: that provider's config (mem0's keys: ``path``, ``host``, ``port``, ``url``, ...).
        collection: the collection (table) name, mem0's ``collection_name`` (default ``mem0``).
        history_db: mem0's history SQLite file; None imports the memories without history.
    """

    provider: str
    config: Mapping[str, Any] = field(default_factory=dict)
    collection: str = "mem0"
    history_db: Path | None = None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, history: bool = True, overrides: Mapping[str, Any] | None = None
    ) -> Mem0Source:
        """The deployment a mem0 config dict describes.

        Args:
            config: mem0's config dict (``{"vector_store": {...}, "history_db_path": ...}``; ``{}``
                is mem0's defaults).
            history: False imports without history (``history_db_path`` is then ignored).
            overrides: keys laid over the vector store's config (``path``, ``collection_name``, ...).
        Returns:
            The source; nothing is opened yet.
        Raises:
            ConfigError: the config is malformed or names an unsupported provider.
        """
        store = config.get("vector_store") or {}
        if not isinstance(store, Mapping):
            raise ConfigError("mem0 config: vector_store must be a mapping with provider and config")
        provider = str(store.get("provider") or "qdrant").lower()
        if provider not in READERS:
            raise ConfigError(
                f"mem0 vector_store provider {provider!r} is not supported by import-mem0: supported are "
                f"{', '.join(sorted(READERS))}"
            )
        settings = store.get("config") or {}
        if not isinstance(settings, Mapping):
            raise ConfigError("mem0 config: vector_store.config must be a mapping")
        merged = {**settings, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        collection = str(merged.pop("collection_name", None) or "mem0")
        if not any(merged.get(k) for k in ("path", "url", "host", "connection_string", "dbname")):
            # mem0's own defaults (chroma: "db", relative to where mem0 ran)
            default = {"qdrant": "/tmp/qdrant", "faiss": f"/tmp/faiss/{collection}", "chroma": "db"}.get(provider)
            merged = {**merged, "path": default} if default else merged
        path = config.get("history_db_path")
        history_db = (Path(str(path)).expanduser() if path else default_history_path()) if history else None
        return cls(provider=provider, config=merged, collection=collection, history_db=history_db)

    def describe(self) -> str:
        """``qdrant /tmp/qdrant, collection mem0`` (never a password)."""
        where = next((str(self.config[k]) for k in ("path", "url", "host", "dbname") if self.config.get(k)), "")
        if not where and self.provider == "pgvector":
            where = "(connection string)" if self.config.get("connection_string") else "postgres"
        return f"{self.provider} {where}, collection {self.collection}"

    def open(self) -> VectorReader:
        """Open the vector store for reading.

        Raises:
            ConfigError, StoreError: as :func:`memlane.mem0_import._readers.open_reader`.
        """
        return open_reader(self.provider, self.config, self.collection)
