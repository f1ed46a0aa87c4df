"""memlane's REST server: ``memlane serve``, or ``create_app(memory)`` inside your own ASGI stack.

``serve`` hands its config to the uvicorn workers through the environment (``MEMLANE_CONFIG``,
``MEMLANE_HOME``, the server settings and, for ``--database-url``, ``MEMLANE_SERVE_DATABASE_URL``),
so each worker builds the same ``Memory`` in :func:`app_from_env`.
"""

from __future__ import annotations

import copy
import logging
import logging.config
import os
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from memlane import InvalidRequest, Memory, MemoryConfig
from memlane.server.app import create_app
from memlane.server.keys import ApiKey, KeyStore, key_store_for
from memlane.server.keys_postgres import PostgresKeyStore
from memlane.server.keys_sqlite import SQLiteKeyStore
from memlane.server.settings import ServerSettings, require_auth_or_loopback

__all__ = [
    "ApiKey",
    "KeyStore",
    "PostgresKeyStore",
    "SQLiteKeyStore",
    "ServerSettings",
    "app_from_env",
    "create_app",
    "key_store_for",
    "load_config",
    "serve",
]

log = logging.getLogger("memlane.server")

# ``serve(database_url=...)`` to its workers: unlike MEMLANE_DATABASE_URL it beats the config file.
_DATABASE_URL_OVERRIDE = "MEMLANE_SERVE_DATABASE_URL"


def load_config(
    config_file: str | None = None, home: str | None = None, database_url: str | None = None
) -> MemoryConfig:
    """The ``MemoryConfig`` a server or CLI uses: a JSON file (or ``$MEMLANE_CONFIG``), then ``home``.

    Args:
        config_file, home: the config file and home directory (default: the environment's).
        database_url: store memories in PostgreSQL at this URL, whatever the config file says.
    Raises:
        ConfigError: an unreadable or invalid config file, or a malformed ``database_url``.
    """
    path = config_file or os.environ.get("MEMLANE_CONFIG")
    config = MemoryConfig.from_file(path) if path else MemoryConfig()
    config = config.model_copy(update={"home": home}) if home else config
    return config.with_database_url(database_url) if database_url else config


def app_from_env() -> FastAPI:
    """The app a uvicorn worker builds (``memlane serve`` hands config and settings over the environment)."""
    settings = ServerSettings.from_env()
    config = load_config(database_url=os.environ.get(_DATABASE_URL_OVERRIDE) or None)
    keys = key_store_for(config.store(), settings.home)
    return create_app(lambda: Memory(config=config), settings, keys=keys)


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8420,
    workers: int = 1,
    auth: bool = True,
    config_file: str | None = None,
    home: str | None = None,
    log_level: str = "info",
    database_url: str | None = None,
    **limits: float | int | None,
) -> None:
    """Run the REST server until interrupted.

    Args:
        host, port: where to listen (default loopback only).
        workers: processes sharing the store (each loads the embedder).
        auth: require API keys; ``False`` (``--no-auth``) is refused unless ``host`` is loopback.
        config_file, home: the memlane config and home (default ``$MEMLANE_CONFIG``, ``$MEMLANE_HOME``).
        log_level: uvicorn's log level.
        database_url: serve the PostgreSQL store at this URL, whatever the config says (without
            it: the config's store, or ``$MEMLANE_DATABASE_URL`` when the config names none).
        limits: ``ServerSettings`` fields (``rate_limit``, ``max_body_bytes``, ``request_timeout``, ...).
    Raises:
        InvalidRequest: ``auth=False`` on a non-loopback host, bad limits or worker count.
        ConfigError: the config is invalid.
    """
    require_auth_or_loopback(host, auth=auth)
    if not isinstance(workers, int) or workers < 1:
        raise InvalidRequest(f"workers must be a positive integer, got {workers!r}")
    config = load_config(config_file, home, database_url)
    store = config.store()  # a store that cannot be built fails here, not in every worker
    settings = ServerSettings(auth=auth, home=str(config.home_path())).with_overrides(**limits)
    os.environ.update(settings.to_env())
    if database_url:
        os.environ[_DATABASE_URL_OVERRIDE] = database_url
    else:
        os.environ.pop(_DATABASE_URL_OVERRIDE, None)
    if config_file:
        os.environ["MEMLANE_CONFIG"] = str(Path(config_file).resolve())
    if home:
        os.environ["MEMLANE_HOME"] = str(Path(home).expanduser().resolve())
    keys = key_store_for(store, settings.home)
    try:
        if auth and not keys.list():
            log.warning("no API keys yet: every request will get 401; create one with `memlane keys create --admin`")
    finally:
        keys.close()
    logging_config = _log_config(log_level)
    logging.config.dictConfig(logging_config)
    log.info("memlane store: %s; API keys, rate limits and audit log: %s", store.describe(), keys.describe())
    uvicorn.run(
        "memlane.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=logging_config,
        timeout_graceful_shutdown=10,
    )


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus memlane's own loggers (the store line, scheduled passes) at
    ``level`` on uvicorn's stderr handler: without it only their warnings would show."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["memlane"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config
