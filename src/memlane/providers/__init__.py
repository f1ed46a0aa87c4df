"""Provider registry: how embedders (and, next, LLMs) are found by name.

Every provider module, built-in or third-party, exposes ``register(registry)`` and is listed in the
``memlane.embedders`` entry-point group of its distribution; memlane's own providers come in
through that same hook (see ``pyproject.toml``). Nothing is imported until a name is looked up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from memlane.errors import ConfigError
from memlane.protocols import Embedder

__all__ = ["EmbedderFactory", "ProviderRegistry", "registry"]

EmbedderFactory = Callable[[Mapping[str, Any]], Embedder]
_GROUP = "memlane.embedders"


class ProviderRegistry:
    """Maps provider names to factories; loads entry points on first lookup."""

    def __init__(self) -> None:
        self._embedders: dict[str, EmbedderFactory] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def add_embedder(self, name: str, factory: EmbedderFactory) -> None:
        """Register ``factory`` under ``name`` (later registrations replace earlier ones)."""
        self._embedders[name] = factory

    def embedder(self, name: str, config: Mapping[str, Any] | None = None) -> Embedder:
        """Build the embedder registered as ``name`` from its ``config`` dict.

        Raises:
            ConfigError: no provider of that name is installed.
        """
        self._load()
        factory = self._embedders.get(name)
        if factory is None:
            known = ", ".join(sorted(self._embedders)) or "none"
            raise ConfigError(
                f"unknown embedder provider {name!r}; installed providers: {known}. "
                "Install the package that provides it or fix the name in the config."
            )
        return factory(dict(config or {}))

    def embedder_names(self) -> list[str]:
        """Names of every installed embedder provider."""
        self._load()
        return sorted(self._embedders)

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            for ep in entry_points(group=_GROUP):
                hook = ep.load()
                hook(self)
            self._loaded = True


registry = ProviderRegistry()
