"""The graph API over REST, on real HTTP on 127.0.0.1: every route, ``search(graph=True)``, the error
table, tenant isolation, and ``MemoryClient`` / ``AsyncMemoryClient`` giving what ``Memory`` gives.

The graph is an org chart written by ``Memory.add`` with a scripted ``FakeLLM`` (as
``tests/test_graph_api.py`` writes it) in two namespaces, ``acme`` and ``globex``, with the same
names in both, so a leak would show as a wrong id rather than pass unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from server_harness import serving, settings_for

from memlane import (
    AsyncMemoryClient,
    EntityNotFound,
    InvalidRequest,
    MemlaneError,
    Memory,
    MemoryClient,
    PermissionDenied,
    ScopeRequired,
)
from memlane.server import KeyStore, create_app
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder

T0 = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)
CONFIG: dict[str, Any] = {"extraction": {"related": 0}}  # every fact an ADD: one scripted answer per add
ACME, GLOBEX = "acme:u", "globex:u"
QUESTION = "Is anyone on Carol's team training?"


def fact(text: str, *names: str, relations: tuple[tuple[str, str, str], ...] = ()) -> dict[str, Any]:
    """One extracted fact as a model answers it (people, and projects named "Project ...")."""
    return {
        "text": text,
        "from": [1],
        "entities": [{"name": n, "type": "project" if n.startswith("Project") else "person"} for n in names],
        "relations": [{"subject": s, "predicate": p, "object": o, "exclusive": p == "reports_to"}
                      for s, p, o in relations],
    }  # fmt: skip


def tell(memory: Memory, llm: FakeLLM, user_id: str, *facts: dict[str, Any], **kwargs: Any) -> None:
    llm.queue({"facts": list(facts)})
    memory.add(" ".join(f["text"] for f in facts), user_id=user_id, **kwargs)


def build_org(memory: Memory, llm: FakeLLM, clock: FrozenClock, user_id: str) -> None:
    """Alice manages Bob and Carol; Dan reports to Bob; Bob later moves under Carol; two projects;
    a band whose name holds a slash; two Alices-to-be-confused (Alice Chen is Alice)."""
    tell(memory, llm, user_id,
         fact("Alice Chen manages Bob.", "Alice Chen", "Bob", relations=(("Alice Chen", "manages", "Bob"),)),
         fact("Bob reports to Alice.", "Bob", "Alice", relations=(("Bob", "reports_to", "Alice"),)),
         fact("Carol reports to Alice.", "Carol", "Alice", relations=(("Carol", "reports_to", "Alice"),)),
         timestamp="2026-01-10T09:00:00Z")  # fmt: skip
    tell(memory, llm, user_id,
         fact("Dan reports to Bob.", "Dan", "Bob", relations=(("Dan", "reports_to", "Bob"),)),
         fact("Alice and Bob lead Project X.", "Alice", "Bob", "Project X",
              relations=(("Alice", "leads", "Project X"), ("Bob", "leads", "Project X"))),
         fact("Dan plays bass in AC/DC.", "Dan", "AC/DC", relations=(("Dan", "plays_in", "AC/DC"),)),
         timestamp="2026-02-01T09:00:00Z")  # fmt: skip
    clock.advance(days=1)
    tell(memory, llm, user_id,
         fact("Bob reports to Carol now.", "Bob", "Carol", relations=(("Bob", "reports_to", "Carol"),)),
         timestamp="2026-05-01T09:00:00Z")  # fmt: skip
    tell(memory, llm, user_id, fact("Bob is training for a marathon.", "Bob"))
    tell(memory, llm, user_id, fact("Zoe is training for a marathon.", "Zoe"))


@dataclass
class World:
    memory: Memory
    url: str
    admin: str
    acme: str  # a tenant key of namespace acme

    def client(self, token: str | None = None) -> MemoryClient:
        return MemoryClient(self.url, api_key=token or self.admin, retries=0)

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token or self.admin}"}, timeout=30)

    def entity_id(self, name: str, user_id: str = ACME) -> str:
        return next(e["id"] for e in self.memory.entities(user_id=user_id)["results"] if e["name"] == name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("graph-server")
    llm, clock = FakeLLM(), FrozenClock(T0)
    with Memory(path=home / "m.db", embedder=HashEmbedder(), llm=llm, clock=clock, config=CONFIG) as memory:
        for user in (ACME, GLOBEX):
            build_org(memory, llm, clock, user)
        settings = settings_for(home)
        keys = KeyStore(settings.keys_path)
        _, admin = keys.create("admin", admin=True)
        _, acme = keys.create("acme", namespace="acme")
        keys.close()
        with serving(create_app(memory, settings)) as url:
            yield World(memory, url, admin, acme)


def error_body(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and error["status"] == status, error
    message: str = error["message"]
    return message


# -- every call through the client gives what Memory gives -----------------------------------------
READS: list[tuple[str, Callable[[Any], Any]]] = [
    ("entities", lambda m: m.entities(user_id=ACME)),
    ("relations", lambda m: m.relations("Bob", user_id=ACME)),
    ("relations out", lambda m: m.relations("bob", user_id=ACME, predicate="Reports to", direction="out")),
    ("relations in", lambda m: m.relations("Alice", user_id=ACME, direction="in")),
    ("relations as_of", lambda m: m.relations("Bob", user_id=ACME, predicate="reports_to", as_of="2026-03-01")),
    ("relations epoch", lambda m: m.relations("Bob", user_id=ACME, as_of=datetime(2026, 3, 1).timestamp())),
    ("relations datetime", lambda m: m.relations("Bob", user_id=ACME, as_of=datetime(2026, 3, 1, tzinfo=UTC))),
    ("relations slash", lambda m: m.relations("AC/DC", user_id=ACME)),
    ("relations alias", lambda m: m.relations("alice chen", user_id=ACME, run_id=None)),
    ("neighbours", lambda m: m.neighbours("Alice", user_id=ACME)),
    ("neighbours depth", lambda m: m.neighbours("Alice", user_id=ACME, depth=3)),
    ("neighbours as_of", lambda m: m.neighbours("Carol", user_id=ACME, as_of="2026-03-01T00:00:00Z")),
    ("path", lambda m: m.path("Dan", "Carol", user_id=ACME)),
    ("path as_of", lambda m: m.path("Dan", "Project X", user_id=ACME, as_of="2026-03-01")),
    ("path none", lambda m: m.path("Zoe", "Alice", user_id=ACME)),
    ("search graph", lambda m: m.search(QUESTION, user_id=ACME, graph=True, explain=True)),
    ("search plain", lambda m: m.search(QUESTION, user_id=ACME, explain=True)),
]


@pytest.mark.parametrize("read", [r for _, r in READS], ids=[n for n, _ in READS])
def test_the_client_reads_the_graph_as_memory_does(world: World, read: Callable[[Any], Any]) -> None:
    with world.client() as client:
        assert read(client) == read(world.memory)


def test_an_entity_by_id_and_the_answers_the_org_chart_asks(world: World) -> None:
    with world.client() as client:
        alice = world.entity_id("Alice Chen")
        assert client.entity(alice) == world.memory.entity(alice)
        assert "Alice" in client.entity(alice)["aliases"]
        now = [r["object"]["name"] for r in client.relations("Bob", user_id=ACME, predicate="reports_to",
                                                             direction="out")["results"]]  # fmt: skip
        assert now == ["Carol"]
        chain = client.path("Dan", "Carol", user_id=ACME)
        assert chain["found"] and [(r["subject"]["name"], r["object"]["name"]) for r in chain["results"]] == [
            ("Dan", "Bob"), ("Bob", "Carol"),
        ]  # fmt: skip
        hits = client.search(QUESTION, user_id=ACME, graph=True, explain=True)
        top = hits["results"][0]
        assert top["memory"] == "Bob is training for a marathon." and top["explain"]["graph"]["via"] == "Carol"


async def test_the_async_client_reads_the_same_graph(world: World) -> None:
    async with AsyncMemoryClient(world.url, api_key=world.admin, retries=0) as client:
        assert await client.entities(user_id=ACME) == world.memory.entities(user_id=ACME)
        alice = world.entity_id("Alice Chen")
        assert await client.entity(alice) == world.memory.entity(alice)
        assert await client.relations("Dan", user_id=ACME) == world.memory.relations("Dan", user_id=ACME)
        assert await client.neighbours("Dan", user_id=ACME, depth=2) == world.memory.neighbours(
            "Dan", user_id=ACME, depth=2
        )
        assert await client.path("AC/DC", "Carol", user_id=ACME) == world.memory.path("AC/DC", "Carol", user_id=ACME)
        with pytest.raises(EntityNotFound):
            await client.entity("no-such-entity")


# -- errors: the same class and message as Memory ---------------------------------------------------
FAILING: list[tuple[str, Callable[[Any], Any]]] = [
    ("unknown id", lambda m: m.entity("no-such-entity")),
    ("blank id", lambda m: m.entity(" ")),
    ("id with a slash", lambda m: m.entity("Bob/relations")),
    ("unknown name", lambda m: m.relations("Nobody", user_id=ACME)),
    ("unknown name neighbours", lambda m: m.neighbours("Nobody", user_id=ACME)),
    ("unknown end of path", lambda m: m.path("Alice", "Nobody", user_id=ACME)),
    ("another scope's id", lambda m: m.relations(m.entities(user_id=GLOBEX)["results"][0]["id"], user_id=ACME)),
    ("no scope", lambda m: m.entities()),
    ("no scope relations", lambda m: m.relations("Bob")),
    ("bad direction", lambda m: m.relations("Bob", user_id=ACME, direction="sideways")),
    ("blank predicate", lambda m: m.relations("Bob", user_id=ACME, predicate="")),
    ("bad as_of", lambda m: m.relations("Bob", user_id=ACME, as_of="last spring")),
    ("depth 0", lambda m: m.neighbours("Bob", user_id=ACME, depth=0)),
    ("depth 7", lambda m: m.neighbours("Bob", user_id=ACME, depth=7)),
    ("depth text", lambda m: m.neighbours("Bob", user_id=ACME, depth="2")),
    ("blank entity", lambda m: m.neighbours("", user_id=ACME)),
    ("entity not text", lambda m: m.path(5, "Bob", user_id=ACME)),
]


@pytest.mark.parametrize("call", [c for _, c in FAILING], ids=[n for n, _ in FAILING])
def test_errors_come_back_as_memory_raises_them(world: World, call: Callable[[Any], Any]) -> None:
    with pytest.raises(MemlaneError) as embedded:
        call(world.memory)
    with world.client() as client, pytest.raises(MemlaneError) as remote:
        call(client)
    assert type(remote.value) is type(embedded.value)
    assert str(remote.value) == str(embedded.value)


def test_an_ambiguous_name_is_a_400_listing_the_entities(tmp_path: Path) -> None:
    llm = FakeLLM()
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder(), llm=llm, config=CONFIG) as memory:
        tell(memory, llm, "u", fact("Alice Chen met Alice Wong.", "Alice Chen", "Alice Wong"))
        with serving(create_app(memory, settings_for(tmp_path, auth=False))) as url:
            with MemoryClient(url, retries=0) as client, pytest.raises(InvalidRequest) as remote:
                client.relations("Alice", user_id="u")
            with pytest.raises(InvalidRequest) as embedded:
                memory.relations("Alice", user_id="u")
            assert str(remote.value) == str(embedded.value) and "Alice Wong" in str(remote.value)
            # graph in the search body is a strict boolean, like every flag of the API
            response = httpx.post(f"{url}/v1/memories/search", json={"query": "Alice", "user_id": "u", "graph": "yes"})
            assert "graph" in error_body(response, 422, "InvalidRequest")


# -- raw HTTP: the routes as documented ---------------------------------------------------------------
def test_the_routes_over_raw_http(world: World) -> None:
    with world.http() as http:
        listed = http.get("/v1/entities", params={"user_id": ACME}).json()
        assert listed == world.memory.entities(user_id=ACME)
        bob = world.entity_id("Bob")
        assert http.get(f"/v1/entities/{bob}").json() == world.memory.entity(bob)
        relations = http.get(f"/v1/entities/{quote('AC/DC', safe='')}/relations", params={"user_id": ACME}).json()
        assert [(r["subject"]["name"], r["predicate"]) for r in relations["results"]] == [("Dan", "plays_in")]
        epoch = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
        then = http.get("/v1/entities/Bob/relations",
                        params={"user_id": ACME, "predicate": "reports_to", "direction": "out",
                                "as_of": str(int(epoch))}).json()  # fmt: skip
        assert [r["object"]["name"] for r in then["results"]] == ["Alice Chen"]
        near = http.get("/v1/entities/Alice%20Chen/neighbours", params={"user_id": ACME, "depth": 2}).json()
        assert near == world.memory.neighbours("Alice Chen", user_id=ACME, depth=2)
        chain = http.get("/v1/graph/path", params={"a": "Dan", "b": "Project X", "user_id": ACME}).json()
        assert chain == world.memory.path("Dan", "Project X", user_id=ACME) and chain["found"]
        found = http.post("/v1/memories/search", json={"query": "Carol's team", "user_id": ACME, "graph": True,
                                                       "explain": True}).json()  # fmt: skip
        assert any("graph" in hit["explain"] for hit in found["results"])

        message = error_body(http.get("/v1/entities/no-such-entity"), 404, "EntityNotFound")
        assert "no entity with id 'no-such-entity'" in message
        error_body(http.get("/v1/entities/Nobody/relations", params={"user_id": ACME}), 404, "EntityNotFound")
        error_body(http.get("/v1/entities/Bob/relations", params={"user_id": ACME, "direction": "up"}),
                   400, "InvalidRequest")  # fmt: skip
        error_body(http.get("/v1/entities/Bob/neighbours", params={"user_id": ACME, "depth": "two"}),
                   422, "InvalidRequest")  # fmt: skip
        error_body(http.get("/v1/graph/path", params={"a": "Bob", "user_id": ACME}), 422, "InvalidRequest")
        error_body(http.get("/v1/entities"), 400, "ScopeRequired")
    for path in ("/v1/entities?user_id=acme:u", "/v1/entities/x", "/v1/entities/x/relations", "/v1/graph/path"):
        error_body(httpx.get(world.url + path), 401, "AuthenticationError")


# -- tenants ------------------------------------------------------------------------------------------
def test_a_tenant_key_sees_its_own_graph(world: World) -> None:
    with world.client(world.acme) as acme:
        assert acme.entities(user_id=ACME) == world.memory.entities(user_id=ACME)
        bob = world.entity_id("Bob")
        assert acme.entity(bob)["user_id"] == ACME
        assert acme.path("Dan", "Carol", user_id=ACME) == world.memory.path("Dan", "Carol", user_id=ACME)
        hits = acme.search(QUESTION, user_id=ACME, graph=True)["results"]
        assert hits and all(h["user_id"] == ACME for h in hits)


def test_a_tenant_key_never_reaches_another_namespaces_graph(world: World) -> None:
    theirs = world.entity_id("Bob", GLOBEX)
    with world.client(world.acme) as acme, world.http(world.acme) as http:
        # by id: exactly an unknown id (same status, type and message but for the id)
        foreign = error_body(http.get(f"/v1/entities/{theirs}"), 404, "EntityNotFound")
        unknown = error_body(http.get("/v1/entities/00000000-0000-4000-8000-000000000000"), 404, "EntityNotFound")
        assert foreign.replace(theirs, "ID") == unknown.replace("00000000-0000-4000-8000-000000000000", "ID")
        with pytest.raises(EntityNotFound):
            acme.entity(theirs)
        # naming the other scope: 403 on every route
        for call in (
            lambda: acme.entities(user_id=GLOBEX),
            lambda: acme.relations("Bob", user_id=GLOBEX),
            lambda: acme.neighbours("Bob", agent_id="globex:bot"),
            lambda: acme.path("Dan", "Carol", user_id=GLOBEX),
            lambda: acme.search("Carol's team", user_id=GLOBEX, graph=True),
            lambda: acme.entities(run_id="r1"),  # a run alone names no namespace
        ):
            with pytest.raises(PermissionDenied):
                call()
        # their entity's id inside our scope is not found there
        with pytest.raises(EntityNotFound):
            acme.relations(theirs, user_id=ACME)
        with pytest.raises(EntityNotFound):
            acme.path(theirs, "Bob", user_id=ACME)
        with pytest.raises(ScopeRequired):
            acme.neighbours("Bob")
