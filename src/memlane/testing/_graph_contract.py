"""The store contract's graph tests: entities and relations written with their memories.

Part of :class:`memlane.testing.StoreContract`: kept in its own module only to keep modules small.
Rows are built directly (``NewMemory.entities`` / ``relations``), as the pipeline fills them.
"""

from __future__ import annotations

import builtins
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from memlane.core.filters import to_iso
from memlane.core.graph import EntityMention, Relation, RelationClaim
from memlane.core.records import FactPlan, FactWrite, NewMemory, PortableEntity, PortableRelation, SourceMessage
from memlane.core.text import analyse, content_hash
from memlane.errors import InvalidRequest, MemoryConflict, StoreError
from memlane.testing._contract_base import ALICE, T0, StoreFactory, StoreUnderTest, raises
from memlane.testing._export_contract import ExportContract
from memlane.types import Scope

__all__ = ["GraphContract"]

_BOB = Scope(user_id="bob")
_LATER = T0 + timedelta(days=30)


class GraphContract(ExportContract):
    """Entities resolve once per scope, relations keep their history, and both go with their memories."""

    def named(
        self,
        text: str,
        names: tuple[str, ...] = (),
        claims: tuple[tuple[str, str, str, bool], ...] = (),
        *,
        when: datetime = T0,
        fact: bool = False,
        **kwargs: Any,
    ) -> NewMemory:
        """A row naming ``names`` and stating ``claims`` (subject, predicate, object, exclusive)."""
        row = self.fact(text, when=when, **kwargs) if fact else self.row(text, created=when, **kwargs)
        row.entities = tuple(EntityMention(n) for n in names)
        row.relations = tuple(RelationClaim(*c) for c in claims)
        return row

    def put(self, store: StoreUnderTest, *rows: NewMemory) -> builtins.list[str]:
        """Insert rows (each at its own time); returns their ids."""
        out = []
        for row in rows:
            ((mid, event),) = store.insert([row], datetime.fromisoformat(row.created_at))
            assert event == "ADD", event
            out.append(mid)
        return out

    def by_name(self, store: StoreUnderTest, scope: Scope = ALICE) -> dict[str, str]:
        """Entity name -> id in ``scope``."""
        return {e.name: e.id for e in store.entities(scope)}

    def graph_rows(self, store: StoreUnderTest) -> tuple[int, int, int]:
        """(entities, mentions, relations) in the whole store, read page by page as export reads them."""
        entities = store.entity_page(None, None, 100_000)
        return len(entities), sum(len(e.memories) for e in entities), len(store.relation_page(None, None, 100_000))

    # -- resolution ------------------------------------------------------------------------------
    def test_graph_mentions_resolve_to_one_entity_across_adds(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        a, b = self.put(store, self.named("Alice likes tea", ("Alice",)), self.named("alice hikes", ("alice",)))
        c, d = self.put(
            store,
            self.named("My manager Alice Chen is kind", ("Alice Chen",)),
            self.named("Alice manages Bob", claims=(("Alice", "manages", "Bob", False),)),
        )
        alice, bob = store.entities(ALICE)
        assert (alice.name, alice.aliases, bob.name) == ("Alice Chen", ("Alice",), "Bob")
        assert store.entity(alice.id) == alice and store.entity("no-such-entity") is None
        assert store.entity_memories([alice.id, "unknown"]) == {alice.id: [a, b, c, d], "unknown": []}
        # A claim's names are mentions too.
        assert store.memory_entities([d, a, "unknown"]) == {d: [alice.id, bob.id], a: [alice.id], "unknown": []}
        (relation,) = store.relations(ALICE)
        assert (relation.subject_id, relation.predicate, relation.object_id) == (alice.id, "manages", bob.id)
        # A surname alone finds her too (only entities sharing a first or last word are read).
        (e,) = self.put(store, self.named("Chen called", ("Chen",)))
        assert store.memory_entities([e]) == {e: [alice.id]} and len(store.entities(ALICE)) == 2
        assert (relation.memory_id, relation.valid_from, relation.valid_until) == (d, to_iso(T0), None)
        assert (relation.user_id, relation.agent_id, relation.run_id) == ("alice", None, None)

    def test_graph_one_batch_and_duplicates(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        first, twin = self.named("Bo met Cy", ("Bo", "Cy")), self.named("Bo met Cy", ("Bo", "Dee"))
        assert [e for _, e in store.insert([first, twin, self.named("Cy met Bo", ("Cy", "Bo"))], T0)] == [
            "ADD", "NONE", "ADD",
        ]  # fmt: skip
        assert sorted(self.by_name(store)) == ["Bo", "Cy"]  # the duplicate's names are not written

    def test_graph_homonyms_in_two_scopes_stay_two_entities(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        self.put(
            store,
            self.named("Alice is my sister", ("Alice",)),
            self.named("Alice is my boss", ("Alice",), user_id="bob"),
            self.named("Alice helps the bot", ("Alice",), agent_id="bot"),
        )
        mine, bobs = store.entities(ALICE), store.entities(_BOB)
        assert len(mine) == 2 and len(bobs) == 1  # alice's plain scope and alice with the bot
        assert len({e.id for e in [*mine, *bobs]}) == 3
        assert [e.agent_id for e in store.entities(Scope(user_id="alice", agent_id="bot"))] == ["bot"]
        assert store.entities(Scope(user_id="carol")) == [] and store.relations(_BOB) == []

    # -- relations -------------------------------------------------------------------------------
    def test_graph_exclusive_relation_closes_the_old_one(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        moved = T0 + timedelta(days=3)
        paris, again, berlin = self.put(
            store,
            self.named("Ana lives in Paris", claims=(("Ana", "lives in", "Paris", True),)),
            self.named(
                "Ana still lives in Paris", claims=(("Ana", "lives_in", "Paris", True),), when=T0 + timedelta(1)
            ),
            self.named("Ana moved to Berlin", claims=(("Ana", "lives in", "Berlin", True),), when=moved),
        )
        ids = self.by_name(store)
        old, new = store.relations(ALICE)
        assert (old.object_id, old.memory_id, old.valid_until) == (ids["Paris"], paris, to_iso(moved))
        assert (new.object_id, new.memory_id, new.valid_from, new.valid_until) == (ids["Berlin"], berlin, to_iso(moved),
                                                                                   None)  # fmt: skip
        assert old.open_at(to_iso(T0 + timedelta(days=1))) and not old.open_at(None) and new.open_at(None)
        assert ids["Paris"] in store.memory_entities([again])[again]  # a known claim is not repeated, but named

    def test_graph_deleting_the_closing_memory_reopens_what_it_closed(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        day = timedelta(days=1)
        paris, rome, berlin = self.put(
            store,
            self.named("Ana lives in Paris", claims=(("Ana", "lives in", "Paris", True),)),
            self.named("Ana moved to Rome", claims=(("Ana", "lives in", "Rome", True),), when=T0 + day),
            self.named("Ana moved to Berlin", claims=(("Ana", "lives in", "Berlin", True),), when=T0 + 2 * day),
        )
        store.delete(rome, purge=False, now=T0)  # never in Rome: Paris held until the move to Berlin
        assert [(r.memory_id, r.valid_until) for r in store.relations(ALICE)] == [
            (paris, to_iso(T0 + 2 * day)), (berlin, None),
        ]  # fmt: skip
        store.delete(berlin, purge=True, now=T0)  # the wrong move is forgotten: Ana lives in Paris
        assert [(r.memory_id, r.valid_until) for r in store.relations(ALICE)] == [(paris, None)]
        assert sorted(self.by_name(store)) == ["Ana", "Paris"]

    def test_graph_facts_add_update_and_invalidate(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        msgs = [SourceMessage("user", None, "Bob reports to Carol", to_iso(T0))]
        fact = self.named("Bob reports to Carol", ("Bob", "Carol"), (("Bob", "reports to", "Carol", True),), fact=True)
        (added,) = store.apply_facts(FactPlan(msgs, [FactWrite("ADD", fact, (0,))]), T0)
        ids = self.by_name(store)
        assert store.memory_entities([added.id]) == {added.id: [ids["Bob"], ids["Carol"]]}
        later = T0 + timedelta(days=2)
        new = self.named("Bob reports to Dan", ("Bob", "Dan"), (("Bob", "reports_to", "Dan", True),), when=later,
                         fact=True)  # fmt: skip
        plan = FactPlan(msgs, [FactWrite("UPDATE", new, (0,), added.id, content_hash("Bob reports to Carol"))])
        (updated,) = store.apply_facts(plan, later)
        assert updated.event == "UPDATE"
        ids = self.by_name(store)
        # Mentions follow the current text; Carol stays, named by the relation the old text stated.
        assert set(store.memory_entities([added.id])[added.id]) == {ids["Bob"], ids["Dan"]}
        assert store.entity_memories([ids["Carol"]]) == {ids["Carol"]: []}
        carol, dan = store.relations(ALICE)
        assert (carol.object_id, carol.valid_until, carol.memory_id) == (ids["Carol"], to_iso(later), added.id)
        assert (dan.object_id, dan.valid_until, dan.memory_id) == (ids["Dan"], None, added.id)
        gone = T0 + timedelta(days=5)
        plan = FactPlan(msgs, [FactWrite("DELETE", self.fact("Bob left", when=gone), (0,), added.id,
                                         content_hash("Bob reports to Dan"))])  # fmt: skip
        assert store.apply_facts(plan, gone)[0].event == "DELETE"
        # Invalidated: it names nothing now, and what it stated ended then (history kept).
        assert store.memory_entities([added.id]) == {added.id: []}
        assert [r.valid_until for r in store.relations(ALICE)] == [to_iso(later), to_iso(gone)]
        assert sorted(self.by_name(store)) == ["Bob", "Carol", "Dan"]

    def test_graph_update_drops_entities_no_longer_named(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        fact = self.named("Eve likes Zed", ("Eve", "Zed"), fact=True)
        (added,) = store.apply_facts(FactPlan([], [FactWrite("ADD", fact)]), T0)
        new = self.named("Eve likes Yan", ("Eve", "Yan"), fact=True)
        store.apply_facts(FactPlan([], [FactWrite("UPDATE", new, (), added.id, content_hash("Eve likes Zed"))]), T0)
        assert sorted(self.by_name(store)) == ["Eve", "Yan"]  # Zed named nothing any more

    def test_graph_update_replaces_mentions_only_when_given_names(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (mid,) = self.put(store, self.named("Ann knows Ben", ("Ann", "Ben")))
        self.edit(store, mid, "Ann knows Ben well")  # no names given: the graph rows stay
        assert sorted(self.by_name(store)) == ["Ann", "Ben"]
        text, later = "Ann knows Cal", T0 + timedelta(days=1)
        store.update(mid, text=text, search_text=analyse(text), content_hash=content_hash(text),
                     embedding=self.vec(text), metadata=None, now=later, entities=[EntityMention("Ann")],
                     relations=[RelationClaim("Ann", "knows", "Cal")])  # fmt: skip
        ids = self.by_name(store)
        assert sorted(ids) == ["Ann", "Cal"]  # Ben named nothing any more
        assert store.memory_entities([mid]) == {mid: [ids["Ann"], ids["Cal"]]}
        (knows,) = store.relations(ALICE)
        assert (knows.memory_id, knows.valid_from) == (mid, to_iso(later))

    # -- deletion --------------------------------------------------------------------------------
    def test_graph_delete_takes_mentions_relations_and_orphans(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        keep, gone = self.put(
            store,
            self.named("Kim plays chess", ("Kim",)),
            self.named("Kim coaches Lou", ("Kim", "Lou"), (("Kim", "coaches", "Lou", False),)),
        )
        store.delete(gone, purge=False, now=T0)
        assert list(self.by_name(store)) == ["Kim"] and store.relations(ALICE) == []
        assert store.memory_entities([gone]) == {gone: []}
        assert self.graph_rows(store) == (1, 1, 0)
        store.delete(keep, purge=True, now=T0)
        assert self.graph_rows(store) == (0, 0, 0)

    def test_graph_delete_scope_and_reset_leave_no_graph_rows(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        claim = (("Mo", "knows", "Ny", False),)
        self.put(
            store,
            self.named("Mo knows Ny", ("Mo",), claim),
            self.named("Mo knows Ny", ("Mo",), claim, run_id="r1"),
            self.named("Mo knows Ny", ("Mo",), claim, user_id="bob"),
            self.named("Mo knows Ny", ("Mo",), claim, user_id="carol"),
        )
        assert self.graph_rows(store) == (8, 8, 4)
        store.delete_scope(Scope(user_id="alice", run_id="r1"), purge=False, now=T0)
        assert self.graph_rows(store) == (6, 6, 3) and len(store.entities(ALICE)) == 2
        store.delete_scope(ALICE, purge=True, now=T0)
        assert store.entities(ALICE) == [] and store.relations(ALICE) == []
        assert self.graph_rows(store) == (4, 4, 2)  # bob's and carol's stay
        store.delete_scope(_BOB, purge=True, now=T0)
        assert [e.entity.user_id for e in store.entity_page(None, None, 100)] == ["carol"] * 2
        store.reset()
        store = self.opened(store_factory)
        assert self.graph_rows(store) == (0, 0, 0)

    def test_graph_a_failed_insert_writes_no_graph_rows(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        (existing,) = self.add(store, "the first memory")
        good, clash = self.named("Pat met Quinn", ("Pat", "Quinn")), self.named("another text", ("Rae",))
        clash.id = existing
        with raises(StoreError):
            store.insert([good, clash], T0)
        assert self.graph_rows(store) == (0, 0, 0)

    # -- export and import -----------------------------------------------------------------------
    def graph_build(self, store: StoreUnderTest) -> builtins.list[str]:
        """Memories naming entities in two scopes, a closed relation, and an invalidated fact."""
        ids = self.put(
            store,
            self.named("Sam lives in Rome", ("Sam",), (("Sam", "lives in", "Rome", True),)),
            self.named("Sam moved to Oslo", ("Sam",), (("Sam", "lives in", "Oslo", True),), when=T0 + timedelta(1)),
            self.named("Sam is bob's cousin", ("Sam",), user_id="bob"),
        )
        fact = self.named("Sam likes Uma", ("Sam", "Uma"), (("Sam", "likes", "Uma", False),), fact=True)
        (added,) = store.apply_facts(FactPlan([], [FactWrite("ADD", fact)]), T0)
        plan = FactPlan([], [FactWrite("DELETE", self.fact("no more", when=_LATER), (), added.id, fact.hash)])
        store.apply_facts(plan, _LATER)
        return [*ids, added.id]

    def graph_export(
        self, store: StoreUnderTest, scope: Scope | None = None
    ) -> tuple[builtins.list[PortableEntity], builtins.list[PortableRelation]]:
        """Every entity and relation of ``scope``, read in pages of two."""
        entities: builtins.list[PortableEntity] = []
        while page := store.entity_page(scope, entities[-1].entity.id if entities else None, 2):
            entities += page
        relations: builtins.list[Relation] = []
        while batch := store.relation_page(scope, relations[-1].id if relations else None, 2):
            relations += batch
        return entities, [PortableRelation(r) for r in relations]

    def test_graph_export_import_round_trip(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        self.graph_build(store)
        entities, relations = self.graph_export(store)
        assert [e.entity.id for e in entities] == sorted(e.entity.id for e in entities) and len(relations) == 3
        bobs, _ = self.graph_export(store, _BOB)
        assert [e.entity.user_id for e in bobs] == ["bob"]
        rows, events = self.export(store, None, page=500)
        before = (store.entities(ALICE), store.entities(_BOB), store.relations(ALICE))
        mentions = store.memory_entities(m.memory_id for m in rows)
        store.reset()
        store = self.opened(store_factory)
        store.import_records(
            self.importable(rows), events, on_conflict="error", now=_LATER, entities=entities, relations=relations
        )
        assert (store.entities(ALICE), store.entities(_BOB), store.relations(ALICE)) == before
        assert store.memory_entities(m.memory_id for m in rows) == mentions
        assert self.graph_export(store) == (entities, relations)

    def test_graph_import_conflicts_and_links(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        self.graph_build(store)
        entities, relations = self.graph_export(store)
        counts = self.graph_rows(store)
        with raises(MemoryConflict):
            store.import_records([], [], on_conflict="error", now=_LATER, entities=entities, relations=relations)
        store.import_records([], [], on_conflict="skip", now=_LATER, entities=entities, relations=relations)
        assert self.graph_rows(store) == counts
        sam = next(e for e in entities if e.entity.name == "Sam" and e.entity.user_id == "alice")
        bob_sam = next(e for e in entities if e.entity.user_id == "bob")
        new = dataclasses.replace(sam, entity=dataclasses.replace(sam.entity, id="new-entity"), record=7)
        stated = relations[0].relation
        # A link across scopes is refused, naming the record; nothing is written.
        cases: builtins.list[tuple[builtins.list[PortableEntity], builtins.list[PortableRelation], str]] = [
            ([dataclasses.replace(new, memories=bob_sam.memories)], [], "record 7: entity 'new-entity'"),
            ([new], [PortableRelation(dataclasses.replace(stated, id="r-new", object_id=bob_sam.entity.id), 9)],
             "record 9: relation 'r-new': object_id"),
        ]  # fmt: skip
        for ents, rels, message in cases:
            try:
                store.import_records([], [], on_conflict="skip", now=_LATER, entities=ents, relations=rels)
            except InvalidRequest as exc:
                assert message in str(exc) and "another scope" in str(exc), (message, str(exc))
            else:
                raise AssertionError(f"expected InvalidRequest: {message}")
            assert self.graph_rows(store) == counts and store.entity("new-entity") is None
        # A link to a memory or entity held nowhere is left out, and an entity left naming nothing with it.
        dangling = [
            PortableRelation(dataclasses.replace(stated, id="r-1", subject_id="no-such-entity")),
            PortableRelation(dataclasses.replace(stated, id="r-2", memory_id="no-such-memory")),
        ]
        lone = dataclasses.replace(new, entity=dataclasses.replace(new.entity, id="lone"), memories=["no-such-memory"])
        store.import_records([], [], on_conflict="error", now=_LATER, entities=[new, lone], relations=dangling)
        assert store.entity("lone") is None and store.entity("new-entity") is not None
        assert sorted(store.entity_memories(["new-entity"])["new-entity"]) == sorted(sam.memories)
        assert self.graph_rows(store)[2] == counts[2]
