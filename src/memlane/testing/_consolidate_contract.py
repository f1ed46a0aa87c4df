"""The store contract's consolidation tests: merges, supersessions, summaries, archiving, access
statistics, profiles and leases, each one transaction that re-checks what its plan saw.

Part of :class:`memlane.testing.StoreContract`: kept in its own module only to keep modules small.
"""

from __future__ import annotations

from datetime import timedelta

from memlane.core.filters import to_iso
from memlane.core.records import FactPlan, FactWrite, SourceMessage
from memlane.errors import InvalidRequest, MemoryNotFound
from memlane.testing._contract_base import ALICE, T0, ContractHelpers, StoreFactory, StoreUnderTest, raises
from memlane.types import Scope

__all__ = ["ConsolidationContract"]

_LATER = T0 + timedelta(days=1)


class ConsolidationContract(ContractHelpers):
    """What ``Memory.consolidate`` relies on from a store."""

    def pair(self, store: StoreUnderTest, a: str = "I love sushi", b: str = "i love sushi!") -> tuple[str, str]:
        first, second = self.add(store, a, b)
        return first, second

    def hashed(self, store: StoreUnderTest, mid: str) -> tuple[str, str]:
        found = store.get(mid)
        assert found is not None
        return (mid, found.hash)

    def test_consolidation_reads_active_rows_of_one_exact_scope(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        kept, gone = self.pair(store)
        self.add(store, "in a run", run_id="r1")
        self.add(store, "expired", expires_at=T0 + timedelta(seconds=1))
        self.add(store, "bob's", user_id="bob")
        assert store.scopes(ALICE) == [ALICE, Scope(user_id="alice", run_id="r1")]
        assert len(store.scopes(None)) == 3
        rows = store.consolidation_rows(ALICE, T0 + timedelta(minutes=1))
        assert [r.memory for r in rows] == ["I love sushi", "i love sushi!"]  # stored order; not expired ones
        assert rows[0].embedding.shape == (self.dimension,) and rows[0].last_active == to_iso(T0)
        store.merge(ALICE, self.hashed(store, kept), [self.hashed(store, gone)], _LATER)
        assert [r.id for r in store.consolidation_rows(ALICE, _LATER)] == [kept]

    def test_consolidation_merge_moves_provenance_entities_and_retrievals(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        kept = self.add(store, "Dinner with Priya")[0]
        fact = self.fact("dinner with Priya!")
        msg = SourceMessage("user", None, "We had dinner with Priya", to_iso(T0))
        ((gone, _, _, _),) = store.apply_facts(FactPlan([msg], [FactWrite("ADD", fact, (0,))]), T0)
        store.record_access({gone: (3, to_iso(T0)), kept: (1, to_iso(_LATER))})
        # A plan that saw another text for the kept memory changes nothing.
        assert store.merge(ALICE, (kept, "stale-hash"), [self.hashed(store, gone)], _LATER) is None
        assert store.merge(ALICE, self.hashed(store, kept), [(gone, "stale-hash")], _LATER) is None
        out = store.merge(ALICE, self.hashed(store, kept), [self.hashed(store, gone)], _LATER)
        assert out is not None and (out.into, out.merged, out.memory) == (kept, (gone,), "Dinner with Priya")
        assert [s["content"] for s in store.sources(kept)] == ["We had dinner with Priya"]
        assert store.access([kept, gone]) == {kept: (4, to_iso(_LATER)), gone: (3, to_iso(T0))}
        merged = store.get(gone)
        assert merged is not None and (merged.state, merged.merged_into) == ("merged", kept)
        assert merged.valid_until == to_iso(_LATER)
        assert [e["event"] for e in store.history(gone)] == ["ADD", "MERGE"]
        assert self.dense_ids(store, "dinner Priya", now=_LATER) == [kept]
        assert self.keyword_ids(store, "dinner Priya", now=_LATER) == [kept]
        assert set(self.dense_ids(store, "dinner Priya", now=_LATER, include=("merged",))) == {kept, gone}
        shown = store.list(ALICE, None, limit=10, now=_LATER, include=("merged",))
        assert {m.id for m in shown} == {kept, gone} and len(store.list(ALICE, None, limit=10, now=_LATER)) == 1
        # Search of the past still sees it, until it was merged.
        assert set(self.dense_ids(store, "dinner", now=_LATER, as_of=T0 + timedelta(hours=1))) == {kept, gone}

    def test_consolidation_merge_with_a_rewrite_keeps_the_old_text_as_a_version(
        self, store_factory: StoreFactory
    ) -> None:
        store = self.opened(store_factory)
        kept, gone = self.add(store, "Enjoys hiking", "Likes to go hiking")
        rewrite = self.row("Enjoys hiking in the hills")
        out = store.merge(ALICE, self.hashed(store, kept), [self.hashed(store, gone)], _LATER, rewrite)
        assert out is not None and out.memory == "Enjoys hiking in the hills"
        now = store.get(kept)
        assert now is not None and now.memory == "Enjoys hiking in the hills"
        assert [e["event"] for e in store.history(kept)] == ["ADD", "UPDATE"]
        assert self.keyword_ids(store, "hills", now=_LATER) == [kept]

    def test_consolidation_supersede_ends_the_old_memory(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        old = self.add(store, "Lives in Berlin")[0]
        new = self.add(store, "Moved to Amsterdam", created=T0 + timedelta(hours=2))[0]
        assert not store.supersede(ALICE, (old, "stale"), self.hashed(store, new), _LATER)
        assert store.supersede(ALICE, self.hashed(store, old), self.hashed(store, new), _LATER)
        assert store.get(old) is None and store.history(old)[-1]["event"] == "DELETE"
        assert self.dense_ids(store, "Berlin", now=_LATER) == [new]
        # True until the newer memory's time: search of the past before then sees it, after not.
        assert old in self.dense_ids(store, "Berlin", now=_LATER, as_of=T0 + timedelta(hours=1))
        assert old not in self.dense_ids(store, "Berlin", now=_LATER, as_of=T0 + timedelta(hours=3))
        assert not store.supersede(ALICE, (old, "x"), self.hashed(store, new), _LATER)  # gone already

    def test_consolidation_summary_links_active_uncovered_memories_only(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        a, b, c = self.add(store, "Booked flights", "Booked the hotel", "Packed")
        summary = self.row("Alice planned a trip.", metadata={"memory_type": "episodic"})
        assert store.add_summary(summary, [a, b, "unknown"], _LATER) == [a, b]
        assert [m.id for m in store.linked(summary.id)] == [a, b]
        again = self.row("Another summary.", metadata={"memory_type": "episodic"})
        assert store.add_summary(again, [a, b, c], _LATER) is None  # only one left uncovered
        assert store.get(again.id) is None
        rows = {r.id: r for r in store.consolidation_rows(ALICE, _LATER)}
        assert rows[a].summarised and not rows[c].summarised and rows[summary.id].episodic
        store.delete(a, purge=False, now=_LATER)
        assert [m.id for m in store.linked(summary.id)] == [b]

    def test_consolidation_archive_and_restore(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        a, b = self.add(store, "Parked on level 3", "Wifi password hunter2")
        assert store.archive(ALICE, [self.hashed(store, a), (b, "stale")], _LATER) == [a]
        assert self.dense_ids(store, "parked", now=_LATER) == [b]
        assert set(self.dense_ids(store, "parked", now=_LATER, include=("archived",))) == {a, b}
        archived = store.get(a)
        assert archived is not None and archived.state == "archived"
        assert store.history(a)[-1]["event"] == "ARCHIVE"
        with raises(InvalidRequest):
            store.restore(b, _LATER)  # active
        with raises(MemoryNotFound):
            store.restore("unknown", _LATER)
        clash = self.add(store, "Parked on level 3")[0]  # its text is free again
        with raises(InvalidRequest):
            store.restore(a, _LATER)
        store.delete(clash, purge=False, now=_LATER)
        restored = store.restore(a, _LATER)
        assert restored.state is None and restored.valid_until is None
        assert set(self.dense_ids(store, "parked", now=_LATER)) == {a, b}

    def test_consolidation_deletes_take_merged_rows_links_access_and_profiles(
        self, store_factory: StoreFactory
    ) -> None:
        store = self.opened(store_factory)
        kept, gone = self.pair(store)
        other = self.add(store, "Lives in Porto")[0]
        store.record_access({kept: (1, to_iso(T0)), "never-stored": (1, to_iso(T0))})
        assert store.access(["never-stored"]) == {}
        store.merge(ALICE, self.hashed(store, kept), [self.hashed(store, gone)], _LATER)
        store.put_profile(ALICE, {"sections": {"places": [{"text": "Porto", "sources": [other]}]}}, "fp", _LATER)
        store.put_profile(Scope(user_id="bob"), {"sections": {}}, "fp", _LATER)
        assert store.profile(ALICE) == ({"sections": {"places": [{"text": "Porto", "sources": [other]}]}}, "fp",
                                        to_iso(_LATER))  # fmt: skip
        store.delete(kept, purge=False, now=_LATER)
        assert store.get(gone) is None and store.access([kept]) == {}
        assert store.profile(ALICE) is not None  # it cites neither
        store.delete(other, purge=False, now=_LATER)
        assert store.profile(ALICE) is None and store.profile(Scope(user_id="bob")) is not None
        store.put_profile(ALICE, {"sections": {}}, "fp", _LATER)
        store.delete_scope(Scope(user_id="alice", agent_id="helper"), purge=True, now=_LATER)
        assert store.profile(ALICE) is None  # built over every scope of alice's: it goes

    def test_consolidation_leases_admit_one_holder(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        other = self.opened(store_factory)
        try:
            assert store.lease("consolidate", "a", 60, 1000.0)
            assert not other.lease("consolidate", "b", 60, 1001.0)
            assert store.lease("consolidate", "a", 60, 1030.0)  # renewed until 1090
            assert not other.lease("consolidate", "b", 60, 1080.0)
            assert other.lease("consolidate", "b", 60, 1091.0)  # lapsed: taken over
            store.release("consolidate", "a")  # not the holder: nothing happens
            assert not store.lease("consolidate", "a", 60, 1100.0)
            other.release("consolidate", "b")
            assert store.lease("consolidate", "a", 60, 1100.0)
        finally:
            other.close()
