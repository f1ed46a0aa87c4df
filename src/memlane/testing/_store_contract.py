"""The store contract: the operations every store backend must support, as a test class."""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta

import numpy as np

from memlane.core.filters import parse_filter, to_iso
from memlane.core.records import FactOutcome, FactPlan, FactWrite, SourceMessage
from memlane.core.text import analyse, content_hash, query_terms
from memlane.errors import EmbedderMismatch, InvalidRequest, MemoryNotFound, StoreError
from memlane.testing._consolidate_contract import ConsolidationContract
from memlane.testing._contract_base import ALICE as _ALICE
from memlane.testing._contract_base import T0 as _T0
from memlane.testing._contract_base import StoreFactory, StoreUnderTest
from memlane.testing._contract_base import raises as _raises
from memlane.testing._graph_contract import GraphContract
from memlane.testing._passage_contract import PassageContract
from memlane.types import Scope

__all__ = ["StoreContract", "StoreFactory", "StoreUnderTest"]


class StoreContract(GraphContract, PassageContract, ConsolidationContract):
    """The store contract: every backend must pass these tests unchanged.

    Subclass it in a pytest module and provide a ``store_factory`` fixture (see
    :data:`StoreFactory`); parametrise the fixture to run the suite over several backends::

        @pytest.fixture(params=["sqlite"])
        def store_factory(request, tmp_path): ...

        class TestMyStore(StoreContract):
            pass

    The tests use plain ``assert`` and need nothing from pytest beyond the fixture.
    """

    # -- open and the embedder record ----------------------------------------------------------
    def test_use_before_open_fails(self, store_factory: StoreFactory) -> None:
        with _raises(StoreError):
            store_factory().get("x")

    def test_open_is_idempotent_and_reopens(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        store.open(self.embedder_id, self.dimension)
        (mid,) = self.add(store, "I keep bees on the roof")
        store.close()
        again = self.opened(store_factory)
        found = again.get(mid)
        assert found is not None and found.memory == "I keep bees on the roof"

    def test_open_refuses_another_embedder(self, store_factory: StoreFactory) -> None:
        self.opened(store_factory).close()
        with _raises(EmbedderMismatch):
            store_factory().open("another-model", self.dimension)
        with _raises(EmbedderMismatch):
            store_factory().open(self.embedder_id, self.dimension + 1)
        self.opened(store_factory)  # the right one still opens

    # -- insert ------------------------------------------------------------------------------
    def test_insert_round_trips_every_field(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        meta = {"topic": "food", "tags": ["a", "ü"], "nested": {"n": 1.5, "ok": True, "none": None}}
        new = self.row(
            "Tôi thích phở 🍜",
            user_id="u",
            agent_id="a",
            run_id="r",
            actor_id="Bo",
            metadata=meta,
            expires_at=_T0 + timedelta(days=3),
        )
        assert store.insert([new], _T0) == [(new.id, "ADD")]
        got = store.get(new.id)
        assert got is not None
        assert (got.memory, got.hash, got.search_text) == (new.memory, new.hash, new.search_text)
        assert (got.user_id, got.agent_id, got.run_id, got.actor_id) == ("u", "a", "r", "Bo")
        assert got.role == "user"
        assert got.metadata == meta
        assert got.created_at == got.updated_at == new.created_at and got.timestamp == new.timestamp
        assert got.expires_at == new.expires_at
        plain = self.row("no scope but the user")
        store.insert([plain], _T0)
        got = store.get(plain.id)
        assert got is not None and (got.agent_id, got.run_id, got.actor_id, got.expires_at) == (None,) * 4
        assert store.get("no-such-id") is None

    def test_insert_dedupes_per_scope_and_speaker(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        first, twin = self.row("I like tea"), self.row("I like tea")
        assert store.insert([first, twin], _T0) == [(first.id, "ADD"), (first.id, "NONE")]
        assert store.insert([self.row("I  like tea ")], _T0) == [(first.id, "NONE")]  # same normalised text
        others = [
            self.row("I like tea", user_id="bob"),
            self.row("I like tea", agent_id="bot"),
            self.row("I like tea", run_id="r1"),
            self.row("I like tea", actor_id="Ann"),
        ]
        assert [e for _, e in store.insert(others, _T0)] == ["ADD"] * 4
        assert len(store.list(_ALICE, None, limit=100, now=_T0)) == 4
        assert [e.get("event") for e in store.history(first.id)] == ["ADD"]
        assert store.history(twin.id) == []

    def test_insert_replaces_an_expired_duplicate(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (old,) = self.add(store, "parking spot 12", expires_at=_T0 + timedelta(hours=1))
        later = _T0 + timedelta(hours=2)
        fresh = self.row("parking spot 12", created=later)
        assert store.insert([fresh], later) == [(fresh.id, "ADD")]
        assert store.get(old) is None and store.get(fresh.id) is not None
        assert [e["event"] for e in store.history(old)] == ["ADD", "DELETE"]

    def test_a_failed_insert_writes_nothing(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (existing,) = self.add(store, "the first memory")
        good, clash = self.row("walrus tusks are ivory"), self.row("another text")
        clash.id = existing  # ids are unique: this row must fail, and take the whole batch with it
        with _raises(StoreError):
            store.insert([good, clash], _T0)
        assert store.get(good.id) is None and store.history(good.id) == []
        assert self.keyword_ids(store, "walrus") == []
        assert list(self.rids(store)) == [existing]
        assert store.term_stats(["walrus"])[0] == 1

    # -- update ------------------------------------------------------------------------------
    def test_update_replaces_text_vector_and_index(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (mid,) = self.add(store, "my cat is called Tom", metadata={"k": 1})
        self.add(store, "unrelated note about taxes")
        later = _T0 + timedelta(minutes=5)
        text = "my dog is called Rex"
        before, after = self.edit(store, mid, text, now=later)
        assert before.memory == "my cat is called Tom" and after.memory == text
        assert after.hash == content_hash(text) and after.search_text == analyse(text)
        assert after.metadata == {"k": 1} and after.created_at == before.created_at
        assert after.updated_at == to_iso(later)
        assert self.keyword_ids(store, "Rex") == [mid] and self.keyword_ids(store, "Tom") == []
        rid = self.rids(store)[mid]
        assert abs(store.cosines(self.vec(text), [rid])[rid] - 1.0) < 1e-5
        assert self.dense_ids(store, text, k=1) == [mid]
        _, again = self.edit(store, mid, text, now=later, metadata={"k": 2})
        assert again.metadata == {"k": 2}
        events = store.history(mid)
        assert [e["event"] for e in events] == ["ADD", "UPDATE", "UPDATE"]
        assert (events[1]["old_memory"], events[1]["new_memory"]) == ("my cat is called Tom", text)
        assert events[1]["created_at"] == to_iso(later)

    def test_update_errors_change_nothing(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        _, b = self.add(store, "apples are red", "bananas are yellow")
        with _raises(MemoryNotFound):
            self.edit(store, "no-such-id", "apples are red")
        with _raises(InvalidRequest):
            self.edit(store, b, "apples are red")  # would duplicate the first
        got = store.get(b)
        assert got is not None and got.memory == "bananas are yellow"
        assert [e["event"] for e in store.history(b)] == ["ADD"]

    # -- delete ------------------------------------------------------------------------------
    def test_delete_removes_everywhere_and_keeps_history(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        mid, keep = self.add(store, "the wifi password is hunter2", "I live in Oslo")
        rid = self.rids(store)[mid]
        later = _T0 + timedelta(hours=1)
        gone = store.delete(mid, purge=False, now=later)
        assert gone.id == mid and gone.memory == "the wifi password is hunter2"
        assert store.get(mid) is None and store.fetch([rid]) == {}
        assert store.cosines(self.vec("x"), [rid]) == {}
        assert self.keyword_ids(store, "wifi password") == [] and mid not in self.rids(store)
        assert [m.id for m in store.list(_ALICE, None, limit=10, now=None)] == [keep]
        events = store.history(mid)
        assert [e["event"] for e in events] == ["ADD", "DELETE"]
        assert events[1]["old_memory"] == "the wifi password is hunter2" and not events[1]["redacted"]
        assert events[1]["created_at"] == to_iso(later)
        assert store.term_stats([])[0] == 1
        with _raises(MemoryNotFound):
            store.delete(mid, purge=False, now=later)

    def test_delete_with_purge_redacts_history(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (mid,) = self.add(store, "my passport number is X123")
        text = "my passport number is Y456"
        self.edit(store, mid, text)
        store.delete(mid, purge=True, now=_T0)
        events = store.history(mid)
        assert [e["event"] for e in events] == ["ADD", "UPDATE", "DELETE"]
        assert all(e["redacted"] and e["old_memory"] is None and e["new_memory"] is None for e in events)

    def test_delete_scope(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        a1 = self.add(store, "alice plain")[0]
        a2 = self.add(store, "alice with bot", agent_id="bot")[0]
        a3 = self.add(store, "alice in run one", run_id="r1")[0]
        bob = self.add(store, "bob with bot", user_id="bob", agent_id="bot")[0]
        assert store.delete_scope(Scope(user_id="alice", run_id="r1"), purge=False, now=_T0) == 1
        assert store.get(a3) is None and store.get(a1) is not None
        assert store.history(a3)[1]["old_memory"] == "alice in run one"  # not purged: text kept
        assert store.delete_scope(_ALICE, purge=True, now=_T0) == 2
        assert store.get(a1) is None and store.get(a2) is None and store.get(bob) is not None
        assert store.list(_ALICE, None, limit=10, now=None) == [] and self.keyword_ids(store, "alice") == []
        assert store.delete_scope(_ALICE, purge=False, now=_T0) == 0
        purged, bobs = store.history(a1) + store.history(a3), store.history(bob)
        assert [e["event"] for e in purged] == ["ADD", "DELETE"] * 2  # the purge covers the whole scope,
        assert all(e["redacted"] and e["old_memory"] is e["new_memory"] is None for e in purged)
        assert bobs[0]["new_memory"] == "bob with bot" and not bobs[0]["redacted"]  # and only it
        assert store.delete_scope(Scope(agent_id="bot"), purge=False, now=_T0) == 1
        assert store.get(bob) is None

    # -- reads -------------------------------------------------------------------------------
    def test_history_is_ordered_and_scoped(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (mid,) = self.add(store, "v1", user_id="u", agent_id="a", run_id="r")
        for i, text in enumerate(["v2", "v3"], start=1):
            self.edit(store, mid, text, now=_T0 + timedelta(minutes=i))
        store.delete(mid, purge=False, now=_T0 + timedelta(minutes=9))
        events = store.history(mid)
        assert [(e["event"], e["old_memory"], e["new_memory"]) for e in events] == [
            ("ADD", None, "v1"),
            ("UPDATE", "v1", "v2"),
            ("UPDATE", "v2", "v3"),
            ("DELETE", "v3", None),
        ]
        assert [e["created_at"] for e in events] == sorted(e["created_at"] for e in events)
        assert len({e["id"] for e in events}) == 4
        assert all((e["memory_id"], e["user_id"], e["agent_id"], e["run_id"]) == (mid, "u", "a", "r") for e in events)
        assert store.history("no-such-id") == []

    def test_list_scope_order_limit_filter_expiry(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = [
            self.add(
                store,
                f"note {i}",
                created=_T0 + timedelta(minutes=i),
                metadata={"cat": "food" if i % 2 else "work"},
            )[0]
            for i in range(5)
        ]
        self.add(store, "bob's note", user_id="bob", agent_id="bot")
        short = self.add(store, "short lived", expires_at=_T0 + timedelta(hours=1))[0]
        later = _T0 + timedelta(hours=2)
        assert [m.id for m in store.list(_ALICE, None, limit=10, now=later)] == ids[::-1]
        assert [m.id for m in store.list(_ALICE, None, limit=2, now=later)] == ids[:2:-1]
        assert short in [m.id for m in store.list(_ALICE, None, limit=10, now=None)]
        assert short in [m.id for m in store.list(_ALICE, None, limit=10, now=_T0)]
        food = store.list(_ALICE, parse_filter({"cat": "food"}), limit=10, now=later)
        assert [m.id for m in food] == [ids[3], ids[1]]
        assert [m.memory for m in store.list(Scope(agent_id="bot"), None, limit=10, now=_T0)] == ["bob's note"]
        assert store.list(Scope(user_id="nobody"), None, limit=10, now=_T0) == []

    def test_list_pages_by_keyset_cursor(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        same = _T0 + timedelta(minutes=1)  # equal created_at: the rid breaks the tie
        ids = [self.add(store, f"page note {i}", created=_T0 if i < 2 else same)[0] for i in range(5)]
        seen: builtins.list[str] = []
        before: tuple[str, int] | None = None
        while True:
            page = store.list(_ALICE, None, limit=2, now=None, before=before)
            if not page:
                break
            seen += [m.id for m in page]
            before = (page[-1].created_at, page[-1].rid)
            self.add(store, f"written while paging {len(seen)}", created=same)  # newer: never on later pages
        assert seen == ids[::-1]

    def test_keyword_search(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        both, one, near = self.add(
            store,
            "kiwi and mango smoothie",
            "kiwi on toast with jam",
            "we met near the station",
            metadata={"kind": "x"},
        )
        self.add(store, "kiwi mango for bob", user_id="bob")
        gone = self.add(store, "expired kiwi", expires_at=_T0 + timedelta(hours=1), metadata={"kind": "y"})[0]
        ranked = self.keyword_ids(store, "kiwi mango")
        assert ranked[0] == both and sorted(ranked) == sorted([both, one, gone])  # both terms beat one
        assert self.keyword_ids(store, "kiwi mango", k=1) == [both]
        assert sorted(self.keyword_ids(store, "kiwis", now=_T0 + timedelta(hours=2))) == sorted([both, one])
        assert self.keyword_ids(store, "kiwi", node=parse_filter({"kind": "y"})) == [gone]
        assert self.keyword_ids(store, "near") == [near]  # an FTS keyword is searched as a word
        assert self.keyword_ids(store, "durian") == []
        assert store.keyword(_ALICE, None, [], 10, _T0) == []

    def test_keyword_search_weighs_rare_terms_above_common_ones(self, store_factory: StoreFactory) -> None:
        # IDF: a match on a term few memories hold outranks a match on one most of them hold.
        store = self.opened(store_factory)
        self.add(store, *[f"coffee note number {i}" for i in range(8)])
        rare = self.add(store, "a note about saffron")[0]
        common = self.add(store, "coffee again")[0]
        ranked = self.keyword_ids(store, "coffee saffron", k=10)
        assert ranked[0] == rare and common in ranked

    def test_dense_search_and_cosines(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        texts = ["red apples in autumn", "green apples are sour", "the train leaves at nine"]
        ids = self.add(store, *texts, metadata={"kind": "x"})
        self.add(store, "red apples in autumn", user_id="bob")
        soon = _T0 + timedelta(hours=1)
        self.add(store, "red apples in the fridge", expires_at=soon, metadata={"kind": "y"})
        query = self.vec("red apples in autumn")
        hits = store.dense(_ALICE, None, query, 10, _T0 + timedelta(hours=2))
        found = store.fetch(r for r, _ in hits)
        assert sorted(found[r].id for r, _ in hits) == sorted(ids)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        assert found[hits[0][0]].id == ids[0] and abs(hits[0][1] - 1.0) < 1e-5
        for rid, score in hits:
            assert abs(score - float(self.vec(found[rid].memory) @ query)) < 1e-5
        assert len(store.dense(_ALICE, None, query, 2, _T0)) == 2
        assert len(store.dense(_ALICE, None, query, 10, _T0)) == 4  # the expiring one is still alive
        only_y = store.dense(_ALICE, parse_filter({"kind": "y"}), query, 10, _T0)
        assert [store.fetch([r])[r].memory for r, _ in only_y] == ["red apples in the fridge"]
        assert store.dense(Scope(user_id="nobody"), None, query, 10, _T0) == []
        assert len(store.dense(Scope(user_id="bob"), None, query, 10, _T0)) == 1
        rid = hits[-1][0]
        cosines = store.cosines(query, [rid, 10**9])
        assert list(cosines) == [rid] and abs(cosines[rid] - hits[-1][1]) < 1e-6

    def test_fetch_many(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = self.add(store, *[f"memory number {i}" for i in range(650)])
        rids = self.rids(store)
        assert sorted(rids) == sorted(ids)
        fetched = store.fetch([*rids.values(), 10**9])
        assert {rid: m.id for rid, m in fetched.items()} == {rid: mid for mid, rid in rids.items()}

    def test_term_stats(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        docs, avg, df = store.term_stats(["owl"])
        assert (docs, avg, df.get("owl", 0)) == (0, 0.0, 0)
        texts = ["owl owl night", "owl", "a cat at night sleeps", "tea"]
        ids = self.add(store, *texts[:3])
        self.add(store, texts[3], user_id="bob")
        docs, avg, df = store.term_stats(["owl", "night", "absent"])
        assert docs == 4 and abs(avg - sum(len(analyse(t).split()) for t in texts) / 4) < 1e-9
        assert (df.get("owl", 0), df.get("night", 0), df.get("absent", 0)) == (2, 2, 0)
        store.delete(ids[0], purge=False, now=_T0)
        docs, _, df = store.term_stats(["owl", "night"])
        assert (docs, df.get("owl", 0), df.get("night", 0)) == (3, 1, 1)

    def test_reset_empties_the_store_and_the_embedder_record(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (mid,) = self.add(store, "something to forget")
        store.reset()
        store.open("another-model", self.dimension + 8)  # the embedder record went too
        assert store.get(mid) is None and store.history(mid) == []
        assert store.list(_ALICE, None, limit=10, now=None) == [] and store.term_stats([])[0] == 0
        assert store.dense(_ALICE, None, np.ones(self.dimension + 8, dtype=np.float32), 10, _T0) == []

    def test_a_second_handle_sees_writes_at_once(self, store_factory: StoreFactory) -> None:
        reader, writer = self.opened(store_factory), self.opened(store_factory)
        stay, gone, moved = self.add(writer, "I play chess", "I own a kayak", "I drive a red car")
        assert sorted(self.dense_ids(reader, "chess")) == sorted([stay, gone, moved])  # cache filled
        self.add(writer, "I collect stamps")
        writer.delete(gone, purge=False, now=_T0)
        text = "I ride a blue bicycle"
        self.edit(writer, moved, text)
        ids = self.dense_ids(reader, "I collect stamps")
        assert len(ids) == 3 and gone not in ids and self.dense_ids(reader, text, k=1) == [moved]
        assert self.keyword_ids(reader, "stamps") and self.keyword_ids(reader, "kayak") == []
        rid = self.rids(reader)[moved]
        assert abs(reader.cosines(self.vec(text), [rid])[rid] - 1.0) < 1e-5

    # -- conversation links ---------------------------------------------------------------------
    def test_search_rows_and_followers(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        turns = ["where did you hike?", "up Ben Nevis", "how was it?"]
        ids = self.add(store, *turns, conversational=True)
        lone = self.add(store, "a note on its own")[0]
        soon = _T0 + timedelta(hours=1)
        (late,) = self.add(store, "and a late reply", conversational=True, expires_at=soon)
        rid = self.rids(store)
        rows = store.search_rows([rid[i] for i in [*ids, lone, late]] + [10**9])
        assert sorted(rows) == sorted(rid.values())
        first, second, third = (rows[rid[i]] for i in ids)
        assert (first.search_text, first.timestamp) == (analyse(turns[0]), to_iso(_T0))
        assert (second.prev_rid, third.prev_rid) == (first.rid, second.rid)  # each turn follows the last
        assert rows[rid[lone]].prev_rid is None and rows[rid[late]].expires_at == to_iso(soon)
        assert store.followers([first.rid], _ALICE, None, _T0) == [second.rid]
        assert sorted(store.followers([first.rid, second.rid], _ALICE, None, _T0)) == [second.rid, third.rid]
        assert store.followers([first.rid], Scope(user_id="bob"), None, _T0) == []
        assert store.followers([first.rid], _ALICE, parse_filter({"kind": "x"}), _T0) == []
        prev = rows[rid[late]].prev_rid
        if prev is not None:  # linked to the last message: an expired follower is hidden
            assert rid[late] in store.followers([prev], _ALICE, None, _T0)
            assert rid[late] not in store.followers([prev], _ALICE, None, soon + timedelta(seconds=1))

    # -- extracted facts: reconciliation writes, past versions, provenance ------------------------
    def test_apply_facts_each_outcome_with_history_and_sources(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        msgs = [SourceMessage("user", "Al", "I live in Berlin and like jazz", to_iso(_T0))]
        plan = FactPlan(msgs, [FactWrite("ADD", self.fact("Lives in Berlin"), (0,)),
                               FactWrite("ADD", self.fact("Likes jazz"), (0,))])  # fmt: skip
        berlin, jazz = store.apply_facts(plan, _T0)
        assert (berlin.event, jazz.event) == ("ADD", "ADD")
        assert [s["content"] for s in store.sources(berlin.id)] == [msgs[0].content]
        later = _T0 + timedelta(days=30)
        b_hash, j_hash = content_hash("Lives in Berlin"), content_hash("Likes jazz")
        msgs2 = [SourceMessage("user", None, "Moved to Oslo; jazz still; trip off", to_iso(later))]
        out = store.apply_facts(
            FactPlan(msgs2, [FactWrite("UPDATE", self.fact("Lives in Oslo", when=later), (0,), berlin.id, b_hash),
                             FactWrite("NONE", self.fact("Enjoys jazz", when=later), (0,), jazz.id, j_hash)]),
            later,
        )  # fmt: skip
        assert out[0] == FactOutcome(berlin.id, "UPDATE", "Lives in Oslo", "Lives in Berlin")
        assert out[1] == FactOutcome(jazz.id, "NONE", "Likes jazz", None)
        assert len(store.sources(jazz.id)) == 2
        updated = store.get(berlin.id)
        assert updated is not None and updated.memory == "Lives in Oslo" and updated.timestamp == to_iso(later)
        history = store.history(berlin.id)
        assert [(e["event"], e["effective_at"]) for e in history] == [("ADD", to_iso(_T0)), ("UPDATE", to_iso(later))]
        gone = store.apply_facts(
            FactPlan(msgs2, [FactWrite("DELETE", self.fact("No jazz"), (0,), jazz.id, j_hash)]), later
        )
        assert gone == [FactOutcome(jazz.id, "DELETE", "Likes jazz", None)]
        assert store.get(jazz.id) is None
        assert [m.memory for m in store.list(_ALICE, None, limit=10, now=later)] == ["Lives in Oslo"]

    def test_apply_facts_rechecks_targets(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (bob,) = self.add(store, "Bob's car is red", user_id="bob")
        (mine,) = self.add(store, "My car is red")
        red = content_hash("My car is red")
        writes = [
            FactWrite("UPDATE", self.fact("Car is blue"), (), bob, content_hash("Bob's car is red")),  # other scope
            FactWrite("DELETE", self.fact("Sold the car"), (), mine, "stale-hash"),  # changed since
            FactWrite("NONE", self.fact("Has a bike"), (), "no-such-id", red),  # vanished
            FactWrite("UPDATE", self.fact("My car is red"), (), mine, red),  # rewrite equal to itself
        ]
        out = store.apply_facts(FactPlan([], writes), _T0)
        assert [o.event for o in out[:3]] == ["ADD", "ADD", "ADD"]
        assert out[3].event == "UPDATE"
        bob_row = store.get(bob)
        assert bob_row is not None and bob_row.memory == "Bob's car is red"
        dup = store.apply_facts(FactPlan([], [FactWrite("ADD", self.fact("Car is blue"), ())]), _T0)
        assert dup == [FactOutcome(out[0].id, "NONE", "Car is blue", None)]

    def test_as_of_reads_past_versions(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        t1, t2, t3 = _T0, _T0 + timedelta(days=10), _T0 + timedelta(days=20)
        (first,) = store.apply_facts(FactPlan([], [FactWrite("ADD", self.fact("Lives in Berlin", when=t1))]), t1)
        store.apply_facts(
            FactPlan([], [FactWrite("UPDATE", self.fact("Lives in Oslo", when=t2), (), first.id,
                                    content_hash("Lives in Berlin"))]),
            t3,
        )  # fmt: skip
        vec = self.vec("Lives in Berlin")

        def texts(at: datetime | None) -> tuple[builtins.list[str], builtins.list[str]]:
            dense = [r for r, _ in store.dense(_ALICE, None, vec, 10, t3, at)]
            keyword = store.keyword(_ALICE, None, query_terms("lives Berlin Oslo"), 10, t3, at)
            rows = store.fetch([*dense, *keyword])
            return sorted(rows[r].memory for r in dense), sorted(rows[r].memory for r in keyword)

        assert texts(None) == (["Lives in Oslo"], ["Lives in Oslo"])
        assert texts(t1 + timedelta(days=1)) == (["Lives in Berlin"], ["Lives in Berlin"])
        assert texts(t1 - timedelta(days=1)) == ([], [])
        past = store.fetch(r for r, _ in store.dense(_ALICE, None, vec, 10, t3, t1))
        (version,) = past.values()
        assert version.id == first.id and version.valid_until == to_iso(t2)
        assert store.get(first.id) is not None and len(store.list(_ALICE, None, limit=10, now=None)) == 1
        store.delete(first.id, purge=False, now=t3)
        assert texts(t1 + timedelta(days=1)) == ([], [])

    def test_deleting_a_scope_removes_versions_and_sources(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        msgs = [SourceMessage("user", None, "private words", to_iso(_T0))]
        (a,) = store.apply_facts(FactPlan(msgs, [FactWrite("ADD", self.fact("Fact A"), (0,))]), _T0)
        store.apply_facts(
            FactPlan(msgs, [FactWrite("UPDATE", self.fact("Fact B"), (0,), a.id, content_hash("Fact A"))]), _T0
        )
        (other,) = store.apply_facts(
            FactPlan(msgs, [FactWrite("ADD", self.fact("Bob fact", user_id="bob"), (0,))]), _T0
        )
        assert store.delete_scope(_ALICE, purge=True, now=_T0) == 1
        assert store.sources(a.id) == [] and store.get(a.id) is None
        assert store.dense(_ALICE, None, self.vec("Fact A"), 10, _T0, _T0) == []
        assert [s["content"] for s in store.sources(other.id)] == ["private words"]
