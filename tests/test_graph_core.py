"""Entity resolution and relation planning (memlane.core.graph), pure logic."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import pytest

from memlane.core.graph import (
    Entity,
    EntityMention,
    Relation,
    RelationPlan,
    detect_names,
    entity_candidates,
    find_entity,
    normalise_name,
    normalise_predicate,
    plan_relations,
    query_entities,
    resolve,
)
from memlane.core.graph_walk import neighbours, path, relations_of

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


def test_an_alias_never_pulls_in_another_full_name() -> None:
    # "Alice" became an alias of "Alice Novak"; "Alice Garcia" is someone else.
    got, created, _ = run([EntityMention("Alice", "person"), EntityMention("Alice Novak", "person"),
                           EntityMention("Alice Garcia", "person"), EntityMention("Alice", "person")])  # fmt: skip
    assert got[:3] == ["e1", "e1", "e2"] and [e.name for e in created] == ["Alice Novak", "Alice Garcia"]
    assert got[3] == "e1"  # the name it was told by, exactly


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


# -- names without an LLM ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Yesterday I met Alice Chen and Bob at Project Atlas.", ["Alice Chen", "Bob", "Project Atlas"]),
        ("Went to Paris with my manager Alice. Alice's team is great!", ["Paris", "Alice"]),
        ("Alice manages Bob.", ["Bob"]),  # a lone word opening a sentence may be any word
        ("Alice's dog is Max.", ["Alice", "Max"]),  # ... unless it is possessive
        ("NASA hired Dr. Alice Chen.", ["NASA", "Alice Chen"]),  # an acronym; "Dr." ends no sentence
        ("Hey Mel! Good to see you. I went there on Monday in June.", ["Mel"]),
        ("She joined the Bank of America office in New York, of course.", ["Bank of America", "New York"]),
        ("Thanks, Caroline. The Museum of Modern Art, then Alice's.", ["Caroline", "Museum of Modern Art", "Alice"]),
        ("i love it, ok? Thanks!", []),
        ("Bob met bob and BOB.", ["Bob"]),  # each name once
    ],
)
def test_detect_names(text: str, names: list[str]) -> None:
    found = detect_names(text)
    assert [m.name for m in found] == names
    assert all(m.type is None for m in found)


def entities_of(*names: str | tuple[str, tuple[str, ...]]) -> list[Entity]:
    out = []
    for i, n in enumerate(names):
        name, aliases = (n, ()) if isinstance(n, str) else n
        out.append(entity(f"e{i}", name, aliases=aliases))
    return out


def test_find_entity_follows_the_resolution_rules() -> None:
    known = entities_of(("Alice Chen", ("Alice",)), "Alice Wong", "Bob Stone")
    assert find_entity("my manager Alice", known) is known[0]  # an alias, exactly
    assert find_entity("Bob", known) is known[2]  # the only Bob
    assert find_entity("Carol", known) is None
    assert find_entity("Wong", known) is known[1]
    assert [e.name for e in entity_candidates("alice", known)] == ["Alice Chen", "Alice Wong"]


def test_query_entities_reads_sentence_starts_and_lower_case_names() -> None:
    known = entities_of("Alice Chen", "Project X", "Bob", ("user", ()))
    assert [e.name for e in query_entities("Who reports to Alice's directs?", known)] == ["Alice Chen"]
    assert [e.name for e in query_entities("Which projects share a lead with Project X?", known)] == ["Project X"]
    assert [e.name for e in query_entities("what does Bob think of alice chen's plan", known)] == ["Bob", "Alice Chen"]
    assert query_entities("what does bob think?", known) == []  # a one-word name is capitalised to count
    assert query_entities("will it rain?", [*known, entity("w", "Will")]) == []
    assert query_entities("What does the user like?", known) == []  # "user" is every memory's subject


# -- traversal -----------------------------------------------------------------------------------


def org_chart() -> tuple[dict[str, str], list[Relation]]:
    """A small org chart and project graph, built from claims as a store would build it."""
    names = ["Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Project X", "Project Y", "Project Z", "Project W"]
    counter = ids()
    out = resolve([EntityMention(n) for n in names], [], scope=SCOPE, now=NOW, new_id=lambda: f"e{next(counter)}")
    by_name = dict(zip(names, out.ids, strict=True))
    claims = [
        ("Alice", "manages", "Bob"), ("Carol", "reports to", "Alice"), ("Dan", "reports_to", "Bob"),
        ("Erin", "reports_to", "Carol"), ("Frank", "reports_to", "Dan"),
        ("Alice", "leads", "Project X"), ("Bob", "leads", "Project X"), ("Alice", "leads", "Project Y"),
        ("Bob", "leads", "Project Z"), ("Frank", "leads", "Project W"), ("Dan", "works_on", "Project W"),
    ]  # fmt: skip
    resolved = [(by_name[s], p, by_name[o], False) for s, p, o in claims]
    counter = ids()
    made = plan_relations(resolved, [], memory_id="m1", valid_from="2026-01-01", scope=SCOPE, now=NOW,
                          new_id=lambda: f"r{next(counter)}")  # fmt: skip
    return by_name, made.new


def test_who_reports_to_alices_directs() -> None:
    e, rels = org_chart()
    name = {v: k for k, v in e.items()}
    # Alice's directs: whom she manages, and who reports to her.
    directs = {r.object_id for r in relations_of(e["Alice"], rels, predicate="manages", direction="out")}
    directs |= {r.subject_id for r in relations_of(e["Alice"], rels, predicate="Reports to", direction="in")}
    assert {name[d] for d in directs} == {"Bob", "Carol"}
    theirs = {r.subject_id for d in directs for r in relations_of(d, rels, predicate="reports_to", direction="in")}
    assert {name[t] for t in theirs} == {"Dan", "Erin"}  # not Frank: he reports to Dan


def test_which_projects_share_a_lead_with_project_x() -> None:
    e, rels = org_chart()
    name = {v: k for k, v in e.items()}
    leads = {r.subject_id for r in relations_of(e["Project X"], rels, predicate="leads", direction="in")}
    shared = {r.object_id for lead in leads for r in relations_of(lead, rels, predicate="leads", direction="out")}
    assert {name[p] for p in shared - {e["Project X"]}} == {"Project Y", "Project Z"}


def test_neighbours_and_paths() -> None:
    e, rels = org_chart()
    name = {v: k for k, v in e.items()}
    assert {name[n]: d for n, d in neighbours(e["Alice"], rels).items()} == {
        "Bob": 1, "Carol": 1, "Project X": 1, "Project Y": 1,
    }  # fmt: skip
    two = {name[n]: d for n, d in neighbours(e["Alice"], rels, depth=2).items()}
    assert two["Dan"] == 2 and two["Erin"] == 2 and two["Project Z"] == 2 and "Frank" not in two
    chain = path(e["Erin"], e["Frank"], rels)
    assert chain is not None
    assert [(name[r.subject_id], r.predicate, name[r.object_id]) for r in chain] == [
        ("Erin", "reports_to", "Carol"), ("Carol", "reports_to", "Alice"), ("Alice", "manages", "Bob"),
        ("Dan", "reports_to", "Bob"), ("Frank", "reports_to", "Dan"),
    ]  # fmt: skip
    assert path(e["Erin"], e["Frank"], rels, max_depth=4) is None
    assert path(e["Bob"], e["Bob"], rels) == []
    assert path(e["Bob"], "nobody", rels) is None
    with pytest.raises(ValueError, match="depth"):
        neighbours(e["Alice"], rels, depth=0)
    with pytest.raises(ValueError, match="direction"):
        relations_of(e["Alice"], rels, direction="up")  # type: ignore[arg-type]


def test_traversal_sees_the_graph_as_it_was() -> None:
    old = relation("r0", "bob", "reports_to", "alice", since="2026-01-01")
    moved = plan([("bob", "reports_to", "carol", True)], [old], since="2026-05-01")
    closed = dict(moved.closed)
    rels = [replace(old, valid_until=closed["r0"]), *moved.new]
    assert [r.object_id for r in relations_of("bob", rels)] == ["carol"]
    assert [r.object_id for r in relations_of("bob", rels, as_of="2026-03-01")] == ["alice"]
    assert neighbours("alice", rels) == {} and neighbours("alice", rels, as_of="2026-03-01") == {"bob": 1}
    assert path("alice", "carol", rels) is None
    assert path("alice", "carol", rels, as_of="2026-03-01") is None
    assert relations_of("bob", rels, as_of="2025-01-01") == []
