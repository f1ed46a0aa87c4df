"""Docs are part of the code: every public method of ``Memory`` is documented in README.md or docs/."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from memlane import AsyncMemory, Memory

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CORE_METHODS = {"add", "search", "get", "get_all", "update", "delete", "delete_all", "history", "reset"}


def _public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or inspect.ismethod(member))
    }


def _documentation() -> str:
    assert README.is_file(), f"{README} is missing: the README is part of the release"
    pages = sorted(DOCS.rglob("*.md")) if DOCS.is_dir() else []
    return "\n".join(p.read_text(encoding="utf-8") for p in [README, *pages])


def test_public_method_list_is_complete() -> None:
    assert _public_methods(Memory) >= CORE_METHODS
    assert _public_methods(AsyncMemory) >= CORE_METHODS


@pytest.mark.parametrize("name", sorted(_public_methods(Memory)))
def test_memory_method_is_documented(name: str) -> None:
    text = _documentation()
    pattern = re.compile(rf"(\b{re.escape(name)}\s*\(|`{re.escape(name)}`)")
    assert pattern.search(text), f"Memory.{name} is not mentioned in README.md or docs/ (as `{name}(` or `{name}`)"


def test_readme_shows_the_core_methods() -> None:
    assert README.is_file(), f"{README} is missing"
    text = README.read_text(encoding="utf-8")
    missing = sorted(n for n in CORE_METHODS if not re.search(rf"\b{n}\s*\(|`{n}`", text))
    assert not missing, f"README.md does not mention {missing}"


def test_every_route_is_documented() -> None:
    from memlane.server import create_app
    from memlane.testing import HashEmbedder

    app = create_app(Memory(path=ROOT / "never-created.db", embedder=HashEmbedder()))
    text = (DOCS / "server.md").read_text(encoding="utf-8")
    routes = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    missing = sorted(f"{m} {p}" for m, p in routes if f"`{m} {p}`" not in text)
    assert not missing, f"docs/server.md does not document {missing}"
    assert not (ROOT / "never-created.db").exists()


def test_clients_have_the_memory_api_and_document_it() -> None:
    from memlane import AsyncMemoryClient, MemoryClient

    # reembed is store maintenance (like `memlane migrate`), run where the store is, not over HTTP.
    data_methods = _public_methods(Memory) - {"close", "from_config", "reembed"}
    text = (DOCS / "server.md").read_text(encoding="utf-8")
    for client in (MemoryClient, AsyncMemoryClient):
        assert _public_methods(client) >= data_methods, (
            f"{client.__name__} lacks {data_methods - _public_methods(client)}"
        )
        undocumented = sorted(n for n in _public_methods(client) if f"`{n}`" not in text)
        assert not undocumented, f"docs/server.md does not mention {client.__name__}.{undocumented}"


def test_llama_index_integration_is_documented() -> None:
    """Every public method, property and setting of the LlamaIndex adapters is in docs/llama_index.md."""
    from llama_index.core.memory import BaseMemoryBlock

    from memlane.integrations.llama_index import MemlaneMemory, MemlaneMemoryBlock

    text = (DOCS / "llama_index.md").read_text(encoding="utf-8")
    for cls in (MemlaneMemory, MemlaneMemoryBlock):
        own = {
            name
            for name, member in vars(cls).items()
            if not name.startswith(("_", "model_"))
            and (inspect.isfunction(member) or isinstance(member, classmethod | property))
        } - {"class_name"}  # LlamaIndex's serialisation key, not an API
        names = own | (set(cls.model_fields) - set(BaseMemoryBlock.model_fields))
        missing = sorted(n for n in names if not re.search(rf"(\b{re.escape(n)}\s*\(|`{re.escape(n)}`)", text))
        assert not missing, f"docs/llama_index.md does not mention {cls.__name__}.{missing}"
        assert len(own) >= 4, f"{cls.__name__}: found only {sorted(own)}; the check lost track of the methods"
