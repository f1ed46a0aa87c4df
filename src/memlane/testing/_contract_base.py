"""What the store contract's tests share: the store type aliases, fixed times and the helpers
that build rows the way ``Memory`` does (split from ``_store_contract`` to keep modules small)."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from memlane.core.filters import to_iso
from memlane.core.records import NewMemory, StoredMemory
from memlane.core.text import analyse, content_hash, query_terms
from memlane.protocols import Store, Vector
from memlane.testing._doubles import HashEmbedder
from memlane.types import Scope

__all__ = ["ALICE", "T0", "ContractHelpers", "StoreFactory", "StoreUnderTest", "raises"]

# Kept as an alias: the store surface is memlane.protocols.Store.
StoreUnderTest = Store


StoreFactory = Callable[[], StoreUnderTest]
"""Returns a new, unopened handle on the test's database: every call within one test reaches the
same database (so reopening and cross-handle visibility can be checked); each test starts empty."""

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALICE = Scope(user_id="alice")


@contextmanager
def raises(kind: type[BaseException]) -> Iterator[None]:
    """Assert that the block raises ``kind`` (plain Python: the contract needs nothing from pytest)."""
    try:
        yield
    except kind:
        return
    raise AssertionError(f"expected {kind.__name__}")


class ContractHelpers:
    """Helpers of the contract test classes: an opened store, rows and facts built like ``Memory`` builds them."""

    embedder_id = "contract-hash-v1"
    dimension = 64

    # -- helpers ---------------------------------------------------------------------------
    def embedder(self) -> HashEmbedder:
        """The embedder the contract's vectors come from."""
        return HashEmbedder(self.dimension, self.embedder_id)

    def opened(self, store_factory: StoreFactory) -> StoreUnderTest:
        """A new handle, opened for the contract's embedder."""
        store = store_factory()
        store.open(self.embedder_id, self.dimension)
        return store

    def vec(self, text: str) -> Vector:
        """The embedding of ``text``."""
        vector: Vector = self.embedder().embed([text])[0]
        return vector

    def row(
        self,
        text: str,
        *,
        user_id: str | None = "alice",
        agent_id: str | None = None,
        run_id: str | None = None,
        actor_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        created: datetime = T0,
        expires_at: datetime | None = None,
        conversational: bool = False,
    ) -> NewMemory:
        """A memory ready to insert, built the way ``Memory.add`` builds it."""
        return NewMemory(
            id=str(uuid.uuid4()),
            memory=text,
            search_text=analyse(text),
            hash=content_hash(text),
            embedding=self.vec(text),
            user_id=user_id,
            agent_id=agent_id,
            run_id=run_id,
            role="user",
            actor_id=actor_id,
            metadata=metadata or {},
            created_at=to_iso(created),
            timestamp=to_iso(created),
            expires_at=to_iso(expires_at) if expires_at else None,
            conversational=conversational,
        )

    def add(self, store: StoreUnderTest, *texts: str, **kwargs: Any) -> builtins.list[str]:
        """Insert one memory per text (same scope); returns their ids."""
        results = store.insert([self.row(t, **kwargs) for t in texts], T0)
        assert [event for _, event in results] == ["ADD"] * len(texts), results
        return [mid for mid, _ in results]

    def edit(
        self,
        store: StoreUnderTest,
        mid: str,
        text: str,
        *,
        now: datetime = T0,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[StoredMemory, StoredMemory]:
        """Update a memory's text the way ``Memory.update`` does."""
        return store.update(
            mid,
            text=text,
            search_text=analyse(text),
            content_hash=content_hash(text),
            embedding=self.vec(text),
            metadata=metadata,
            now=now,
        )

    def rids(self, store: StoreUnderTest, scope: Scope = ALICE, now: datetime = T0) -> dict[str, int]:
        """Memory id -> row id of everything dense search returns in ``scope``."""
        hits = store.dense(scope, None, self.vec("anything"), 100_000, now)
        return {m.id: rid for rid, m in store.fetch(rid for rid, _ in hits).items()}

    def keyword_ids(self, store: StoreUnderTest, query: str, scope: Scope = ALICE, **kw: Any) -> builtins.list[str]:
        """Ids of keyword matches for ``query``, best first."""
        extra = {"include": kw["include"]} if kw.get("include") else {}
        rids = store.keyword(
            scope, kw.get("node"), query_terms(query), kw.get("k", 100), kw.get("now", T0), kw.get("as_of"), **extra
        )
        found = store.fetch(rids)
        return [found[r].id for r in rids]

    def dense_ids(self, store: StoreUnderTest, query: str, scope: Scope = ALICE, **kw: Any) -> builtins.list[str]:
        """Ids of dense matches for ``query``, nearest first."""
        extra = {"include": kw["include"]} if kw.get("include") else {}
        hits = store.dense(
            scope, kw.get("node"), self.vec(query), kw.get("k", 100), kw.get("now", T0), kw.get("as_of"), **extra
        )
        found = store.fetch(r for r, _ in hits)
        return [found[r].id for r, _ in hits]

    def fact(self, text: str, *, when: datetime = T0, **kwargs: Any) -> NewMemory:
        """A fact row as the extraction pipeline builds it (no role, not conversational)."""
        new = self.row(text, created=when, **kwargs)
        new.role = None
        return new
