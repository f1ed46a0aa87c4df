"""Entity resolution and relation planning (memlane.core.graph), pure logic."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from memlane.core.graph import (
    Entity,
    EntityMention,
    Relation,
    RelationPlan,
    normalise_name,
    normalise_predicate,
    plan_relations,
    resolve,
)

SCOPE = ("alice-user", None, None)
NOW = "2026-05-04T09:00:00.000000+00:00"


def ids() -> itertools.count[int]:
    return itertools.count(1)


def run(mentions: list[EntityMention], existing: Sequence[Entity] = ()) -> tuple[list[str], list[Entity], list[Entity]]:
    counter = ids()
    out = resolve(mentions, existing, scope=SCOPE, now=NOW, new_id=lambda: f"e{next(counter)}")
    return out.ids, out.created, out.updated


def entity(eid: str, name: str, kind: str | None = "person", aliases: tuple[str, ...] = ()) -> Entity:
    return Entity(eid, name, kind, aliases, *SCOPE, NOW, NOW)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("my manager Alice", "alice"), ("Dr. Alice  Chen", "alice chen"), ("Alice's", "alice"),
     ("our CTO Bo", "bo"), ("my manager", "manager"), ("  ", ""), ("Project Atlas", "project atlas")],
)  # fmt: skip
def test_normalise_name(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected


def test_predicates_are_snake_case() -> None:
    assert normalise_predicate("Reports to") == "reports_to"
    assert normalise_predicate("works-on") == "works_on"


def test_true_aliases_become_one_entity() -> None:
    got, created, _ = run([EntityMention("Alice", "person"), EntityMention("Alice Chen", "person"),
                           EntityMention("my manager Alice", "person")])  # fmt: skip
    assert got == ["e1", "e1", "e1"] and len(created) == 1
    assert created[0].name == "Alice Chen" and created[0].aliases == ("Alice",)


def test_a_mention_joins_the_existing_entity_and_grows_it() -> None:
    alice = entity("a", "Alice")
    got, created, updated = run([EntityMention("Alice Chen", "person")], [alice])
    assert got == ["a"] and created == []
    assert updated[0].name == "Alice Chen" and updated[0].aliases == ("Alice",)


def test_ambiguous_short_names_are_never_guessed() -> None:
    existing = [entity("a", "Alice Chen"), entity("b", "Alice Wong")]
    got, created, _ = run([EntityMention("Alice", "person")], existing)
    assert got == ["e1"] and created[0].name == "Alice"
    got, _, _ = run([EntityMention("alice wong", None)], existing)
    assert got == ["b"]


def test_types_must_agree_unless_unknown() -> None:
    existing = [entity("p", "Jordan", "person")]
    assert run([EntityMention("Jordan", "place")], existing)[0] == ["e1"]
    assert run([EntityMention("Jordan", None)], existing)[0] == ["p"]
    got, _, updated = run([EntityMention("Atlas", "project")], [entity("x", "Atlas", None)])
    assert got == ["x"] and updated[0].type == "project"  # an unknown type is filled in


def test_nothing_changes_for_a_known_name() -> None:
    got, created, updated = run([EntityMention("ALICE", "person")], [entity("a", "Alice")])
    assert (got, created, updated) == (["a"], [], [])


def relation(rid: str, s: str, p: str, o: str, since: str = "2026-01-01") -> Relation:
    return Relation(rid, s, p, o, since, None, "m0", *SCOPE, NOW)


def plan(claims: list[tuple[str, str, str, bool]], open_: list[Relation], since: str = "2026-05-01") -> RelationPlan:
    counter = ids()
    return plan_relations(claims, open_, memory_id="m1", valid_from=since, scope=SCOPE, now=NOW,
                          new_id=lambda: f"r{next(counter)}")  # fmt: skip


def test_an_exclusive_claim_closes_the_old_relation() -> None:
    old = relation("r0", "bob", "reports_to", "alice")
    out = plan([("bob", "Reports to", "carol", True)], [old])
    assert [(r.subject_id, r.predicate, r.object_id) for r in out.new] == [("bob", "reports_to", "carol")]
    assert out.closed == [("r0", "2026-05-01")]


def test_a_non_exclusive_claim_adds_alongside_and_a_known_one_is_not_repeated() -> None:
    old = relation("r0", "alice", "likes", "tea")
    out = plan([("alice", "likes", "coffee", False), ("alice", "likes", "tea", False)], [old])
    assert [r.object_id for r in out.new] == ["coffee"] and out.closed == []


def test_a_closure_never_predates_the_relation() -> None:
    old = relation("r0", "bob", "lives_in", "paris", since="2026-06-01")
    out = plan([("bob", "lives_in", "rome", True)], [old], since="2026-05-01")
    assert out.closed == [("r0", "2026-06-01")]


def test_degenerate_claims_are_skipped() -> None:
    out = plan([("bob", "knows", "bob", False), ("", "knows", "x", False), ("a", "  ", "b", False)], [])
    assert out.new == []


def test_open_at() -> None:
    r = Relation("r", "a", "p", "b", "2026-01-01", "2026-03-01", None, *SCOPE, NOW)
    assert r.open_at("2026-02-01") and not r.open_at("2026-03-01") and not r.open_at("2025-12-31")
    assert not r.open_at(None)
