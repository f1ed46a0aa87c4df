"""The REST server's limits, statuses, audit log and deployment, each over real HTTP on 127.0.0.1.

Every error response is checked for memlane's shape (``{"error": {"type", "message", "status"}}``)
and, through ``MemoryClient``, for coming back as the same exception class. The limits are shown
to apply before any model call (a ``FakeLLM`` and a counting embedder see nothing). The last test
runs ``memlane serve --workers 2`` as a subprocess with the default local embedder (slow).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from server_harness import serving, settings_for
from wire_server import closed_port

import memlane
from memlane import (
    AuthenticationError,
    InvalidFilter,
    InvalidRequest,
    MemlaneError,
    Memory,
    MemoryClient,
    MemoryConflict,
    MemoryItem,
    MemoryNotFound,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    ScopeRequired,
)
from memlane.protocols import EmbedKind, Vectors
from memlane.server import KeyStore, create_app, serve
from memlane.server.settings import is_loopback
from memlane.testing import FakeLLM, HashEmbedder

JSON = {"content-type": "application/json"}


@dataclass
class Server:
    url: str
    token: str
    keys: KeyStore

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token or self.token}"}, timeout=30)

    def client(self, token: str | None = None, retries: int = 0) -> MemoryClient:
        return MemoryClient(self.url, api_key=token or self.token, retries=retries)


@contextmanager
def running(memory: Memory, home: Path, **overrides: Any) -> Iterator[Server]:
    """The app over ``memory`` under uvicorn, with auth on and an admin key."""
    settings = settings_for(home, **overrides)
    keys = KeyStore(settings.keys_path)
    _, token = keys.create("admin", admin=True)
    app = create_app(memory, settings)
    with serving(app) as url:
        yield Server(url, token, keys)


def error_of(response: httpx.Response, status: int, kind: str, *extra: str) -> str:
    """The message of an error response, after checking its status and memlane's error shape."""
    assert response.status_code == status, (status, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "status", *extra}, body
    assert body["error"]["type"] == kind and body["error"]["status"] == status, body
    message: str = body["error"]["message"]
    assert message
    return message


def raises_exactly(cls: type[MemlaneError], call: Any) -> MemlaneError:
    """The exception ``call`` raised, which must be exactly ``cls`` (not a parent or a sibling)."""
    with pytest.raises(MemlaneError) as caught:
        call()
    assert type(caught.value) is cls, (cls, caught.value)
    return caught.value


class CountingEmbedder(HashEmbedder):
    """The hash embedder, remembering every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        self.texts += texts
        return super().embed(texts, kind=kind)


class SlowEmbedder(HashEmbedder):
    """Sleeps on any text that mentions "slow" (the warm-up at startup stays fast)."""

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        if any("slow" in t for t in texts):
            time.sleep(2.5)
        return super().embed(texts, kind=kind)


class BrokenEmbedder(HashEmbedder):
    """Fails like a bug (not a ProviderError) on any text that mentions "explode"."""

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        if any("explode" in t for t in texts):
            raise RuntimeError("secret-internal-detail")
        return super().embed(texts, kind=kind)


# -- limits: 413 before any model sees the request --------------------------------------------------
def test_limits_answer_413_before_any_model_call(tmp_path: Path) -> None:
    llm, embedder = FakeLLM(), CountingEmbedder()
    limits = {"max_body_bytes": 4000, "max_messages": 3, "max_text_chars": 200}
    with Memory(path=tmp_path / "m.db", embedder=embedder, llm=llm) as memory, running(memory, tmp_path, **limits) as s:
        warm_up = list(embedder.texts)
        big = json.dumps({"messages": "x" * 5000, "user_id": "u"}).encode()

        def chunks() -> Iterator[bytes]:
            yield from (big[i : i + 1000] for i in range(0, len(big), 1000))

        long_text = "y" * 201
        too_many = [{"role": "user", "content": m} for m in ("one", "two", "three", "four")]
        with s.http() as http, s.client() as client:
            declared = http.post("/v1/memories", content=big, headers=JSON)
            assert declared.request.headers["content-length"] == str(len(big))
            streamed = http.post("/v1/memories", content=chunks(), headers=JSON)
            assert streamed.request.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in streamed.request.headers
            for response in (declared, streamed):
                assert "over the server's limit of 4000 bytes" in error_of(response, 413, "RequestTooLarge")
            refused = [
                http.post("/v1/memories", json={"messages": too_many, "user_id": "u"}),
                http.post("/v1/memories", json={"messages": too_many * 30, "user_id": "u"}),
                http.post("/v1/memories", json={"messages": long_text, "user_id": "u"}),
                http.post("/v1/memories", json={"messages": {"role": "user", "content": long_text}, "user_id": "u"}),
                http.post("/v1/memories", json={"messages": [too_many[0], {"content": long_text}], "user_id": "u"}),
                http.post("/v1/memories/search", json={"query": long_text, "user_id": "u"}),
                http.put(f"/v1/memories/{uuid.uuid4()}", json={"data": long_text}),
            ]  # fmt: skip
            for response in refused:
                error_of(response, 413, "RequestTooLarge")
            calls: list[Callable[[], object]] = [lambda: client.add(too_many, user_id="u")]
            calls += [lambda: client.add(long_text, user_id="u")]
            calls += [lambda: client.search(long_text, user_id="u"), lambda: client.add("z" * 5000, user_id="u")]
            for call in calls:
                raises_exactly(RequestTooLarge, call)
            assert llm.requests == [] and embedder.texts == warm_up  # no model saw any of it

            # Positive controls: within the limits the same server reads chunked bodies and calls its LLM.
            small = json.dumps({"messages": "short and chunked", "user_id": "u", "infer": False}).encode()
            fine = http.post("/v1/memories", content=iter([small[:10], small[10:]]), headers=JSON)
            assert fine.status_code == 200 and fine.json()["results"][0]["memory"] == "short and chunked"
            llm.queue(FakeLLM.facts("The user likes tea."))
            assert client.add(too_many[:3], user_id="u")["mode"] == "extracted"
            assert len(llm.requests) == 1


# -- statuses: one table, the same exception on both sides -----------------------------------------
def test_bad_requests_get_4xx_in_one_shape_and_the_client_raises_the_same_class(tmp_path: Path) -> None:
    memory = Memory(path=tmp_path / "m.db", embedder=HashEmbedder())
    with memory, running(memory, tmp_path) as s, s.http() as http, s.client() as client:
        malformed = http.post("/v1/memories", content=b'{"messages": ', headers=JSON)
        assert "JSON decode error" in error_of(malformed, 422, "InvalidRequest")
        for response in (
            http.post("/v1/memories", json={"messages": "x", "user_id": 5}),
            http.post("/v1/memories", json={"messages": "x", "user_id": "u", "colour": "red"}),
            http.post("/v1/memories/search", json={"query": "x", "user_id": "u", "limit": "5"}),
            http.get("/v1/memories", params={"user_id": "u", "limit": "many"}),
        ):
            assert "does not match the API" in error_of(response, 422, "InvalidRequest")
        raises_exactly(InvalidRequest, lambda: client.search("x", user_id="u", limit="5"))

        assert "needs at least one of user_id" in error_of(
            http.post("/v1/memories", json={"messages": "x"}), 400, "ScopeRequired"
        )
        raises_exactly(ScopeRequired, lambda: client.add("x"))
        error_of(http.get("/v1/memories", params={"user_id": "u", "filters": '{"a": {"near": 1}}'}),
                 400, "InvalidFilter")  # fmt: skip
        raises_exactly(InvalidFilter, lambda: client.get_all(user_id="u", filters={"a": {"near": 1}}))

        for response in (http.get("/v1/nothing-here"), http.post("/v2/memories", json={})):
            assert error_of(response, 404, "NotFound") == "no such endpoint; see /docs for the API"
        for method, path, allowed in (("PATCH", "/v1/memories", {"DELETE", "GET", "POST"}),
                                      ("PUT", "/v1/memories", {"DELETE", "GET", "POST"}),
                                      ("POST", "/v1/memories/abc", {"DELETE", "GET", "PUT"})):  # fmt: skip
            response = http.request(method, path)
            error_of(response, 405, "MethodNotAllowed")
            # Starlette names the methods of the first route matching the path, not of all of them.
            assert set(response.headers["allow"].split(", ")) <= allowed and response.headers["allow"]

        unknown = str(uuid.uuid4())
        error_of(http.get(f"/v1/memories/{unknown}"), 404, "MemoryNotFound")
        raises_exactly(MemoryNotFound, lambda: client.get(unknown))
        a = client.add("I live in Lisbon", user_id="u")["results"][0]["id"]
        b = client.add("I work in Porto", user_id="u")["results"][0]["id"]
        error_of(http.put(f"/v1/memories/{b}", json={"data": "I live in Lisbon"}), 409, "MemoryConflict")
        raises_exactly(MemoryConflict, lambda: client.update(b, "I live in Lisbon"))
        assert client.get(b)["memory"] == "I work in Porto" and client.get(a)["memory"] == "I live in Lisbon"

        _, tenant = s.keys.create("acme", namespace="acme")
        error_of(http.post("/v1/reset", headers={"authorization": f"Bearer {tenant}"}), 403, "PermissionDenied")
        with s.client(tenant) as limited:
            raises_exactly(PermissionDenied, limited.reset)
        with s.client("mlk_0123456789abcdef_" + "A" * 43) as stranger:
            raises_exactly(AuthenticationError, lambda: stranger.get_all(user_id="u"))
        assert client.get_all(user_id="u")["results"] != []  # nothing above reset or lost anything


# -- rate limits ------------------------------------------------------------------------------------
def drain(http: httpx.Client) -> httpx.Response:
    """Send requests until one is rate limited; returns that response."""
    for _ in range(50):
        response = http.get("/v1/memories", params={"user_id": "u"})
        if response.status_code == 429:
            return response
        assert response.status_code == 200, response.text
    raise AssertionError("never rate limited")


def test_a_key_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    with (
        Memory(path=tmp_path / "m.db", embedder=HashEmbedder()) as memory,
        running(memory, tmp_path, rate_limit=1.0) as s,
    ):
        _, fast = s.keys.create("fast", admin=True, rate_limit=1000)
        _, slow = s.keys.create("slow", admin=True, rate_limit=0.5)
        with s.http() as http:
            limited = drain(http)
            error_of(limited, 429, "RateLimited", "retry_after")
            assert 0 < limited.json()["error"]["retry_after"] <= 1.0
            assert limited.headers["retry-after"] == "1"
            with s.client() as client:
                error = raises_exactly(RateLimited, lambda: client.get_all(user_id="u"))
                assert isinstance(error, RateLimited) and error.retry_after == 1.0
            # A key's own rate wins over the server's, both ways.
            with s.http(fast) as unhurried:
                assert all(unhurried.get("/v1/memories", params={"user_id": "u"}).status_code == 200 for _ in range(20))
            with s.http(slow) as hurried:
                assert hurried.get("/v1/memories", params={"user_id": "u"}).status_code == 200  # a burst of 1
                second = hurried.get("/v1/memories", params={"user_id": "u"})
                error_of(second, 429, "RateLimited", "retry_after")
                assert second.headers["retry-after"] == "2"
            # Probes are never rate limited.
            assert all(http.get("/healthz").status_code == 200 for _ in range(10))


def test_a_retrying_client_waits_for_retry_after_and_succeeds(tmp_path: Path) -> None:
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder()) as memory, running(memory, tmp_path) as s:
        _, token = s.keys.create("limited", admin=True, rate_limit=1.0)
        with s.http(token) as http, s.client(token, retries=2) as client:
            assert drain(http).headers["retry-after"] == "1"
            started = time.monotonic()
            added = client.add("written after a wait", user_id="u")  # a write: 429 is retried for every method
            waited = time.monotonic() - started
            assert added["results"][0]["event"] == "ADD"
            assert 0.9 <= waited < 5.0, waited
            drain(http)
            started = time.monotonic()
            assert client.get_all(user_id="u")["results"][0]["memory"] == "written after a wait"
            assert 0.9 <= time.monotonic() - started < 5.0


# -- time limits and failures -----------------------------------------------------------------------
def test_a_slow_request_answers_503_request_timeout(tmp_path: Path) -> None:
    memory = Memory(path=tmp_path / "m.db", embedder=SlowEmbedder())
    with memory, running(memory, tmp_path, request_timeout=0.5) as s, s.http() as http, s.client() as client:
        started = time.monotonic()
        response = http.post("/v1/memories/search", json={"query": "a slow query", "user_id": "u"})
        assert time.monotonic() - started < 2.0  # answered at the timeout, not when the work ended (2.5 s)
        assert "longer than 0.5 s" in error_of(response, 503, "RequestTimeout", "retry_after")
        assert response.headers["Retry-After"] == "1"
        raises_exactly(RequestTimeout, lambda: client.add("a slow write", user_id="u", infer=False))
        assert client.search("a quick query", user_id="u")["results"] == []  # the server is still fine


def test_an_unexpected_error_is_a_500_without_internals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="memlane.server")
    memory = Memory(path=tmp_path / "m.db", embedder=BrokenEmbedder())
    with memory, running(memory, tmp_path) as s, s.http() as http, s.client() as client:
        response = http.post("/v1/memories", json={"messages": "please explode", "user_id": "u"})
        message = error_of(response, 500, "InternalError")
        for secret in ("secret-internal-detail", "RuntimeError", "Traceback", "embed", "File "):
            assert secret not in response.text
        ref = message.split("(ref ")[1].split(")")[0]
        assert ref in caplog.text and "secret-internal-detail" in caplog.text  # the server log has it
        # The failed connection is not reused: the same client's next request always goes through.
        for i in range(20):
            error = raises_exactly(MemlaneError, lambda: client.add("explode again", user_id="u"))
            assert "secret-internal-detail" not in str(error) and "internal server error" in str(error)
            assert client.add(f"fine {i}", user_id="u")["results"][0]["event"] == "ADD"


# -- the audit log ----------------------------------------------------------------------------------
def test_the_audit_log_names_writes_but_never_their_content(tmp_path: Path) -> None:
    texts = ["alice has diabetes", "alice takes insulin at 8", "alice takes insulin at 9"]
    metadata = {"diagnosis": "secret-metadata-value"}
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder()) as memory, running(memory, tmp_path) as s:
        admin_id = s.keys.list()[0].id
        tenant_key, tenant = s.keys.create("acme", namespace="acme")
        with s.client() as admin, s.client(tenant) as acme:
            messages = [{"role": "user", "content": t} for t in texts[:2]]
            added = admin.add(messages, user_id="acme:alice", metadata=metadata)["results"]
            first, second = added[0]["id"], added[1]["id"]
            other = admin.add("globex bob likes golf", user_id="globex:bob")["results"][0]["id"]
            admin.update(second, texts[2], metadata=metadata)
            admin.delete(first)
            admin.get_all(user_id="acme:alice")  # reads are not audited
            raises_exactly(MemoryNotFound, lambda: acme.delete(other))
            raises_exactly(MemoryNotFound, lambda: acme.update(other, "mine now"))
            raises_exactly(PermissionDenied, lambda: acme.delete_all(user_id="globex:bob"))
            assert admin.delete_all(user_id="acme:alice")["deleted"] == 1
    # The server has stopped: every line is written.
    raw = (tmp_path / "audit.log").read_bytes()
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600
    for secret in [*texts, "globex bob likes golf", "mine now", metadata["diagnosis"], s.token, tenant]:
        assert secret.encode() not in raw, secret
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert all({"at", "request_id", "key_id", "action", "status"} <= set(line) for line in lines)
    seen = [(line["key_id"], line["action"], line["status"], line.get("memory_id")) for line in lines]
    assert seen == [
        (admin_id, "add", 200, None),
        (admin_id, "add", 200, None),
        (admin_id, "update", 200, second),
        (admin_id, "delete", 200, first),
        (tenant_key.id, "delete", 404, other),
        (tenant_key.id, "update", 404, other),
        (tenant_key.id, "delete_all", 403, None),
        (admin_id, "delete_all", 200, None),
    ]
    assert lines[0]["events"] == [[first, "ADD"], [second, "ADD"]]
    assert lines[0]["scope"] == {"user_id": "acme:alice", "agent_id": None, "run_id": None}
    assert lines[1]["events"] == [[other, "ADD"]]
    assert lines[-1]["deleted"] == 1 and lines[-1]["scope"]["user_id"] == "acme:alice"


# -- serving --------------------------------------------------------------------------------------
@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``uvicorn.run`` recorded instead of run: a broken check must never bind a public address.

    serve() also hands its settings to workers through os.environ; monkeypatch restores it.
    """
    for name in ("MEMLANE_SERVER_SETTINGS", "MEMLANE_HOME", "MEMLANE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    return calls


PUBLIC = ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "2001:db8::1", "example.com", ""]
LOOPBACK = ["127.0.0.1", "127.4.5.6", "::1", "localhost"]


def test_no_auth_is_refused_off_loopback(no_uvicorn: list[dict[str, Any]], tmp_path: Path) -> None:
    for host in PUBLIC:
        assert not is_loopback(host), host
        with pytest.raises(InvalidRequest, match="binds only to loopback"):
            serve(auth=False, host=host, home=str(tmp_path))
    assert no_uvicorn == []
    for host in LOOPBACK:
        assert is_loopback(host), host
        serve(auth=False, host=host, home=str(tmp_path))
    serve(auth=True, host="0.0.0.0", home=str(tmp_path))  # with keys, any interface is the operator's call
    assert [call["host"] for call in no_uvicorn] == [*LOOPBACK, "0.0.0.0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLANE_")}
    command = [sys.executable, "-m", "memlane", "--home", str(tmp_path), "serve", "--no-auth", "--host", "0.0.0.0"]
    done = subprocess.run([*command, "--port", str(closed_port())], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "binds only to loopback" in done.stderr


PROBES = {"/healthz", "/readyz", "/v1/version"}
EXPECTED_ROUTES = {
    ("POST", "/v1/memories"), ("GET", "/v1/memories"), ("DELETE", "/v1/memories"),
    ("POST", "/v1/memories/search"), ("GET", "/v1/memories/{memory_id}"), ("PUT", "/v1/memories/{memory_id}"),
    ("DELETE", "/v1/memories/{memory_id}"), ("GET", "/v1/memories/{memory_id}/history"), ("POST", "/v1/reset"),
    ("GET", "/v1/export"), ("POST", "/v1/import"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/v1/version"),
    # the graph (memlane.server.graph_routes)
    ("GET", "/v1/entities"), ("GET", "/v1/entities/{entity_id}"), ("GET", "/v1/entities/{entity}/relations"),
    ("GET", "/v1/entities/{entity}/neighbours"), ("GET", "/v1/graph/path"),
    # consolidation (memlane.server.consolidate_routes)
    ("POST", "/v1/consolidate"), ("GET", "/v1/profile"), ("POST", "/v1/memories/{memory_id}/restore"),
    # mem0's self-hosted server paths (memlane.server.mem0_routes)
    ("POST", "/memories"), ("GET", "/memories"), ("DELETE", "/memories"), ("GET", "/memories/{memory_id}"),
    ("PUT", "/memories/{memory_id}"), ("DELETE", "/memories/{memory_id}"), ("GET", "/memories/{memory_id}/history"),
    ("POST", "/search"), ("POST", "/reset"), ("POST", "/configure"),
    # the paths mem0's platform client calls (memlane.server.mem0_platform_routes)
    ("GET", "/v1/ping/"), ("POST", "/v3/memories/add/"), ("POST", "/v3/memories/search/"), ("POST", "/v3/memories/"),
    ("GET", "/v1/memories/{memory_id}/"), ("PUT", "/v1/memories/{memory_id}/"), ("DELETE", "/v1/memories/{memory_id}/"),
    ("DELETE", "/v1/memories/"), ("GET", "/v1/memories/{memory_id}/history/"),
}  # fmt: skip


def test_probes_and_the_api_description_need_no_key(tmp_path: Path) -> None:
    memory = Memory(path=tmp_path / "m.db", embedder=HashEmbedder())
    with memory, running(memory, tmp_path) as s, httpx.Client(base_url=s.url) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {"status": "ready"}
        assert anonymous.get("/v1/version").json() == {"memlane": memlane.__version__, "api": "v1"}
        with MemoryClient(s.url, api_key="", retries=0) as client:
            assert client.version()["memlane"] == memlane.__version__
        spec = anonymous.get("/openapi.json").json()
        documented = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
        assert documented == EXPECTED_ROUTES
        # And every documented route is served: a probe answers, an API route asks for a key first.
        for method, path in EXPECTED_ROUTES:
            response = anonymous.request(method, path.replace("{memory_id}", "some-id"))
            if path in PROBES:
                assert response.status_code == 200, path
            else:
                error_of(response, 401, "AuthenticationError")


# -- a real deployment: memlane serve --workers 2 ---------------------------------------------------
def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"memlane serve exited with {process.returncode}: {log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"memlane serve was not ready within 120 s: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def all_pages(client: MemoryClient, user_id: str) -> list[MemoryItem]:
    items: list[MemoryItem] = []
    page = client.get_all(user_id=user_id, limit=7)
    while True:
        items += page["results"]
        if "next_cursor" not in page:
            return items
        page = client.get_all(user_id=user_id, limit=7, cursor=page["next_cursor"])


@pytest.mark.slow
def test_memlane_serve_with_two_workers_keeps_every_acknowledged_add(tmp_path: Path) -> None:
    home, log_path = tmp_path / "home", tmp_path / "server.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MEMLANE_")}, "PYTHONUNBUFFERED": "1"}
    cli = [str(Path(sys.executable).with_name("memlane")), "--home", str(home)]
    created = subprocess.run([*cli, "--json", "keys", "create", "--admin", "--name", "t"],
                             capture_output=True, text=True, env=env, timeout=60, check=True)  # fmt: skip
    token = json.loads(created.stdout)["token"]
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    command = [*cli, "serve", "--port", str(port), "--workers", "2", "--rate-limit", "100000", "--log-level", "warning"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(url, process, log_path)
        acknowledged: dict[str, str] = {}
        lock = threading.Lock()

        def writer(thread: int) -> None:
            with MemoryClient(url, api_key=token, retries=2) as client:
                for i in range(25):
                    text = (
                        f"load note {thread}-{i}: the courier {uuid.uuid4().hex[:8]} arrives at dock {thread * 25 + i}"
                    )
                    result = client.add(text, user_id="load:user")["results"]
                    assert [r["event"] for r in result] == ["ADD"]
                    with lock:
                        acknowledged[result[0]["id"]] = text

        with ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(writer, t) for t in range(4)]:
                future.result()
        assert len(acknowledged) == 100
        with MemoryClient(url, api_key=token, retries=2) as client:
            stored = all_pages(client, "load:user")
            assert len(stored) == 100 and len({m["id"] for m in stored}) == 100  # each exactly once
            assert {m["id"]: m["memory"] for m in stored} == acknowledged
            target_id, target = sorted(acknowledged.items())[42]
            assert client.search(target, user_id="load:user", limit=3)["results"][0]["id"] == target_id
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_path.read_text(errors="replace")[-3000:]
