"""The ``vector_store`` config: SQLite or PostgreSQL options, mem0's ``pgvector`` keys, and
``MEMLANE_DATABASE_URL`` precedence. Nothing here connects to a database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from wire_server import closed_port

from memlane import ConfigError, InvalidRequest, Memory, MemoryConfig
from memlane.config import PostgresStoreOptions, SQLiteStoreOptions, StoreConfig, mask_url
from memlane.stores.postgres import PostgresStore
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import HashEmbedder

URL = "postgresql://memlane:s3cret@db.internal:5432/memlane"


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMLANE_DATABASE_URL", raising=False)


def store(config: dict[str, Any]) -> StoreConfig:
    return MemoryConfig.from_dict({"vector_store": config}).store()


def refused(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        store(config)
    return str(info.value)


# -- options of each provider ----------------------------------------------------------------------
def test_postgres_options_and_defaults() -> None:
    cfg = store({"provider": "postgres", "config": {"url": URL}})
    assert cfg.provider == "postgres" and isinstance(cfg.config, PostgresStoreOptions)
    assert (cfg.config.url, cfg.config.db_schema, cfg.config.min_connections, cfg.config.max_connections,
            cfg.config.timeout) == (URL, "memlane", 1, 10, 30.0)  # fmt: skip
    full = {"url": URL, "schema": "team_a", "min_connections": 2, "max_connections": 20, "timeout": 5}
    cfg = store({"provider": "postgres", "config": full})
    assert cfg.model_dump()["config"] == {**full, "timeout": 5.0}  # "schema" round-trips under its own name
    assert (
        MemoryConfig.from_dict(MemoryConfig.from_dict({"vector_store": cfg.model_dump()}).model_dump()).store() == cfg
    )
    assert store({"provider": "postgres", "config": {"url": "host=db dbname=memlane user=m"}}).config.url


def test_sqlite_stays_the_default() -> None:
    cfg = store({})
    assert cfg.provider == "sqlite" and cfg.config == SQLiteStoreOptions()
    assert store({"config": {"durability": "normal"}}).config == SQLiteStoreOptions(durability="normal")


def test_an_option_of_the_other_provider_is_named() -> None:
    message = refused({"provider": "postgres", "config": {"url": URL, "path": "/data/m.db"}})
    assert "path" in message and "'sqlite' store" in message and "url" in message
    message = refused({"provider": "sqlite", "config": {"url": URL}})
    assert "url" in message and "'postgres' store" in message and "name provider 'postgres'" in message
    assert "name provider 'postgres'" in refused({"config": {"schema": "x"}})
    assert "nonsense" in refused({"provider": "postgres", "config": {"url": URL, "nonsense": 1}})


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"url": URL, "schema": "Memlane"}, "not a safe schema name"),
        ({"url": URL, "schema": "mem-lane"}, "not a safe schema name"),
        ({"url": URL, "schema": "1st"}, "not a safe schema name"),
        ({"url": URL, "schema": "a" * 64}, "not a safe schema name"),
        ({"url": URL, "schema": 'x"; DROP SCHEMA public; --'}, "not a safe schema name"),
        ({"url": URL, "schema": "pg_memories"}, "reserves the pg_ prefix"),
        ({"url": URL, "min_connections": 0}, "min_connections"),
        ({"url": URL, "min_connections": 5, "max_connections": 2}, "must be at least min_connections (5)"),
        ({"url": URL, "timeout": 0}, "timeout"),
        ({"url": "mysql://u:p@h/db"}, "has scheme 'mysql'"),
        ({"url": "postgresql+psycopg://u:p@h/db"}, "SQLAlchemy driver suffix"),
        ({"url": "db.internal"}, "neither a postgresql:// URL"),
        ({"url": "  "}, "is empty"),
    ],
)
def test_bad_postgres_options(options: dict[str, Any], expected: str) -> None:
    message = refused({"provider": "postgres", "config": options})
    assert expected in message and message.startswith("invalid memlane config: vector_store.config")
    assert "s3cret" not in message


def test_unknown_provider_lists_the_known_ones() -> None:
    message = refused({"provider": "qdrant"})
    assert "'qdrant'" in message and "'sqlite'" in message and "'postgres'" in message and "pgvector" in message


def test_a_63_character_schema_is_fine() -> None:
    assert store({"provider": "postgres", "config": {"url": URL, "schema": "m" * 63}}).config.db_schema == "m" * 63


# -- mem0's pgvector --------------------------------------------------------------------------------
def test_mem0_pgvector_docs_example_maps() -> None:
    cfg = store({"provider": "pgvector",
                 "config": {"user": "test", "password": "123", "host": "127.0.0.1", "port": "5432"}})  # fmt: skip
    assert cfg.provider == "postgres"
    assert cfg.config == PostgresStoreOptions(url="postgresql://test:123@127.0.0.1:5432/postgres")


def test_mem0_pgvector_connection_string_collection_and_pool() -> None:
    options = {"connection_string": URL, "collection_name": "memories", "hnsw": True, "diskann": False,
               "minconn": 2, "maxconn": 8}  # fmt: skip
    cfg = store({"provider": "pgvector", "config": options})
    assert cfg.config == PostgresStoreOptions(url=URL, schema="memories", min_connections=2, max_connections=8)
    assert (
        store({"provider": "pgvector", "config": {"connection_string": URL, "schema_name": "s"}}).config.db_schema
        == "s"
    )


def test_mem0_pgvector_quotes_credentials_and_places_sockets() -> None:
    options = {"user": "me@corp", "password": "p@ss/w:rd", "host": "db", "port": 6543, "dbname": "mem zero",
               "sslmode": "require"}  # fmt: skip
    url = store({"provider": "pgvector", "config": options}).config.url
    assert url == "postgresql://me%40corp:p%40ss%2Fw%3Ard@db:6543/mem%20zero?sslmode=require"
    socket = store({"provider": "pgvector", "config": {"host": "/run/postgresql", "port": 5433, "dbname": "m"}})
    assert socket.config.url == "postgresql:///m?host=%2Frun%2Fpostgresql&port=5433"
    assert store({"provider": "pgvector", "config": {"host": "::1", "port": 5432}}).config.url == (
        "postgresql://[::1]:5432/postgres"
    )


def test_mem0_embedding_model_dims_is_checked_against_the_embedder() -> None:
    options: dict[str, Any] = {"connection_string": URL, "embedding_model_dims": 1536}
    config = {"vector_store": {"provider": "pgvector", "config": options}}
    assert MemoryConfig.from_dict(config).vector_store.embedding_model_dims == 1536
    with pytest.raises(ConfigError, match="embedding_model_dims is 1536"):
        Memory(config=config, embedder=HashEmbedder())  # 64 dimensions; nothing is opened
    options["embedding_model_dims"] = HashEmbedder().dimension
    Memory(config=config, embedder=HashEmbedder())  # matches: accepted (no connection until first use)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"connection_string": URL, "diskann": True}, "DiskANN is not supported"),
        ({"connection_string": URL, "hnsw": False}, "hnsw=false"),
        ({"connection_string": URL, "connection_pool": "pool"}, "Memory(store=PostgresStore(...))"),
        ({"connection_string": URL, "host": "db"}, "not both"),
        ({"connection_string": URL, "url": URL}, "not both"),
        ({"connection_string": URL, "schema_name": "a", "collection_name": "b"}, "schema_name or collection_name"),
        ({"connection_string": URL, "index_type": "hnsw"}, "unknown pgvector option(s) index_type"),
        ({"connection_string": URL, "collection_name": "Mem0"}, "not a safe schema name"),
    ],
)
def test_mem0_pgvector_keys_that_do_not_map(options: dict[str, Any], expected: str) -> None:
    assert expected in refused({"provider": "pgvector", "config": options})


# -- MEMLANE_DATABASE_URL ---------------------------------------------------------------------------
def test_database_url_env_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLANE_DATABASE_URL", URL)
    assert MemoryConfig().store() == StoreConfig(provider="postgres", config=PostgresStoreOptions(url=URL))
    assert store({}).config == PostgresStoreOptions(url=URL)
    assert store({"provider": "sqlite"}).provider == "sqlite"  # a named provider wins
    other = "postgresql://other@db2/x"
    assert store({"provider": "postgres", "config": {"url": other}}).config.url == other  # the config's URL wins
    named = store({"provider": "postgres", "config": {"schema": "tenant_a", "max_connections": 3}})
    assert named.config == PostgresStoreOptions(url=URL, schema="tenant_a", max_connections=3)  # URL from env
    message = refused({"config": {"durability": "normal"}})
    assert "names no provider" in message and "MEMLANE_DATABASE_URL" in message and '"provider": "sqlite"' in message


def test_a_malformed_database_url_env_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLANE_DATABASE_URL", "postgresql+asyncpg://u:s3cret@db/m")
    message = refused({})
    assert message.startswith("invalid MEMLANE_DATABASE_URL: url: has the SQLAlchemy driver suffix")
    assert "s3cret" not in message


def test_postgres_without_any_url() -> None:
    message = refused({"provider": "postgres", "config": {"schema": "a"}})
    assert "needs a URL" in message and "MEMLANE_DATABASE_URL" in message


def test_with_database_url_keeps_other_options() -> None:
    store_config = {"provider": "postgres", "config": {"url": URL, "max_connections": 4}}
    base = MemoryConfig.from_dict({"vector_store": store_config, "embedder": {"provider": "hash"}})
    moved = base.with_database_url("postgresql://x@y/z", schema="other")
    assert moved.store().config == PostgresStoreOptions(url="postgresql://x@y/z", schema="other", max_connections=4)
    assert moved.embedder == base.embedder
    assert MemoryConfig().with_database_url(URL).store().config == PostgresStoreOptions(url=URL)
    with pytest.raises(ConfigError, match="has scheme 'http'"):
        MemoryConfig().with_database_url("http://db")
    with pytest.raises(ConfigError, match="not a safe schema name"):
        MemoryConfig().with_database_url(URL, schema="Bad")


def test_mask_url() -> None:
    assert mask_url(URL) == "postgresql://memlane:***@db.internal:5432/memlane"
    assert mask_url("postgresql://u:p@ss@h/db?password=x&sslmode=require") == (
        "postgresql://u:***@h/db?password=***&sslmode=require"
    )
    assert mask_url("host=h password='a b' dbname=x") == "host=h password=*** dbname=x"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert "s3cret" not in store({"provider": "postgres", "config": {"url": URL}}).describe()


# -- Memory builds the configured store, without connecting ------------------------------------------
def test_memory_builds_a_postgres_store_without_connecting(tmp_path: Path) -> None:
    url = f"postgresql://nobody@127.0.0.1:{closed_port()}/nothing"
    config = {"vector_store": {"provider": "postgres", "config": {"url": url, "schema": "s1", "max_connections": 3}}}
    m = Memory(config=config, embedder=HashEmbedder())
    assert isinstance(m.store, PostgresStore)
    assert (m.store.url, m.store.schema, m.store.min_size, m.store.max_size) == (url, "s1", 1, 3)
    m.close()


def test_path_beats_the_environment_but_not_a_named_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLANE_DATABASE_URL", URL)
    assert isinstance(Memory(tmp_path / "m.db", embedder=HashEmbedder()).store, SQLiteStore)
    from_env = Memory(embedder=HashEmbedder()).store
    assert isinstance(from_env, PostgresStore) and from_env.url == URL
    with pytest.raises(InvalidRequest) as info:
        Memory(tmp_path / "m.db", embedder=HashEmbedder(), config={"vector_store": {"provider": "postgres"}})
    assert "drop path" in str(info.value) and "s3cret" not in str(info.value)
    assert not (tmp_path / "m.db").exists()


def test_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "memlane.stores.postgres", None)  # as if the module could not be imported
    with pytest.raises(ConfigError, match=r"pip install 'memlane\[postgres\]'"):
        Memory(config={"vector_store": {"provider": "postgres", "config": {"url": URL}}}, embedder=HashEmbedder())
