"""mem0's self-hosted REST paths and mem0's argument names on ``memlane serve``, over real HTTP on 127.0.0.1.

Requests are shaped as a mem0 app (or a curl script written for mem0's ``server/main.py``) sends
them. Each path must answer as its ``/v1`` twin does: the same authentication, namespace checks,
limits, audit and errors; a mem0 argument memlane cannot honour is a 400 with exactly the message
``Memory`` raises for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import serving, settings_for

from memlane import InvalidRequest, Memory, MemoryClient
from memlane.server import KeyStore, create_app
from memlane.testing import FrozenClock, HashEmbedder

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
ALICE = [{"role": "user", "content": "I am vegetarian"}, {"role": "user", "content": "I live in Lisbon"}]


@dataclass
class Mem0Server:
    """A served ``Memory`` (on a frozen clock), an admin key and a tenant key of namespace ``acme``."""

    url: str
    memory: Memory
    clock: FrozenClock
    admin: str
    tenant: str
    home: Path

    def http(self, token: str | None = None, header: str = "x-api-key") -> httpx.Client:
        """A client sending the key as mem0's newer server expects it (``X-API-Key``) by default."""
        headers = {} if token == "" else {header: token or self.admin}
        if header == "authorization" and token != "":
            headers = {header: f"Token {token or self.admin}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def served(home: Path, **overrides: Any) -> Iterator[Mem0Server]:
    settings = settings_for(home, **overrides)
    keys = KeyStore(settings.keys_path)
    admin = keys.create("admin", admin=True)[1]
    tenant = keys.create("acme", namespace="acme")[1]
    clock = FrozenClock(T0)
    with (
        Memory(path=home / "m.db", embedder=HashEmbedder(), clock=clock) as memory,
        serving(create_app(memory, settings)) as url,
    ):
        yield Mem0Server(url, memory, clock, admin, tenant, home)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Mem0Server]:
    with served(tmp_path) as s:
        yield s


def error_of(response: httpx.Response, status: int, kind: str) -> str:
    """The message of an error response, after checking memlane's error shape."""
    assert response.status_code == status, (status, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind and body["error"]["status"] == status, body
    message: str = body["error"]["message"]
    return message


def python_message(call: Callable[[], Any]) -> str:
    """What ``Memory`` raises for a call (an InvalidRequest)."""
    with pytest.raises(InvalidRequest) as info:
        call()
    return str(info.value)


def _texts(result: dict[str, Any]) -> list[str]:
    return sorted(item["memory"] for item in result["results"])


# -- every path with mem0-shaped bodies ----------------------------------------------------------
def test_a_mem0_app_runs_against_memlane_by_changing_the_base_url(server: Mem0Server) -> None:
    with server.http() as http:
        added = http.post("/memories", json={"messages": ALICE, "user_id": "alice", "metadata": {"src": "chat"}})
        assert added.status_code == 200, added.text
        assert [r["event"] for r in added.json()["results"]] == ["ADD", "ADD"]
        veg = next(r["id"] for r in added.json()["results"] if r["memory"] == "I am vegetarian")
        http.post("/memories", json={"messages": [{"role": "user", "content": "I am vegan"}], "user_id": "bob"})
        http.post("/memories", json={"messages": [{"role": "user", "content": "Be terse"}], "agent_id": "helper"})
        run = {"messages": [{"role": "user", "content": "order 4471"}], "user_id": "alice", "run_id": "s1"}
        assert http.post("/memories", json=run).status_code == 200

        listed = http.get("/memories", params={"user_id": "alice"}).json()
        assert _texts(listed) == ["I am vegetarian", "I live in Lisbon", "order 4471"]
        assert _texts(http.get("/memories", params={"user_id": "alice", "run_id": "s1"}).json()) == ["order 4471"]
        assert _texts(http.get("/memories", params={"agent_id": "helper"}).json()) == ["Be terse"]
        assert http.get(f"/memories/{veg}").json()["memory"] == "I am vegetarian"

        hits = http.post("/search", json={"query": "vegetarian food", "user_id": "alice", "top_k": 1}).json()
        assert [h["memory"] for h in hits["results"]] == ["I am vegetarian"]
        in_filters = http.post("/search", json={"query": "vegan", "filters": {"user_id": "bob"}}).json()
        assert [h["memory"] for h in in_filters["results"]] == ["I am vegan"]  # bob's only: scopes stay apart
        assert all(h["user_id"] == "alice" for h in http.post("/search", json={"query": "vegan", "user_id": "alice"})
                   .json()["results"])  # fmt: skip

        updated = http.put(f"/memories/{veg}", json={"text": "I am pescatarian", "metadata": {"src": "fix"}})
        assert updated.json() == {"message": "Memory updated successfully!"}
        assert (server.memory.get(veg)["memory"], server.memory.get(veg)["metadata"]) == (
            "I am pescatarian",
            {"src": "fix"},
        )
        events = http.get(f"/memories/{veg}/history").json()
        assert [e["event"] for e in events] == ["ADD", "UPDATE"]

        assert http.delete(f"/memories/{veg}").json()["message"]
        error_of(http.get(f"/memories/{veg}"), 404, "MemoryNotFound")
        gone = http.delete("/memories", params={"user_id": "bob"}).json()
        assert gone["deleted"] == 1 and gone["message"]
        assert http.get("/memories", params={"user_id": "bob"}).json() == {"results": []}
        assert http.post("/reset").json()["message"]
        assert http.get("/memories", params={"user_id": "alice"}).json() == {"results": []}


def test_update_takes_mem0s_body_forms_and_refuses_others(server: Mem0Server) -> None:
    mid = server.memory.add("first text", user_id="alice")["results"][0]["id"]
    with server.http() as http:
        for body, text in (({"text": "by text"}, "by text"), ({"data": "by data"}, "by data"),
                           ({"memory": "by memory"}, "by memory")):  # fmt: skip
            assert http.put(f"/memories/{mid}", json=body).json() == {"message": "Memory updated successfully!"}
            assert server.memory.get(mid)["memory"] == text
        assert http.put(f"/memories/{mid}", json={"metadata": {"k": 1}}).status_code == 200  # metadata only
        assert server.memory.get(mid)["metadata"] == {"k": 1} and server.memory.get(mid)["memory"] == "by memory"
        twice = error_of(http.put(f"/memories/{mid}", json={"memory": "a", "text": "b"}), 400, "InvalidRequest")
        assert "once" in twice
        assert error_of(http.put(f"/memories/{mid}", json={"text": "a", "data": "b"}), 400, "InvalidRequest") == (
            python_message(lambda: server.memory.update(mid, "a", text="b"))
        )
        assert error_of(http.put(f"/memories/{mid}", json={}), 400, "InvalidRequest") == python_message(
            lambda: server.memory.update(mid)
        )
        assert "content" in error_of(http.put(f"/memories/{mid}", json={"content": "x"}), 422, "InvalidRequest")
        assert error_of(http.put(f"/memories/{mid}", json=["x"]), 422, "InvalidRequest")
        error_of(http.put("/memories/no-such-id", json={"text": "x"}), 404, "MemoryNotFound")
    assert [e["event"] for e in server.memory.history(mid)] == ["ADD", "UPDATE", "UPDATE", "UPDATE", "UPDATE"]


def test_expiry_by_expiration_date_and_show_expired(server: Mem0Server) -> None:
    with server.http() as http:
        body = {
            "messages": [{"role": "user", "content": "door code 4411"}],
            "user_id": "u",
            "expiration_date": "2026-03-01",
        }
        mid = http.post("/memories", json=body).json()["results"][0]["id"]
        http.post("/v1/memories", json={"messages": "gate code 77", "user_id": "u"})
        assert len(http.get("/memories", params={"user_id": "u"}).json()["results"]) == 2  # visible through the day
        server.clock.advance(days=1)
        for path in ("/memories", "/v1/memories"):
            assert _texts(http.get(path, params={"user_id": "u"}).json()) == ["gate code 77"]
            shown = http.get(path, params={"user_id": "u", "show_expired": "true"}).json()
            assert _texts(shown) == ["door code 4411", "gate code 77"]
        for path in ("/search", "/v1/memories/search"):
            query = {"query": "door code", "user_id": "u"}
            assert "door code 4411" not in _texts(http.post(path, json=query).json())
            assert "door code 4411" in _texts(http.post(path, json={**query, "show_expired": True}).json())
        # Absent keeps the expiry, null clears it, a date sets it.
        http.put(f"/memories/{mid}", json={"text": "door code 5511"})
        assert server.memory.get(mid)["expires_at"] == "2026-03-02T00:00:00.000000+00:00"
        http.put(f"/memories/{mid}", json={"expiration_date": None})
        assert server.memory.get(mid)["expires_at"] is None
        assert "door code 5511" in _texts(http.get("/memories", params={"user_id": "u"}).json())
        item = http.put(f"/v1/memories/{mid}", json={"expiration_date": "2026-12-31"}).json()
        assert item["expires_at"] == "2027-01-01T00:00:00.000000+00:00"
        assert http.put(f"/v1/memories/{mid}", json={"expires_at": None}).json()["expires_at"] is None
        bad = error_of(http.put(f"/v1/memories/{mid}", json={"expiration_date": "soon"}), 400, "InvalidRequest")
        assert bad == python_message(lambda: server.memory.update(mid, expiration_date="soon"))


# -- mem0 arguments memlane cannot honour, and both names of one argument ------------------------------
def test_unmapped_mem0_arguments_are_a_400_with_memorys_message(server: Mem0Server) -> None:
    memory = server.memory
    mid = memory.add("a memory", user_id="alice")["results"][0]["id"]
    cases = [
        ("POST", "/search", {"json": {"query": "x", "user_id": "alice", "categories": ["c"]}},
         lambda: memory.search("x", user_id="alice", categories=["c"])),
        ("POST", "/v1/memories/search", {"json": {"query": "x", "user_id": "alice", "keyword_search": True}},
         lambda: memory.search("x", user_id="alice", keyword_search=True)),
        ("POST", "/memories", {"json": {"messages": ALICE, "user_id": "alice", "enable_graph": True}},
         lambda: memory.add(ALICE, user_id="alice", enable_graph=True)),
        ("POST", "/v1/memories", {"json": {"messages": "x", "user_id": "alice", "async_mode": False}},
         lambda: memory.add("x", user_id="alice", async_mode=False)),
        ("GET", "/memories", {"params": {"user_id": "alice", "page": "2"}},
         lambda: memory.get_all(user_id="alice", page=2)),
        ("GET", "/v1/memories", {"params": {"user_id": "alice", "page_size": "5"}},
         lambda: memory.get_all(user_id="alice", page_size=5)),
        ("DELETE", f"/memories/{mid}", {"params": {"delete_linked": "true"}},
         lambda: memory.delete(mid, delete_linked=True)),
        ("POST", "/search", {"json": {"query": "x", "user_id": "alice", "top_k": 2, "limit": 2}},
         lambda: memory.search("x", user_id="alice", top_k=2, limit=2)),
        ("GET", "/memories", {"params": {"user_id": "alice", "top_k": "2", "limit": "2"}},
         lambda: memory.get_all(user_id="alice", top_k=2, limit=2)),
        ("POST", "/memories", {"json": {"messages": "x", "user_id": "alice", "prompt": "p",
                                        "custom_instructions": "q"}},
         lambda: memory.add("x", user_id="alice", prompt="p", custom_instructions="q")),
    ]  # fmt: skip
    with server.http() as http:
        for method, path, request, call in cases:
            message = error_of(http.request(method, path, **request), 400, "InvalidRequest")
            assert message == python_message(call), (method, path)
        # Any other unknown field is refused by the schema, as before.
        assert "colour" in error_of(http.post("/search", json={"query": "x", "user_id": "alice", "colour": 1}),
                                    422, "InvalidRequest")  # fmt: skip
    assert [i["id"] for i in memory.get_all(user_id="alice")["results"]] == [mid]  # nothing was written


def test_the_client_refuses_what_memory_refuses_with_the_same_message(server: Mem0Server) -> None:
    memory = server.memory
    mid = memory.add("a memory", user_id="alice")["results"][0]["id"]
    with MemoryClient(server.url, api_key=server.admin, retries=0) as client:
        assert client.search("memory", user_id="alice", top_k=1)["results"][0]["id"] == mid
        assert client.get_all(user_id="alice", top_k=1, show_expired=True)["results"][0]["id"] == mid
        assert client.update(mid, text="new text", metadata={"k": "v"})["memory"] == "new text"
        assert client.update(mid, expiration_date="2030-01-01")["expires_at"] == "2030-01-02T00:00:00.000000+00:00"
        assert client.update(mid, expiration_date=None)["expires_at"] is None
        for name, args, kwargs in [
            ("search", ("x",), {"user_id": "alice", "fields": ["id"]}),
            ("get_all", (), {"user_id": "alice", "org_id": "o"}),
            ("get_all", (), {"user_id": "alice", "top_k": 1, "limit": 1}),
            ("update", (mid,), {}),
            ("delete", (mid,), {"delete_linked": True}),
        ]:
            remote = python_message(partial(getattr(client, name), *args, **kwargs))
            assert remote == python_message(partial(getattr(memory, name), *args, **kwargs)), name
        with pytest.raises(TypeError, match="'k'"):
            client.search("x", user_id="alice", k=3)


# -- the same guards as /v1 -----------------------------------------------------------------------
MEM0_ROUTES = [
    ("POST", "/memories"), ("GET", "/memories"), ("DELETE", "/memories"), ("GET", "/memories/some-id"),
    ("PUT", "/memories/some-id"), ("DELETE", "/memories/some-id"), ("GET", "/memories/some-id/history"),
    ("POST", "/search"), ("POST", "/reset"), ("POST", "/configure"),
]  # fmt: skip


def test_every_mem0_path_needs_a_key(server: Mem0Server) -> None:
    with server.http(token="") as anonymous, server.http(token="mlk_not-a-key") as wrong:
        for method, path in MEM0_ROUTES:
            error_of(anonymous.request(method, path, json={}), 401, "AuthenticationError")
            error_of(wrong.request(method, path, json={}), 401, "AuthenticationError")
    # mem0's newer server reads X-API-Key; memlane also takes Authorization: Token / Bearer.
    with server.http(header="authorization") as token:
        assert token.get("/memories", params={"user_id": "alice"}).status_code == 200


def test_a_tenant_key_stays_in_its_namespace_on_mem0_paths(server: Mem0Server) -> None:
    other = server.memory.add("globex secret", user_id="globex:carol")["results"][0]["id"]
    with server.http(server.tenant) as acme:
        add = {"messages": [{"role": "user", "content": "mine"}], "user_id": "acme:alice"}
        own = acme.post("/memories", json=add).json()["results"][0]["id"]
        assert "globex" in error_of(
            acme.post("/memories", json={**add, "user_id": "globex:x"}), 403, "PermissionDenied"
        )
        error_of(acme.post("/search", json={"query": "secret", "user_id": "globex:carol"}), 403, "PermissionDenied")
        error_of(acme.post("/search", json={"query": "secret", "run_id": "r"}), 403, "PermissionDenied")
        error_of(acme.get("/memories", params={"user_id": "globex:carol"}), 403, "PermissionDenied")
        error_of(acme.delete("/memories", params={"user_id": "globex:carol"}), 403, "PermissionDenied")
        unknown = error_of(acme.get("/memories/no-such-id"), 404, "MemoryNotFound")
        assert error_of(acme.get(f"/memories/{other}"), 404, "MemoryNotFound") == unknown.replace("no-such-id", other)
        error_of(acme.put(f"/memories/{other}", json={"text": "mine now"}), 404, "MemoryNotFound")
        error_of(acme.delete(f"/memories/{other}"), 404, "MemoryNotFound")
        assert acme.get(f"/memories/{other}/history").json() == []
        error_of(acme.post("/reset"), 403, "PermissionDenied")
        assert acme.put(f"/memories/{own}", json={"text": "still mine"}).status_code == 200
    assert server.memory.get(other)["memory"] == "globex secret"


def test_configure_is_refused_clearly(server: Mem0Server) -> None:
    with server.http() as http:
        message = error_of(http.post("/configure", json={"llm": {"provider": "openai"}}), 400, "InvalidRequest")
    assert "config" in message and "restart" in message


def test_mem0_paths_share_limits_rate_and_audit(tmp_path: Path) -> None:
    with served(tmp_path, max_text_chars=50) as s, s.http() as http:
        long = {"messages": [{"role": "user", "content": "x" * 51}], "user_id": "alice"}
        assert "50" in error_of(http.post("/memories", json=long), 413, "RequestTooLarge")
        error_of(http.post("/search", json={"query": "q" * 51, "user_id": "alice"}), 413, "RequestTooLarge")
        mid = http.post("/memories", json={"messages": "short", "user_id": "alice"}).json()["results"][0]["id"]
        error_of(http.put(f"/memories/{mid}", json={"text": "y" * 51}), 413, "RequestTooLarge")
        http.put(f"/memories/{mid}", json={"text": "shorter"})
        http.delete(f"/memories/{mid}")
        http.delete("/memories", params={"user_id": "alice"})
        http.post("/reset")
        slow_key = KeyStore(settings_for(tmp_path).keys_path).create("slow", admin=True, rate_limit=0.001)[1]
        with s.http(slow_key) as slow:
            statuses = [slow.get("/memories", params={"user_id": "a"}).status_code for _ in range(3)]
        assert statuses[-1] == 429 and 200 in statuses
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(line["action"], line["status"]) for line in lines] == [
        ("add", 413), ("add", 200), ("update", 413), ("update", 200), ("delete", 200), ("delete_all", 200),
        ("reset", 200),
    ]  # fmt: skip
    assert lines[3]["memory_id"] == mid and lines[5]["scope"]["user_id"] == "alice"


def test_the_openapi_document_describes_the_mem0_paths_and_fields(server: Mem0Server) -> None:
    with server.http(token="") as anonymous:
        spec = anonymous.get("/openapi.json").json()
    for method, path in MEM0_ROUTES:
        operation = spec["paths"][path.replace("some-id", "{memory_id}")][method.lower()]
        assert operation["tags"] == ["mem0"], path
    schemas = spec["components"]["schemas"]
    assert {"top_k", "show_expired", "reference_date", "rerank"} <= set(schemas["SearchBody"]["properties"])
    assert {"expiration_date", "custom_instructions", "prompt"} <= set(schemas["AddBody"]["properties"])
    assert {"data", "text", "metadata", "expires_at", "expiration_date"} <= set(schemas["UpdateBody"]["properties"])
    assert "memory" in schemas["Mem0UpdateBody"]["properties"]
    listing = {p["name"] for p in spec["paths"]["/v1/memories"]["get"]["parameters"]}
    assert {"user_id", "limit", "top_k", "cursor", "show_expired"} <= listing
    assert listing == {p["name"] for p in spec["paths"]["/memories"]["get"]["parameters"]}


def test_search_takes_reference_date_and_rerank(server: Mem0Server) -> None:
    server.memory.add("old note about tea", user_id="u", timestamp=T0 - timedelta(days=300))
    server.memory.add("new note about tea", user_id="u")
    query = {"query": "note about tea", "user_id": "u", "recency_weight": 1.0, "rerank": True}
    with server.http() as http:
        now = http.post("/search", json=query).json()["results"]
        back_then = http.post("/search", json={**query, "reference_date": "2025-05-05"}).json()["results"]
    expected = server.memory.search("note about tea", user_id="u", recency_weight=1.0, reference_date="2025-05-05")
    assert now[0]["memory"] == "new note about tea"
    assert [h["id"] for h in back_then] == [h["id"] for h in expected["results"]]


# -- mem0's own platform client, pointed at memlane ------------------------------------------------
def _platform_client(url: str, token: str) -> dict[str, Any]:
    """What mem0's ``MemoryClient`` (mem0ai 2.x) gets from memlane (run in a subprocess: mem0 creates
    its directory and reads MEM0_TELEMETRY when imported)."""
    import asyncio

    from mem0 import AsyncMemoryClient
    from mem0 import MemoryClient as Mem0Client

    def failure(call: Callable[[], Any]) -> list[str]:
        try:
            call()
        except Exception as exc:
            return [type(exc).__name__, str(exc)]
        return ["no error", ""]

    out: dict[str, Any] = {"wrong key": failure(lambda: Mem0Client(api_key="mlk_wrong", host=url))}
    client = Mem0Client(api_key=token, host=url)
    chat = [{"role": "user", "content": "I am vegetarian"}, {"role": "user", "content": "I live in Lisbon"}]
    out["add"] = client.add(chat, user_id="alice", metadata={"src": "chat"})
    out["add filters"] = client.add("I like tea", filters={"user_id": "bob"}, expiration_date="2030-01-01")
    out["search"] = client.search("vegetarian", filters={"user_id": "alice"}, top_k=1)
    out["get_all"] = client.get_all(filters={"AND": [{"user_id": "alice"}]})
    veg = out["search"]["results"][0]["id"]
    out["get"] = client.get(veg)
    out["update"] = client.update(veg, text="I am pescatarian", metadata={"src": "fix"})
    out["update expiry"] = client.update(veg, expiration_date="2030-01-01")
    out["clear expiry"] = client.update(veg, expiration_date=None)
    out["history"] = client.history(veg)
    out["page"] = failure(lambda: client.get_all(filters={"user_id": "alice"}, page=2, page_size=10))
    out["categories"] = failure(lambda: client.search("tea", filters={"user_id": "bob"}, categories=["food"]))
    out["delete"] = client.delete(veg)
    out["get deleted"] = failure(lambda: client.get(veg))
    out["delete_all"] = client.delete_all(user_id="bob")
    out["bob after"] = client.get_all(filters={"user_id": "bob"})

    async def run_async() -> dict[str, Any]:
        aclient = AsyncMemoryClient(api_key=token, host=url)
        await aclient.add("async note", user_id="carol")
        return dict(await aclient.search("async note", filters={"user_id": "carol"}))

    out["async search"] = asyncio.run(run_async())
    return out


def test_mem0s_own_platform_client_works_against_memlane(server: Mem0Server, tmp_path: Path) -> None:
    home = tmp_path / "mem0-home"
    home.mkdir()
    env = {**os.environ, "MEM0_TELEMETRY": "False", "HOME": str(home), "MEM0_DIR": str(home / ".mem0")}
    result = tmp_path / "result.json"
    command = [sys.executable, __file__, server.url, server.admin, str(result)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(result.read_text(encoding="utf-8"))
    assert out["wrong key"][0] == "ValueError" and "401" in out["wrong key"][1]
    assert sorted(r["memory"] for r in out["add"]["results"]) == ["I am vegetarian", "I live in Lisbon"]
    assert [r["event"] for r in out["add filters"]["results"]] == ["ADD"]  # for bob: delete_all below finds it
    assert [h["memory"] for h in out["search"]["results"]] == ["I am vegetarian"]
    assert sorted(m["memory"] for m in out["get_all"]["results"]) == ["I am vegetarian", "I live in Lisbon"]
    assert out["get"]["memory"] == "I am vegetarian" and out["get"]["metadata"] == {"src": "chat"}
    assert (out["update"]["memory"], out["update"]["metadata"]) == ("I am pescatarian", {"src": "fix"})
    assert out["update expiry"]["expires_at"] == "2030-01-02T00:00:00.000000+00:00"
    assert out["clear expiry"]["expires_at"] is None
    assert [e["event"] for e in out["history"]] == ["ADD", "UPDATE", "UPDATE", "UPDATE"]
    page = python_message(lambda: server.memory.get_all(user_id="alice", page=2))
    assert out["page"][0] == "ValidationError" and page in out["page"][1]
    categories = python_message(lambda: server.memory.search("tea", user_id="bob", categories=["food"]))
    assert out["categories"][0] == "ValidationError" and categories in out["categories"][1]
    assert out["delete"]["message"]
    assert out["get deleted"][0] == "MemoryNotFoundError"
    assert out["delete_all"]["deleted"] == 1 and out["bob after"]["results"] == []
    assert [h["memory"] for h in out["async search"]["results"]] == ["async note"]
    # Its writes went through memlane's audit like any other.
    actions = [json.loads(line)["action"] for line in (server.home / "audit.log").read_text().splitlines()]
    assert actions == ["add", "add", "update", "update", "update", "delete", "delete_all", "add"]


def test_platform_paths_keep_a_tenant_in_its_namespace(server: Mem0Server) -> None:
    other = server.memory.add("globex secret", user_id="globex:carol")["results"][0]["id"]
    with server.http(server.tenant, header="authorization") as acme:
        assert acme.get("/v1/ping/").json()["status"] == "ok"
        error_of(acme.post("/v3/memories/add/", json={"messages": "x", "user_id": "globex:x"}), 403, "PermissionDenied")
        search = {"query": "secret", "filters": {"user_id": "globex:carol"}}
        error_of(acme.post("/v3/memories/search/", json=search), 403, "PermissionDenied")
        error_of(acme.post("/v3/memories/", json={"filters": {"user_id": "globex:carol"}}), 403, "PermissionDenied")
        for method in ("GET", "PUT", "DELETE"):
            error_of(acme.request(method, f"/v1/memories/{other}/", json={"text": "x"}), 404, "MemoryNotFound")
        assert acme.get(f"/v1/memories/{other}/history/").json() == []
        error_of(acme.delete("/v1/memories/", params={"user_id": "globex:carol"}), 403, "PermissionDenied")
        # A mem0 id memlane has no meaning for is refused, not ignored (ignored, it would widen the delete).
        app_id = error_of(acme.delete("/v1/memories/", params={"user_id": "acme:a", "app_id": "x"}), 400,
                          "InvalidRequest")  # fmt: skip
        assert "app_id" in app_id
    with server.http(token="") as anonymous:
        error_of(anonymous.get("/v1/ping/"), 401, "AuthenticationError")
    assert server.memory.get(other)["memory"] == "globex secret"


if __name__ == "__main__":  # the subprocess of test_mem0s_own_platform_client_works_against_memlane
    Path(sys.argv[3]).write_text(json.dumps(_platform_client(sys.argv[1], sys.argv[2])), encoding="utf-8")
