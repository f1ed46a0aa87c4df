"""Tenant isolation of the REST server, over real HTTP on 127.0.0.1.

One server with auth on serves a world the admin key wrote for three tenants: ``acme``,
``globex`` and ``acme2`` (``acme2`` proves that ``acme`` is a namespace, not a string prefix).
Each tenant key then attacks the others through ``MemoryClient`` and through raw httpx (where the
client would check or reshape the request first): every scope form, every id route, export,
import, reset. Each attack runs inside ``world.unchanged()``, which compares the admin's full
export before and after, byte for byte; the last test compares it with the export taken when the
world was built. A fresh server shows that a tenant can do everything inside its own namespace,
so none of this passes by refusing everything.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import serving, settings_for

from memlane import (
    AuthenticationError,
    InvalidRequest,
    Memory,
    MemoryClient,
    MemoryNotFound,
    PermissionDenied,
    ScopeRequired,
)
from memlane.server import KeyStore, create_app
from memlane.testing import FrozenClock, HashEmbedder

NAMESPACES = ("acme", "globex", "acme2")
# (attacker, victim); acme and acme2 attack each other: the prefix confusion, both ways.
PAIRS = [("acme", "globex"), ("globex", "acme"), ("acme", "acme2"), ("acme2", "acme")]
JSON = {"content-type": "application/json"}
pair = pytest.mark.parametrize(("attacker", "victim"), PAIRS, ids=[f"{a}-vs-{v}" for a, v in PAIRS])


@dataclass
class Tenant:
    """One namespace of the world: its key, its scope ids, its memories and what must never leak."""

    ns: str
    token: str
    key_id: str
    ids: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    @property
    def user(self) -> str:
        return f"{self.ns}:alice"

    @property
    def bob(self) -> str:
        return f"{self.ns}:bob"

    @property
    def agent(self) -> str:
        return f"{self.ns}:bot"

    def owns(self, item: Mapping[str, Any]) -> bool:
        prefix = f"{self.ns}:"
        return any(isinstance(i, str) and i.startswith(prefix) for i in (item["user_id"], item["agent_id"]))


@dataclass
class World:
    url: str
    keys: KeyStore
    admin_token: str
    tenants: dict[str, Tenant]
    snapshot: bytes = b""

    def client(self, ns: str | None = None) -> MemoryClient:
        token = self.admin_token if ns is None else self.tenants[ns].token
        return MemoryClient(self.url, api_key=token, retries=0)

    def http(self, ns: str | None = None, **headers: str) -> httpx.Client:
        token = self.admin_token if ns is None else self.tenants[ns].token
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token}", **headers}, timeout=30)

    def export(self) -> bytes:
        with self.http() as http:
            response = http.get("/v1/export")
        assert response.status_code == 200, response.text
        return response.content

    @contextmanager
    def unchanged(self) -> Iterator[None]:
        """Asserts that the admin's full export is byte-for-byte the same after the block."""
        before = self.export()
        yield
        assert self.export() == before, "an attack changed the store"


def error_of(response: httpx.Response, status: int, kind: str) -> str:
    """The message of an error response, after checking its status and memlane's error shape."""
    assert response.status_code == status, (status, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "status"}, body
    assert body["error"]["type"] == kind and body["error"]["status"] == status, body
    message: str = body["error"]["message"]
    assert message
    return message


def assert_no_leak(text: str, victim: Tenant) -> None:
    for secret in victim.secrets:
        assert secret not in text, f"{victim.ns}'s {secret!r} leaked"


def populate(admin: MemoryClient, clock: FrozenClock, t: Tenant) -> None:
    """A rich namespace: users, an agent, runs, metadata, a conversation, an update and a delete."""

    def add(text: str, **scope: Any) -> str:
        clock.advance(seconds=1)
        t.secrets.append(text)
        meta = scope.get("metadata", {})
        t.secrets += [v for v in meta.values() if isinstance(v, str) and v.startswith("secret")]
        result = admin.add(text, **scope)
        return str(result["results"][0]["id"])

    ns = t.ns
    t.ids["plain"] = add(f"{ns} alice likes pizza margherita", user_id=t.user,
                         metadata={"topic": "food", "card": f"secret-card-<{ns}>"})  # fmt: skip
    t.ids["run"] = add(f"{ns} alice lives in Lisbon", user_id=t.user, run_id="run-1", metadata={"topic": "home"})
    t.ids["agent"] = add(f"{ns} bot answers in French", agent_id=t.agent, metadata={"topic": "style"})
    # metadata may hold keys named like scope ids: filters on them only ever narrow a scope.
    t.ids["shared"] = add(f"{ns} alice and bot planned a trip to Kyoto", user_id=t.user, agent_id=t.agent,
                          run_id="run-1", metadata={"topic": "travel", "user_id": "globex:alice"})  # fmt: skip
    t.ids["bob"] = add(f"{ns} bob is allergic to peanuts", user_id=t.bob, metadata={"topic": "health"})
    t.ids["updated"] = add(f"{ns} alice drives a blue car", user_id=t.user, metadata={"topic": "car"})
    clock.advance(seconds=1)
    t.secrets += [f"{ns} alice drives a red car", f"secret-plate-<{ns}>"]
    admin.update(t.ids["updated"], t.secrets[-2], metadata={"topic": "car", "plate": t.secrets[-1]})
    t.ids["deleted"] = add(f"{ns} alice's password hint is tulip", user_id=t.user)
    clock.advance(seconds=1)
    admin.delete(t.ids["deleted"])
    for i in range(5):
        t.ids[f"note{i}"] = add(f"{ns} alice note {i} about hobby number {i}", user_id=t.user, metadata={"n": i})
    clock.advance(seconds=1)
    chat = [{"role": "user", "content": f"{ns} what is my gate code"},
            {"role": "assistant", "content": f"{ns} your gate code is 4711"}]  # fmt: skip
    t.secrets += [m["content"] for m in chat]
    results = admin.add(chat, user_id=t.user, run_id="chat-1")["results"]
    t.ids["question"], t.ids["answer"] = results[0]["id"], results[1]["id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("tenants")
    settings = settings_for(home)
    keys = KeyStore(settings.keys_path)
    _, admin_token = keys.create("admin", admin=True)
    tenants = {}
    for ns in NAMESPACES:
        key, token = keys.create(f"{ns}-prod", namespace=ns)
        tenants[ns] = Tenant(ns, token, key.id)
    clock = FrozenClock()
    memory = Memory(path=home / "m.db", embedder=HashEmbedder(), clock=clock)
    with memory, serving(create_app(memory, settings)) as url:
        w = World(url, keys, admin_token, tenants)
        with w.client() as admin:
            for tenant in tenants.values():
                populate(admin, clock, tenant)
        w.snapshot = w.export()
        yield w


# -- the world is real: every id exists and its owner sees it ---------------------------------------
def test_each_tenant_sees_its_own_world(world: World) -> None:
    for t in world.tenants.values():
        with world.client(t.ns) as own, world.client() as admin:
            for role, mid in t.ids.items():
                if role == "deleted":
                    with pytest.raises(MemoryNotFound):
                        own.get(mid)
                    assert [e["event"] for e in own.history(mid)] == ["ADD", "DELETE"]
                    continue
                assert own.get(mid) == admin.get(mid)
                assert t.owns(own.get(mid))
            assert [e["event"] for e in own.history(t.ids["updated"])] == ["ADD", "UPDATE"]
            listed = own.get_all(user_id=t.user)["results"]
            assert {m["id"] for m in listed} == {
                mid for r, mid in t.ids.items() if r not in ("agent", "bob", "deleted")
            }
            assert own.search("pizza margherita", user_id=t.user)["results"][0]["id"] == t.ids["plain"]
            assert [m["id"] for m in own.get_all(agent_id=t.agent)["results"]] == [t.ids["shared"], t.ids["agent"]]


# -- scopes: every form that names another namespace is 403 -----------------------------------------
def victim_scopes(a: Tenant, v: Tenant) -> list[dict[str, Any]]:
    """Every way a request can name the victim's scope (alone or next to the attacker's own ids)."""
    return [
        {"user_id": v.user},
        {"agent_id": v.agent},
        {"user_id": v.bob, "run_id": "run-1"},
        {"user_id": a.user, "agent_id": v.agent},
        {"user_id": v.user, "agent_id": a.agent},
        {"filters": {"user_id": v.user}},
        {"filters": {"agent_id": {"eq": v.agent}}},
        {"filters": {"AND": [{"user_id": v.user}, {"topic": "food"}]}},
        {"filters": {"$and": [{"agent_id": v.agent}]}},
        {"filters": {"and": [{"user_id": v.user}, {"run_id": "run-1"}]}},
        {"user_id": a.user, "filters": {"AND": [{"agent_id": v.agent}]}},
        {"agent_id": a.agent, "filters": {"user_id": v.user}},
    ]


RUN_ONLY: list[dict[str, Any]] = [{"run_id": "run-1"}, {"filters": {"run_id": "run-1"}}, {"run_id": "chat-1"}]


def scoped_calls(client: MemoryClient, scope: dict[str, Any]) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = [
        ("add", lambda: client.add("attacker was here", **scope)),
        ("search", lambda: client.search("pizza gate code", **scope)),
        ("get_all", lambda: client.get_all(**scope)),
        ("get_all page", lambda: client.get_all(limit=1, **scope)),
        ("delete_all", lambda: client.delete_all(**scope)),
        ("delete_all purge", lambda: client.delete_all(purge=True, **scope)),
    ]
    if "filters" not in scope:
        calls.append(("export", lambda: list(client.export_records(**scope))))
    return calls


@pair
def test_every_scope_form_naming_another_namespace_is_403(world: World, attacker: str, victim: str) -> None:
    a, v = world.tenants[attacker], world.tenants[victim]
    with world.unchanged(), world.client(attacker) as client:
        for scope in [*victim_scopes(a, v), *RUN_ONLY]:
            for name, call in scoped_calls(client, scope):
                with pytest.raises(PermissionDenied) as denied:
                    call()
                assert type(denied.value) is PermissionDenied, (name, scope)
                assert_no_leak(str(denied.value), v)
        with pytest.raises(PermissionDenied, match="tenant key must name"):
            list(client.export_records())
        for call in (client.get_all, client.delete_all):  # no scope at all: as for Memory (and admins)
            with pytest.raises(ScopeRequired):
                call()
        with pytest.raises(PermissionDenied, match="reset needs an admin key"):
            client.reset()


@pair
def test_raw_requests_naming_another_namespace_are_403(world: World, attacker: str, victim: str) -> None:
    """Forms MemoryClient would refuse or reshape: repeated parameters, duplicate JSON keys, odd ids."""
    a, v = world.tenants[attacker], world.tenants[victim]
    look_alikes = [v.user, a.user.upper(), f" {a.user}", attacker, f"{attacker}2:alice", f"{attacker}-x:alice"]
    forbidden: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/memories", {"params": [("user_id", a.user), ("user_id", v.user)]}),
        ("GET", "/v1/memories", {"params": {"filters": json.dumps({"AND": [{"user_id": v.user}]})}}),
        ("GET", "/v1/memories", {"params": {"user_id": a.user, "agent_id": v.agent, "limit": 1000}}),
        ("DELETE", "/v1/memories", {"params": [("agent_id", a.agent), ("agent_id", v.agent)]}),
        ("DELETE", "/v1/memories", {"params": {"run_id": "run-1", "purge": "true"}}),
        ("GET", "/v1/export", {}),
        ("GET", "/v1/export", {"params": {"run_id": "run-1"}}),
        ("GET", "/v1/export", {"params": {"agent_id": v.agent}}),
        ("POST", "/v1/reset", {}),
        ("POST", "/v1/memories/search",
         {"content": f'{{"query": "pizza", "user_id": "{a.user}", "user_id": "{v.user}"}}', "headers": JSON}),
        ("POST", "/v1/memories",
         {"content": f'{{"messages": "x", "user_id": "{a.user}", "user_id": "{v.user}"}}', "headers": JSON}),
    ]  # fmt: skip
    for bad in look_alikes:
        forbidden.append(("GET", "/v1/memories", {"params": {"user_id": bad}}))
        forbidden.append(("POST", "/v1/memories", {"json": {"messages": "x", "user_id": bad}}))
    with world.unchanged(), world.http(attacker) as http:
        for method, path, kwargs in forbidden:
            response = http.request(method, path, **kwargs)
            error_of(response, 403, "PermissionDenied")
            assert_no_leak(response.text, v)
        # The same tricks in the attacker's favour still read only the attacker's own memories.
        for kwargs in (
            {"params": [("user_id", v.user), ("user_id", a.user)]},
            {"params": {"user_id": a.user, "filters": json.dumps({"OR": [{"user_id": v.user}]})}},
        ):
            response = http.get("/v1/memories", **kwargs)
            assert response.status_code == 200 and all(a.owns(m) for m in response.json()["results"])
            assert_no_leak(response.text, v)
        body = f'{{"query": "pizza", "user_id": "{v.user}", "user_id": "{a.user}"}}'
        found = http.post("/v1/memories/search", content=body, headers=JSON)
        assert [m["id"] for m in found.json()["results"]][:1] == [a.ids["plain"]]
        # Malformed scope forms are refused before they reach any data.
        for params in ({"filters": json.dumps({"user_id": [v.user]})}, {"filters": "[1]"}, {"filters": "{"}):
            assert http.get("/v1/memories", params=params).status_code == 400
        conflict = http.post("/v1/memories", json={"messages": "x", "user_id": a.user, "filters": {"user_id": v.user}})
        error_of(conflict, 400, "ScopeConflict")
        assert http.post("/v1/memories", json={"messages": "x", "user_id": 5}).status_code == 422


# -- ids: another namespace's memories look exactly like ids that do not exist ----------------------
def id_requests(http: httpx.Client, mid: str) -> list[httpx.Response]:
    path = f"/v1/memories/{mid}"
    return [
        http.get(path),
        http.get(path, params={"include_sources": "true"}),
        http.put(path, json={"data": "overwritten by the attacker"}),
        http.put(path, json={"data": "overwritten", "metadata": {"owner": "attacker"}}),
        http.delete(path),
        http.delete(path, params={"purge": "true"}),
        http.get(f"{path}/history"),
    ]


def shape(response: httpx.Response, mid: str) -> tuple[int, str, bytes, list[str]]:
    """What a caller can observe of a response, with the id it asked about blanked out."""
    headers = sorted(k for k in response.headers if k not in ("date", "x-request-id"))
    body = response.content.replace(mid.encode(), b"<id>")
    return response.status_code, response.headers["content-type"], body, headers


@pair
def test_ids_of_another_namespace_answer_like_unknown_ids(world: World, attacker: str, victim: str) -> None:
    v = world.tenants[victim]
    with world.unchanged(), world.http(attacker) as http, world.client(attacker) as client:
        for role, mid in v.ids.items():
            unknown = str(uuid.uuid4())
            assert len(unknown) == len(mid)  # so even Content-Length cannot tell them apart
            seen, expected = id_requests(http, mid), id_requests(http, unknown)
            assert [r.status_code for r in seen] == [404] * 6 + [200], role
            assert [shape(r, mid) for r in seen] == [shape(r, unknown) for r in expected], role
            assert error_of(seen[0], 404, "MemoryNotFound") == f"no memory with id {mid!r}"
            assert seen[-1].content == b"[]"
            for r in seen:
                assert_no_leak(r.text, v)
            for call in (client.get, lambda i: client.update(i, "x"), client.delete):
                assert not_found(call, mid).replace(mid, "<id>") == not_found(call, unknown).replace(unknown, "<id>")
            assert client.history(mid) == [] == client.history(unknown)


def not_found(call: Any, memory_id: str) -> str:
    with pytest.raises(MemoryNotFound) as caught:
        call(memory_id)
    assert type(caught.value) is MemoryNotFound
    return str(caught.value)


# -- import: records of another namespace are refused whole -----------------------------------------
def fresh_memory(user_id: str | None = None, agent_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "memory", "id": str(uuid.uuid4()), "memory": f"imported {uuid.uuid4().hex}",
            "user_id": user_id, "agent_id": agent_id, "created_at": "2026-02-01T00:00:00Z", **extra}  # fmt: skip


def fresh_history(*scopes: dict[str, str | None]) -> dict[str, Any]:
    mid = str(uuid.uuid4())
    events = [{"event": "ADD", "new_memory": "x", "created_at": "2026-02-01T00:00:00Z", **s} for s in scopes]
    return {"type": "history", "memory_id": mid, "events": events}


@pair
def test_imports_touching_another_namespace_are_refused_whole(world: World, attacker: str, victim: str) -> None:
    a, v = world.tenants[attacker], world.tenants[victim]
    with world.client() as admin:
        victims_own = list(admin.export_records(user_id=v.user))
    mine = fresh_memory(a.user)
    batches = [
        victims_own,
        [mine, fresh_memory(v.user)],
        [fresh_memory(a.user, v.agent)],
        [fresh_memory(v.user, a.agent)],
        [fresh_memory(run_id="run-1")],
        [fresh_memory(user_id=None, agent_id=v.agent, run_id="run-1")],
        [mine, fresh_history({"user_id": a.user}, {"user_id": v.user})],
        [fresh_history({"agent_id": v.agent})],
        [fresh_history({"run_id": "run-1"})],
        [{"type": "memlane-export", "format": 1}, mine, fresh_memory(v.bob)],
    ]
    with world.unchanged(), world.client(attacker) as client, world.http(attacker) as http:
        for records in batches:
            for on_conflict in ("error", "skip"):
                with pytest.raises(PermissionDenied, match="nothing imported"):
                    client.import_records(records, on_conflict=on_conflict)
            raw = "\n".join(json.dumps(r) for r in records)
            error_of(http.post("/v1/import", content=raw), 403, "PermissionDenied")
        error_of(http.post("/v1/import", content=json.dumps({**mine, "user_id": 5})), 403, "PermissionDenied")
        empty = {"type": "history", "memory_id": "x", "events": []}
        error_of(http.post("/v1/import", content=json.dumps(empty)), 400, "InvalidRequest")
        assert client.get_all(user_id=a.user, filters={"memory": mine["memory"]})["results"] == []


# -- metadata filters and cursors only ever narrow the attacker's own scope -------------------------
@pair
def test_metadata_filters_naming_scope_fields_only_narrow(world: World, attacker: str, victim: str) -> None:
    a, v = world.tenants[attacker], world.tenants[victim]
    filters: list[dict[str, Any]] = [
        {"OR": [{"user_id": v.user}, {"agent_id": v.agent}]},
        {"OR": [{"user_id": v.user}, {"topic": "food"}]},
        {"NOT": {"user_id": a.user}},
        {"NOT": {"agent_id": "*"}},
        {"OR": [{"agent_id": {"in": [v.agent, a.agent]}}, {"NOT": {"topic": "food"}}]},
        {"metadata.user_id": v.user},
    ]
    with world.unchanged(), world.client(attacker) as client:
        seen: set[str] = set()
        for f in filters:
            for scope in ({"user_id": a.user, "filters": f}, {"filters": {"AND": [{"user_id": a.user}, f]}},
                          {"agent_id": a.agent, "filters": f}):  # fmt: skip
                for result in (client.get_all(**scope), client.search("alice bob pizza Kyoto gate", explain=True,
                                                                       limit=50, **scope)):  # fmt: skip
                    assert all(a.owns(m) for m in result["results"]), (f, scope)
                    assert_no_leak(json.dumps(result), v)
                    seen |= {m["id"] for m in result["results"]}
        # Inside a filter, user_id is a metadata key: the shared memory's metadata names globex:alice.
        by_food = client.get_all(user_id=a.user, filters={"OR": [{"user_id": v.user}, {"topic": "food"}]})
        expected = [a.ids["shared"]] * (v.user == "globex:alice") + [a.ids["plain"]]
        assert [m["id"] for m in by_food["results"]] == expected
        assert seen and not seen & set(v.ids.values())
        with pytest.raises(InvalidRequest, match="plain string id"):  # operators on a scope id are refused
            client.get_all(filters={"user_id": {"ne": a.user}})


@pair
def test_cursor_pages_stay_in_the_namespace(world: World, attacker: str, victim: str) -> None:
    a, v = world.tenants[attacker], world.tenants[victim]
    with world.unchanged(), world.client(attacker) as client, world.client() as admin:
        expected = [m["id"] for m in admin.get_all(user_id=a.user, limit=1000)["results"]]
        paged: list[str] = []
        page = client.get_all(user_id=a.user, limit=2)
        while True:
            assert all(a.owns(m) for m in page["results"])
            paged += [m["id"] for m in page["results"]]
            if "next_cursor" not in page:
                break
            page = client.get_all(user_id=a.user, limit=2, cursor=page["next_cursor"])
        assert paged == expected and len(paged) > 4
        victim_cursor = admin.get_all(user_id=v.user, limit=2)["next_cursor"]
        # A cursor is only a position: in the attacker's scope it means what it means for the admin there.
        foreign = client.get_all(user_id=a.user, limit=100, cursor=victim_cursor)["results"]
        assert foreign == admin.get_all(user_id=a.user, limit=100, cursor=victim_cursor)["results"]
        assert all(a.owns(m) for m in foreign)
        with pytest.raises(PermissionDenied):
            client.get_all(user_id=v.user, limit=2, cursor=victim_cursor)
        forged = base64.urlsafe_b64encode(b"9999-12-31T00:00:00+00:00|999999999").decode().rstrip("=")
        assert [m["id"] for m in client.get_all(user_id=a.user, cursor=forged)["results"]] == expected
        with pytest.raises(InvalidRequest, match="cursor"):
            client.get_all(user_id=a.user, cursor="not-a-cursor")


# -- authentication -----------------------------------------------------------------------------------
ENDPOINTS = [
    ("GET", "/v1/memories?user_id=acme:alice"), ("POST", "/v1/memories"), ("POST", "/v1/memories/search"),
    ("DELETE", "/v1/memories?user_id=acme:alice"), ("GET", "/v1/memories/x"), ("PUT", "/v1/memories/x"),
    ("DELETE", "/v1/memories/x"), ("GET", "/v1/memories/x/history"), ("GET", "/v1/export"),
    ("POST", "/v1/import"), ("POST", "/v1/reset"),
]  # fmt: skip


def test_requests_without_a_key_get_401_with_a_challenge(world: World) -> None:
    with world.unchanged(), httpx.Client(base_url=world.url) as http:
        for method, path in ENDPOINTS:  # no body either: the key is checked before anything else
            response = http.request(method, path)
            assert "needs an API key" in error_of(response, 401, "AuthenticationError"), path
            assert response.headers["www-authenticate"] == 'Bearer realm="memlane"'
        for probe in ("/healthz", "/readyz", "/v1/version"):
            assert http.get(probe).status_code == 200


def test_wrong_malformed_and_revoked_keys_get_the_same_401(world: World) -> None:
    acme = world.tenants["acme"]
    key, token = world.keys.create("short-lived", namespace="acme")
    wrong_secret = f"mlk_{acme.key_id}_{secrets.token_urlsafe(32)}"
    unknown_id = f"mlk_{secrets.token_hex(8)}_{acme.token.rsplit('_', 1)[1]}"
    malformed = ["garbage", "mlk_", f"mlk_{acme.key_id}_", acme.token + "x", acme.token[:-1],
                 acme.token.replace(acme.key_id, acme.key_id.upper()), " ".join(acme.token)]  # fmt: skip
    with world.unchanged(), httpx.Client(base_url=world.url) as http:

        def as_token(t: str, header: str = "authorization", scheme: str = "Bearer ") -> httpx.Response:
            return http.get("/v1/memories", params={"user_id": acme.user}, headers={header: scheme + t})

        assert as_token(token).status_code == 200
        world.keys.revoke(key.id)
        refused = [as_token(token), as_token(wrong_secret), as_token(unknown_id), *map(as_token, malformed)]
        refused += [as_token(acme.token, scheme="Basic "), as_token(wrong_secret, header="x-api-key", scheme="")]
        for response in refused:
            assert error_of(response, 401, "AuthenticationError")
            assert response.headers["www-authenticate"] == 'Bearer realm="memlane"'
        # Revoked, wrong secret and unknown id are indistinguishable: nothing to probe keys with.
        assert len({r.content for r in refused[:3]}) == 1
        ok = as_token(acme.token, header="x-api-key", scheme="")
        assert ok.status_code == 200 and [m["id"] for m in ok.json()["results"]][-1] == acme.ids["plain"]
        with MemoryClient(world.url, api_key=wrong_secret, retries=0) as client, pytest.raises(AuthenticationError):
            client.get_all(user_id=acme.user)
        with MemoryClient(world.url, api_key="", headers={"x-api-key": acme.token}, retries=0) as client:
            assert client.get(acme.ids["plain"])["id"] == acme.ids["plain"]


def test_the_keys_file_holds_no_secret(world: World) -> None:
    import hashlib

    files = [p for p in world.keys.path.parent.iterdir() if p.name.startswith("keys.db")]
    stored = b"".join(p.read_bytes() for p in files)
    for token in [world.admin_token, *(t.token for t in world.tenants.values())]:
        key_id, secret = token.removeprefix("mlk_").split("_", 1)
        assert key_id.encode() in stored  # the file we read is the right one
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored  # a hash is all it keeps
        assert secret.encode() not in stored and token.encode() not in stored
        assert secret[:16].encode() not in stored


# -- positive control: inside its namespace a tenant can do everything -----------------------------
@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[World]:
    settings = settings_for(tmp_path)
    keys = KeyStore(settings.keys_path)
    _, admin_token = keys.create("admin", admin=True)
    tenants = {}
    for ns in ("acme", "globex"):
        key, token = keys.create(ns, namespace=ns)
        tenants[ns] = Tenant(ns, token, key.id)
    with (
        Memory(path=tmp_path / "m.db", embedder=HashEmbedder()) as memory,
        serving(create_app(memory, settings)) as url,
    ):
        yield World(url, keys, admin_token, tenants)


def test_a_tenant_can_do_everything_inside_its_namespace(fresh: World) -> None:
    acme, globex = fresh.tenants["acme"], fresh.tenants["globex"]
    with fresh.client("acme") as client, fresh.client("globex") as other:
        forms: list[dict[str, Any]] = [
            {"user_id": acme.user}, {"agent_id": acme.agent}, {"user_id": acme.user, "agent_id": acme.agent},
            {"user_id": acme.bob, "run_id": "run-1"}, {"filters": {"user_id": acme.user}},
            {"filters": {"AND": [{"agent_id": acme.agent}]}},
        ]  # fmt: skip
        added = [
            client.add(f"acme fact {i} about tea", metadata={"i": i}, **s)["results"][0] for i, s in enumerate(forms)
        ]
        assert [r["event"] for r in added] == ["ADD"] * len(forms)
        assert len({r["id"] for r in added}) == len(forms)
        listed = client.get_all(user_id=acme.user, filters={"i": {"gte": 0}})["results"]
        assert {m["memory"] for m in listed} == {
            "acme fact 0 about tea",
            "acme fact 2 about tea",
            "acme fact 4 about tea",
        }
        assert client.search("fact 3 tea", user_id=acme.bob, run_id="run-1")["results"][0]["id"] == added[3]["id"]
        first = added[0]["id"]
        assert client.get(first, include_sources=True)["sources"][0]["content"] == "acme fact 0 about tea"
        assert client.update(first, "acme fact 0 about green tea")["memory"] == "acme fact 0 about green tea"
        assert client.delete(added[1]["id"]) == {"message": f"memory {added[1]['id']} deleted"}
        assert [e["event"] for e in client.history(first)] == ["ADD", "UPDATE"]
        assert [e["event"] for e in client.history(added[1]["id"])] == ["ADD", "DELETE"]
        exported = list(client.export_records(user_id=acme.user))
        assert exported[0]["type"] == "memlane-export" and {r["type"] for r in exported[1:]} == {"memory", "history"}
        assert all(acme.owns(r) for r in exported if r["type"] == "memory")
        assert client.import_records(exported, on_conflict="skip")["imported"] == 0
        copy = [{**r, "id": str(uuid.uuid4()), "user_id": acme.bob, "prev_id": None} for r in exported
                if r["type"] == "memory" and r["agent_id"] is None]  # fmt: skip
        assert client.import_records(copy) == {"imported": len(copy), "skipped": 0, "history": 0}
        # The other tenant sees none of it.
        for r in added:
            with pytest.raises(MemoryNotFound):
                other.get(r["id"])
            assert other.history(r["id"]) == []
        assert other.get_all(user_id=globex.user)["results"] == []
        assert client.delete_all(user_id=acme.user)["deleted"] == 3
        assert client.get_all(user_id=acme.user)["results"] == []


def test_an_import_cannot_link_a_message_to_another_namespace(fresh: World) -> None:
    """Search scores a message with the one it follows: a link across tenants would leak its words."""
    with fresh.client() as admin, fresh.client("acme") as client:
        hidden = admin.add("the launch code is zebra", user_id="globex:boss")["results"][0]["id"]
        linked = fresh_memory("acme:spy", memory="ok noted", role="assistant", prev_id=hidden)
        assert client.import_records([linked])["imported"] == 1
        scores = [client.search(q, user_id="acme:spy", explain=True)["results"][0] for q in ("zebra", "giraffe")]
        assert [s["explain"]["context"] for s in scores] == [False, False]
        assert scores[0]["score"] == scores[1]["score"]
        exported = [r for r in client.export_records(user_id="acme:spy") if r["type"] == "memory"]
        assert exported[0]["prev_id"] is None
        # Within its own namespace the link is kept.
        own = client.add("acme question about tea", user_id="acme:spy")["results"][0]["id"]
        reply = fresh_memory("acme:spy", memory="acme answer", role="assistant", prev_id=own)
        client.import_records([reply])
        records = {r.get("id"): r for r in client.export_records(user_id="acme:spy")}
        assert records[reply["id"]]["prev_id"] == own


# -- and after all of it ----------------------------------------------------------------------------
def test_the_world_is_byte_for_byte_what_it_was(world: World) -> None:
    """Runs last in this module: every attack above left the admin's full export unchanged."""
    assert world.export() == world.snapshot
    with world.client() as admin:
        records = list(admin.export_records())
    assert [json.dumps(r, ensure_ascii=False) for r in records] == world.snapshot.decode().splitlines()
    assert sum(r["type"] == "memory" for r in records) == sum(len(t.ids) - 1 for t in world.tenants.values())
