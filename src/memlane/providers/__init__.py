"""Provider registry: how LLMs and embedders are found by name.

Every provider module, built-in or third-party, exposes ``register(registry)`` and is listed in the
``memlane.providers`` entry-point group of its distribution; memlane's own providers come in
through that same hook (see ``pyproject.toml``). A module's ``register`` only records factories:
vendor SDKs are imported when a factory runs, i.e. when a config names that provider.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from memlane.errors import ConfigError
from memlane.protocols import LLM, Embedder

__all__ = ["EmbedderFactory", "LLMFactory", "ProviderRegistry", "registry"]

EmbedderFactory = Callable[[Mapping[str, Any]], Embedder]
LLMFactory = Callable[[Mapping[str, Any]], LLM]
_GROUP = "memlane.providers"
T = TypeVar("T")


class ProviderRegistry:
    """Maps provider names to factories; loads entry points on first lookup."""

    def __init__(self) -> None:
        self._embedders: dict[str, EmbedderFactory] = {}
        self._llms: dict[str, LLMFactory] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def add_embedder(self, name: str, factory: EmbedderFactory) -> None:
        """Register ``factory`` under ``name`` (later registrations replace earlier ones)."""
        self._embedders[name] = factory

    def add_llm(self, name: str, factory: LLMFactory) -> None:
        """Register an LLM ``factory`` under ``name`` (later registrations replace earlier ones)."""
        self._llms[name] = factory

    def embedder(self, name: str, config: Mapping[str, Any] | None = None) -> Embedder:
        """Build the embedder registered as ``name`` from its ``config`` dict.

        Raises:
            ConfigError: no provider of that name is installed, or its config is invalid.
        """
        self._load()
        return _build(self._embedders, "embedder", name, config)

    def llm(self, name: str, config: Mapping[str, Any] | None = None) -> LLM:
        """Build the LLM registered as ``name`` from its ``config`` dict.

        Raises:
            ConfigError: no provider of that name is installed, its SDK is missing, or its config is invalid.
        """
        self._load()
        return _build(self._llms, "llm", name, config)

    def llm_names(self) -> list[str]:
        """Names of every installed LLM provider."""
        self._load()
        return sorted(self._llms)

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


def _build(factories: Mapping[str, Callable[[Mapping[str, Any]], T]], kind: str, name: str,
           config: Mapping[str, Any] | None) -> T:  # fmt: skip
    factory = factories.get(name)
    if factory is None:
        known = ", ".join(sorted(factories)) or "none"
        raise ConfigError(
            f"unknown {kind} provider {name!r}; installed providers: {known}. "
            "Install the package that provides it or fix the name in the config."
        )
    return factory(dict(config or {}))


registry = ProviderRegistry()
