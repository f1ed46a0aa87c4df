"""The store contract's tests of long memories stored as passages.

Part of :class:`memlane.testing.StoreContract`: kept in its own module only to keep modules small.
A long memory arrives with ``NewMemory.passages``; a store must index them, find the memory
through them (``dense``, ``keyword``, ``cosines``, ``best_passages``, ``search_rows``), keep them
with their row through every write, and never show them outside the row's scope, filter or validity.
"""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from memlane.core.filters import parse_filter, to_iso
from memlane.core.passages import split_passages
from memlane.core.records import FactPlan, FactWrite, NewMemory, NewPassage, PortableMemory
from memlane.core.text import analyse, content_hash, query_terms
from memlane.errors import StoreError
from memlane.testing._contract_base import ALICE, T0, ContractHelpers, StoreFactory, StoreUnderTest, raises
from memlane.types import Scope

__all__ = ["PassageContract"]

NEEDLE = "The lighthouse keeper hides the spare key under the blue stone."
_TOPICS = ["gardening", "tomatoes", "compost", "weather", "cycling", "baking", "trains", "chess", "music"]


def _filler(i: int) -> str:
    topic, other = _TOPICS[i % len(_TOPICS)], _TOPICS[(i * 5 + 2) % len(_TOPICS)]
    return f"Paragraph {i} is about {topic} and {other}; it says {topic} matters in season {i}."


def document(needle: str = NEEDLE, paragraphs: int = 12) -> str:
    """A long text of plain paragraphs with ``needle`` as a paragraph in the middle."""
    parts = [_filler(i) for i in range(paragraphs)]
    parts.insert(paragraphs // 2, needle)
    return "\n\n".join(parts)


class PassageContract(ContractHelpers):
    """Long memories: indexed, found and ranked through their passages, kept with their row."""

    max_chars = 200

    def long_row(self, text: str, **kwargs: Any) -> NewMemory:
        """A memory with passages, built the way ``Memory.add`` builds one (the row indexed as its first passage)."""
        row = self.row(text, **kwargs)
        spans = split_passages(text, self.max_chars)
        vectors = self.embedder().embed([text[s:e] for s, e in spans])
        row.passages = [
            NewPassage(i, s, e, analyse(text[s:e]), vectors[i]) for i, (s, e) in enumerate(spans)
        ]  # fmt: skip
        row.search_text, row.embedding = row.passages[0].search_text, row.passages[0].embedding
        return row

    def add_long(self, store: StoreUnderTest, text: str, **kwargs: Any) -> tuple[str, int]:
        """Insert one long memory; returns its id and row id."""
        row = self.long_row(text, **kwargs)
        assert store.insert([row], T0) == [(row.id, "ADD")]
        found = store.dense(Scope(user_id=row.user_id, agent_id=row.agent_id, run_id=row.run_id), None,
                            self.vec(text[row.passages[-1].start : row.passages[-1].end]), 1000, T0)  # fmt: skip
        rids = {m.id: rid for rid, m in store.fetch(r for r, _ in found).items()}
        return row.id, rids[row.id]

    def needle_found(self, store: StoreUnderTest, scope: Scope = ALICE, **kw: Any) -> builtins.list[str]:
        """Ids that keyword and dense search give for the needle (keyword first), without repeats."""
        now = kw.get("now", T0)
        node, as_of = kw.get("node"), kw.get("as_of")
        keyword = store.keyword(scope, node, query_terms("lighthouse spare key"), 10, now, as_of)
        dense = [r for r, cos in store.dense(scope, node, self.vec(NEEDLE), 10, now, as_of) if cos > 0.5]
        rows = store.fetch([*keyword, *dense])
        return builtins.list(dict.fromkeys(rows[r].id for r in [*keyword, *dense]))

    # -- finding a long memory through its passages ----------------------------------------------
    def test_a_long_memory_is_found_through_its_passages(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        text = document()
        mid, rid = self.add_long(store, text)
        (short,) = self.add(store, "I like tea")
        assert "lighthous" not in store.fetch([rid])[rid].search_text  # the row itself is indexed as its start
        assert self.keyword_ids(store, "lighthouse spare key") == [mid]
        query = self.vec(NEEDLE)
        (top, cos), *_ = store.dense(ALICE, None, query, 10, T0)
        assert top == rid and cos > 0.5 and abs(store.cosines(query, [rid])[rid] - cos) < 1e-5
        terms = query_terms("where is the spare key of the lighthouse?")
        hits = store.best_passages(query, terms, [rid, self.rids(store)[short]])
        assert builtins.list(hits) == [rid]  # a memory without passages is left out
        hit = hits[rid]
        assert NEEDLE in text[hit.start : hit.end] and abs(hit.cosine - cos) < 1e-5
        assert hit.search_text == analyse(text[hit.start : hit.end]) and hit.seq > 0
        rows = store.search_rows([rid, self.rids(store)[short]])
        assert rows[rid].passages == len(split_passages(text, self.max_chars)) > 3
        assert rows[self.rids(store)[short]].passages == 0

    def test_best_passage_prefers_query_terms_then_cosine(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        text = document()
        _, rid = self.add_long(store, text)
        elsewhere = self.vec(_filler(9))  # a vector nearest another passage
        by_terms = store.best_passages(elsewhere, query_terms("lighthouse spare key"), [rid])[rid]
        assert NEEDLE in text[by_terms.start : by_terms.end]
        by_cosine = store.best_passages(elsewhere, [], [rid])[rid]
        assert _filler(9) in text[by_cosine.start : by_cosine.end]
        unmatched = store.best_passages(elsewhere, query_terms("submarine"), [rid])[rid]
        assert unmatched == by_cosine

    def test_passages_keep_to_scope_filter_and_expiry(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        soon = T0 + timedelta(hours=1)
        bob, _ = self.add_long(store, document(), user_id="bob", metadata={"kind": "doc"}, expires_at=soon)
        assert self.needle_found(store) == []  # alice sees nothing of bob's passages
        assert self.needle_found(store, Scope(user_id="bob")) == [bob]
        assert self.needle_found(store, Scope(user_id="bob"), node=parse_filter({"kind": "doc"})) == [bob]
        assert self.needle_found(store, Scope(user_id="bob"), node=parse_filter({"kind": "mail"})) == []
        assert self.needle_found(store, Scope(user_id="bob"), now=soon + timedelta(seconds=1)) == []
        other = self.opened(store_factory)  # another handle sees them at once
        assert self.needle_found(other, Scope(user_id="bob")) == [bob]

    # -- passages go with their row ---------------------------------------------------------------
    def test_update_and_delete_replace_or_remove_passages(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        mid, rid = self.add_long(store, document())
        new_needle = "The ferry timetable changed to hourly departures at dawn."
        text = document(new_needle)
        row = self.long_row(text)
        store.update(mid, text=text, search_text=row.search_text, content_hash=content_hash(text),
                     embedding=row.embedding, metadata=None, now=T0, passages=row.passages)  # fmt: skip
        assert self.needle_found(store) == []
        assert self.keyword_ids(store, "ferry timetable") == [mid]
        assert store.search_rows([rid])[rid].passages == len(row.passages)
        self.edit(store, mid, "now a short note")  # no passages: the old ones go
        assert self.keyword_ids(store, "ferry timetable") == [] and store.search_rows([rid])[rid].passages == 0
        assert store.best_passages(self.vec(new_needle), [], [rid]) == {}
        mid, rid = self.add_long(store, document())
        store.delete(mid, purge=True, now=T0)
        assert self.needle_found(store) == [] and store.best_passages(self.vec(NEEDLE), [], [rid]) == {}
        assert store.cosines(self.vec(NEEDLE), [rid]) == {}

    def test_a_failed_insert_writes_no_passages(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (existing,) = self.add(store, "the first memory")
        good, clash = self.long_row(document()), self.row("another text")
        clash.id = existing
        with raises(StoreError):
            store.insert([good, clash], T0)
        assert self.needle_found(store) == []
        assert store.dense(ALICE, None, self.vec(NEEDLE), 10, T0)[0][1] < 0.5

    def test_delete_scope_and_reset_remove_passages(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        self.add_long(store, document())
        bob, _ = self.add_long(store, document(), user_id="bob")
        assert store.delete_scope(ALICE, purge=True, now=T0) == 1
        assert self.needle_found(store) == [] and self.needle_found(store, Scope(user_id="bob")) == [bob]
        store.reset()
        store = self.opened(store_factory)
        assert self.needle_found(store, Scope(user_id="bob")) == []
        self.add_long(store, document())  # passage numbers and indexes start clean
        assert len(self.needle_found(store)) == 1

    def test_a_past_version_keeps_the_passages_of_its_text(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        long = self.long_row(document())
        long.role = None
        (first,) = store.apply_facts(FactPlan([], [FactWrite("ADD", long)]), T0)
        later = T0 + timedelta(days=10)
        rewrite = self.fact("The document was replaced by a summary", when=later)
        store.apply_facts(FactPlan([], [FactWrite("UPDATE", rewrite, (), first.id, long.hash)]), later)
        assert self.needle_found(store, now=later) == []
        assert self.needle_found(store, now=later, as_of=T0 + timedelta(days=1)) == [first.id]
        (rid,) = store.keyword(ALICE, None, query_terms("lighthouse"), 10, later, T0 + timedelta(days=1))
        assert store.fetch([rid])[rid].valid_until == to_iso(later)
        assert NEEDLE in long.memory[slice(*store.best_passages(self.vec(NEEDLE), [], [rid])[rid][1:3])]
        store.delete(first.id, purge=False, now=later)
        assert self.needle_found(store, now=later, as_of=T0 + timedelta(days=1)) == []

    def test_import_writes_passages(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        long = self.long_row(document())
        record = PortableMemory(
            id=long.id, memory=long.memory, hash=long.hash, user_id="alice", agent_id=None, run_id=None, role="user",
            actor_id=None, metadata={}, created_at=long.created_at, updated_at=long.created_at,
            timestamp=long.timestamp, expires_at=None, search_text=long.search_text, embedding=long.embedding,
            passages=long.passages,
        )  # fmt: skip
        assert store.import_records([record], [], on_conflict="error", now=T0).imported == 1
        assert self.needle_found(store) == [long.id]
