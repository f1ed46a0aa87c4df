"""Profiles on ``Memory``: a user's stable facts with their sources, served in one call.

``ProfileMethods`` is the part of ``Memory``'s API that builds and reads them (through
``ConsolidationMethods``, which rebuilds the profiles of the users a pass touched). With an LLM
the model writes the profile from the user's memories and every entry must cite one it was shown;
without one it comes from the entity graph and the preferences the user stated. A profile is
rebuilt only when its input (its memories' ids and texts) changed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memlane.config import MemoryConfig
from memlane.core.consolidate import Row
from memlane.core.consolidate_llm import PROFILE_SCHEMA, PROFILE_SECTIONS, parse_profile, profile_prompt
from memlane.core.inputs import check_text
from memlane.errors import InvalidRequest
from memlane.pipeline import FactPipeline, UsageMeter
from memlane.protocols import LLM, Embedder, Store
from memlane.types import Profile, ProfileEntry, Scope, Usage

__all__ = ["ProfileMethods", "an_object"]

_PREFERENCE = re.compile(
    r"\b(prefer|prefers|preferred|likes?|loves?|enjoys?|hates?|dislikes?|favou?rite|allergic|vegetarian|vegan|"
    r"can't stand|into)\b",
    re.IGNORECASE,
)
_SECTION_OF_TYPE = {"person": "people", "place": "places", "organization": "work", "project": "work"}
_PROFILE_INPUT = 300  # memories shown to the LLM for a profile: the most used, then the newest


def _render(sections: dict[str, list[ProfileEntry]]) -> str:
    lines = []
    for name in PROFILE_SECTIONS:
        entries = sections.get(name) or []
        if entries:
            lines.append(f"{name.capitalize()}: " + "; ".join(e["text"] for e in entries))
    return "\n".join(lines)


def _fingerprint(rows: Sequence[Row], mode: str) -> str:
    digest = hashlib.sha256(mode.encode())
    for r in sorted(rows, key=lambda r: r.id):
        digest.update(f"{r.id}:{r.hash};".encode())
    return digest.hexdigest()


def an_object(data: Any) -> dict[str, Any]:
    """Accept a JSON object answer (the LLM answers are read by the core's parsers)."""
    if not isinstance(data, dict):
        raise ValueError("the answer must be a JSON object")
    return data


class ProfileMethods:
    """Profiles on ``Memory``; ``Memory`` supplies the store, models, clock and config."""

    config: MemoryConfig
    _embedder: Embedder
    _usage: UsageMeter

    def _open(self) -> Store:
        raise NotImplementedError  # Memory's

    def _now(self) -> datetime:
        raise NotImplementedError  # Memory's

    @property
    def llm(self) -> LLM | None:
        raise NotImplementedError  # Memory's

    def _user_rows(self, store: Any, user_id: str) -> list[Row]:
        now = self._now()
        rows: list[Row] = []
        for sc in store.scopes(Scope(user_id=user_id)):
            rows += store.consolidation_rows(sc, now)
        return rows

    def _rebuild_profile(
        self, store: Any, user_id: str, pipeline: FactPipeline | None, usage: Usage, dry_run: bool
    ) -> bool:
        """Rebuild a user's profile when what it is built from changed; True when it did (would)."""
        rows = [r for r in self._user_rows(store, user_id) if not r.episodic]
        mode = "llm" if pipeline is not None else "graph"
        fingerprint = _fingerprint(rows, mode)
        stored = store.profile(Scope(user_id=user_id))
        if stored is not None and stored[1] == fingerprint:
            return False
        if dry_run:
            return True
        if pipeline is not None and rows:
            newest = sorted(rows, key=lambda r: r.timestamp, reverse=True)
            chosen = sorted(newest, key=lambda r: -r.retrievals)[:_PROFILE_INPUT]  # most used, then newest
            chosen.sort(key=lambda r: (r.timestamp, r.id))
            prompt, table = profile_prompt(chosen)
            data = pipeline._ask(prompt, PROFILE_SCHEMA, "profile", an_object, usage)
            sections = parse_profile(data, table)
        else:
            sections = self._graph_profile(store, user_id, rows)
        body = {"sections": sections, "mode": mode if rows else "empty", "memories": len(rows)}
        store.put_profile(Scope(user_id=user_id), body, fingerprint, self._now())
        return True

    def _graph_profile(self, store: Any, user_id: str, rows: Sequence[Row]) -> dict[str, list[dict[str, Any]]]:
        """A profile without an LLM: the user's entities by type, and the preferences they stated."""
        sections: dict[str, list[dict[str, Any]]] = {name: [] for name in PROFILE_SECTIONS}
        entities = store.entities(Scope(user_id=user_id))
        named = store.entity_memories([e.id for e in entities]) if entities else {}
        ranked = sorted(entities, key=lambda e: (-len(named.get(e.id, [])), e.name))
        for e in ranked:
            section = _SECTION_OF_TYPE.get(e.type or "", "other")  # a name found offline has no type
            memories = named.get(e.id, [])
            if not memories or len(sections[section]) >= 8:
                continue
            sections[section].append({"text": e.name, "sources": memories[:5]})
        stated = [r for r in rows if r.role in (None, "user") and len(r.memory) <= 200 and _PREFERENCE.search(r.memory)]
        stated.sort(key=lambda r: r.timestamp, reverse=True)
        stated.sort(key=lambda r: -r.retrievals)
        sections["preferences"] = [{"text": r.memory, "sources": [r.id]} for r in stated[:8]]
        return sections

    def profile(self, *, user_id: str, refresh: bool = False) -> Profile:
        """A user's stable facts (preferences, people, places, work, other), each with the ids of
        the memories it rests on, and the same as ``text`` for a prompt: one call, no search.

        The profile is rebuilt by ``consolidate`` (by an LLM when one is configured, else from the
        entity graph and the preferences the user stated); the first call builds it when none is
        stored, and ``refresh=True`` rebuilds it now if its memories changed.

        Raises:
            ScopeRequired, InvalidRequest; ProviderError / LLMOutputError when a rebuild's LLM fails.
        """
        user = check_text(user_id, "user_id")
        if not isinstance(refresh, bool):
            raise InvalidRequest(f"refresh must be True or False, got {refresh!r}")
        store: Any = self._open()
        stored = store.profile(Scope(user_id=user))
        if stored is None or refresh:
            llm = self.llm
            pipeline = FactPipeline(llm, self._embedder, store, self.config.extraction, self._usage) if llm else None
            usage = Usage(llm_calls=0, prompt_tokens=0, completion_tokens=0)
            self._rebuild_profile(store, user, pipeline, usage, dry_run=False)
            stored = store.profile(Scope(user_id=user))
        body, _, updated = stored if stored is not None else ({}, "", None)
        sections: dict[str, list[ProfileEntry]] = {
            name: [
                ProfileEntry(text=e["text"], sources=list(e["sources"])) for e in body.get("sections", {}).get(name, [])
            ]
            for name in PROFILE_SECTIONS
        }
        return Profile(
            user_id=user, sections=sections, text=_render(sections), mode=body.get("mode", "empty"),
            updated_at=updated, memories=int(body.get("memories", 0)),
        )  # fmt: skip
