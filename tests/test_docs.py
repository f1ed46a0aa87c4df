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
