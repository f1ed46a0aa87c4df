"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis + hypothesis).

The server under test is the real app under uvicorn on 127.0.0.1 (``server_harness.serving``), over a
populated store (memories of two tenant namespaces, an unscoped user, updates and deletes in their
history). Its ``/openapi.json`` is loaded over HTTP, and schemathesis generates requests for every
operation in it: valid ones, and invalid ones where the schema allows. Generated memory ids and scope
ids are often swapped for real ones, so requests reach real data. Every operation is fuzzed twice:
with an admin key, and with a tenant key of namespace ``acme`` (namespace checks, 403s and 404s).

Each answer must hold:

- no 5xx, and no Python traceback in any body;
- every error is ``{"error": {"type", "message", "status"}}``, with the response's status;
- status code, content type, headers and body as the OpenAPI document says;
- invalid input is refused with a 4xx.

``POST /v1/import`` reads raw NDJSON: schemathesis sends it random text, and a second property posts
random bytes, random JSON lines and mutated records of a real export. Operations that change data
re-populate the store afterwards. Two regression tests pin what the fuzzing and bench/server_load.py
found. Derandomized and bounded: the module runs in about 20 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
import snowballstemmer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_harness import serving, settings_for

from memlane import Memory
from memlane.core import text
from memlane.server import KeyStore, ServerSettings, create_app
from memlane.testing import HashEmbedder

# Per operation and key. For a deeper run: MEMLANE_FUZZ_EXAMPLES=600 (about 4 minutes).
EXAMPLES = int(os.environ.get("MEMLANE_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
USERS = ("acme:alice", "acme:bob", "globex:carol", "dave")
AGENTS = ("acme:planner", "globex:helper")
FACTS = (
    "I moved to Lisbon last spring",
    "My sister Ana is a pharmacist",
    "I am allergic to peanuts",
    "We adopted a teal parrot called Pho",
)
ROLES = ("admin", "tenant")
SCOPED = ("/v1/memories", "/v1/memories/search", "/v1/export")  # the paths that take a scope
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"\n]*", line \d+')

# The import body is raw JSON lines; schemathesis sends generated text as is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


def _unused() -> Memory:
    raise AssertionError("only the OpenAPI document is read from this app")


# Read from the app's own document, so a new route is fuzzed without editing this file.
OPERATIONS = [
    (method.upper(), path)
    for path, methods in create_app(_unused, ServerSettings(home="/nonexistent")).openapi()["paths"].items()
    for method in methods
]


def _populate(memory: Memory) -> list[str]:
    """Fill an empty store; returns every memory id (deleted ones included)."""
    ids: list[str] = []
    for n, user in enumerate(USERS):
        for i, fact in enumerate(FACTS):
            agent = AGENTS[n % 2] if i % 2 else None
            metadata = {"topic": ["home", "family", "health", "pets"][i], "n": i}
            added = memory.add(fact, user_id=user, agent_id=agent, run_id=f"run-{i % 2}", metadata=metadata)
            ids += [r["id"] for r in added["results"]]
        chat = [
            {"role": "user", "content": "Where should we eat?", "name": "Al"},
            {"role": "assistant", "content": "Try the pho place"},
        ]
        ids += [r["id"] for r in memory.add(chat, user_id=user, infer=False)["results"]]
        memory.update(ids[-3], f"{user} moved to Porto")
        memory.delete(ids[-4])
    return ids


@dataclass
class Fuzzed:
    """The server under test, its document, its keys and the ids it holds."""

    url: str
    memory: Memory
    schema: Any
    tokens: dict[str, str]
    ids: list[str] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)

    def populate(self) -> None:
        self.memory.reset()
        self.ids = _populate(self.memory)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    home: Path = tmp_path_factory.mktemp("fuzz")
    settings = settings_for(home)
    keys = KeyStore(settings.keys_path)
    tokens = {
        "admin": keys.create("fuzz-admin", admin=True)[1],
        "tenant": keys.create("fuzz-acme", namespace="acme")[1],
    }
    with Memory(path=home / "fuzz.db", embedder=HashEmbedder()) as memory, serving(create_app(memory, settings)) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        server = Fuzzed(url, memory, schema, tokens)
        server.populate()
        yield server
        server.session.close()


# -- the checks ----------------------------------------------------------------------------------
def assert_clean(response: Any) -> None:
    """No traceback anywhere; every error in memlane's shape, carrying the response's status."""
    assert not TRACEBACK.search(response.text), "the response shows a Python traceback"
    if response.status_code < 400:
        return
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not an error body: {body!r}"
    error = body["error"]
    assert {"type", "message", "status"} <= set(error), f"error lacks type/message/status: {error!r}"
    assert isinstance(error["type"], str) and error["type"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["status"] == response.status_code, error


def clean_errors(ctx: Any, response: Any, case: Case) -> None:
    """``assert_clean`` as a schemathesis check."""
    assert_clean(response)


CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    clean_errors,
]


def _is_negative(case: Case) -> bool:
    return case.meta is not None and case.meta.generation.mode is GenerationMode.NEGATIVE


def _steer(case: Case, memory_id: str | None, scope: str | None) -> Case:
    """Point a valid generated request at real data: a stored memory id, a populated scope."""
    if _is_negative(case):
        return case  # keep what makes it invalid
    if memory_id is not None and case.path_parameters and "memory_id" in case.path_parameters:
        case.path_parameters["memory_id"] = memory_id
    if scope is not None:
        if isinstance(case.body, dict) and ("messages" in case.body or "query" in case.body):
            case.body["user_id"] = scope
        elif case.operation.path in SCOPED:
            case.query = {**(case.query or {}), "user_id": scope}
    return case


def _cases(fuzzed: Fuzzed, method: str, path: str) -> st.SearchStrategy[Case]:
    operation = fuzzed.schema[path][method]
    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    if operation.query or operation.body:  # nothing to make invalid in a path string alone
        strategy = strategy | operation.as_strategy(GenerationMode.NEGATIVE)
    # Mostly real ids and scopes (None: keep the generated one); drawn only where they are used,
    # so an operation without inputs is called once.
    ids = st.sampled_from([*fuzzed.ids, *[None] * 4]) if "memory_id" in path else st.none()
    scopes = st.sampled_from([*USERS, *AGENTS, None]) if path in SCOPED else st.none()
    return st.builds(_steer, strategy, ids, scopes)


def _writes(method: str, path: str) -> bool:
    return method in ("PUT", "DELETE") or path in ("/v1/reset", "/v1/import")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_answers_as_documented(fuzzed: Fuzzed, role: str, method: str, path: str) -> None:
    headers = fuzzed.headers(role)

    @FUZZ
    @given(_cases(fuzzed, method, path))
    def check(case: Case) -> None:
        checks = [*CHECKS, negative_data_rejection] if _is_negative(case) else CHECKS
        case.call_and_validate(base_url=fuzzed.url, session=fuzzed.session, headers=headers, checks=checks)

    try:
        check()
    finally:
        if _writes(method, path):
            fuzzed.populate()


def test_every_documented_operation_is_fuzzed(fuzzed: Fuzzed) -> None:
    served = {(op.ok().method.upper(), op.ok().path) for op in fuzzed.schema.get_all_operations()}
    assert served == set(OPERATIONS)


# -- POST /v1/import with bodies schemathesis cannot build ---------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _mutated(draw: st.DrawFn, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A record of a real export with one field (or a history event's field) changed or dropped."""
    record = json.loads(json.dumps(draw(st.sampled_from(records))))
    target = record
    if record.get("type") == "history" and draw(st.booleans()):
        target = record["events"][0]
    key = draw(st.sampled_from([*sorted(target), "extra"]))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(JSON | st.sampled_from([[], {}, "", "acme:x", "globex:y", "memory", "history"]))
    if record.get("type") == "memory" and draw(st.booleans()):
        record["id"] = draw(st.uuids()).hex  # a new id: the record may import, not conflict
    return record


def _lines(items: list[Any]) -> bytes:
    return "\n".join(json.dumps(item) for item in items).encode()


def _memory_ids(body: bytes) -> list[str]:
    records = [json.loads(line) for line in body.splitlines() if line.strip()]
    return [r["id"] for r in records if r.get("type") == "memory" and isinstance(r.get("id"), str) and r["id"].strip()]


def _bodies(records: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=200)
        | st.lists(JSON, max_size=4).map(_lines)
        | st.lists(_mutated(records), min_size=1, max_size=4).map(_lines)
        | st.lists(st.sampled_from(records), max_size=6).map(_lines)
    )


@pytest.mark.parametrize("role", ROLES)
def test_import_refuses_bad_lines_cleanly(fuzzed: Fuzzed, role: str) -> None:
    records = list(fuzzed.memory.export_records())
    http = httpx.Client(base_url=fuzzed.url, headers=fuzzed.headers(role), timeout=30)

    @FUZZ
    @given(_bodies(records), st.sampled_from(["error", "skip"]))
    def check(body: bytes, on_conflict: str) -> None:
        response = http.post("/v1/import", params={"on_conflict": on_conflict}, content=body)
        assert response.status_code < 500, response.text
        assert_clean(response)
        if response.status_code == 200:  # what was imported must read back
            for memory_id in _memory_ids(body):
                got = http.get(f"/v1/memories/{quote(memory_id, safe='')}")
                assert got.status_code in (200, 404), got.text  # 404: skipped as a conflict
                assert_clean(got)

    try:
        check()
    finally:
        http.close()
        fuzzed.populate()


def test_tenant_import_judges_every_history_event(fuzzed: Fuzzed) -> None:
    """Found by the fuzzer: a tenant's history record was judged by its first event only (and one
    without a list of events was a 500), so a tenant could write events into another namespace."""
    histories = [r for r in fuzzed.memory.export_records() if r["type"] == "history"]
    own = next(r for r in histories if r["events"][0]["user_id"] == "acme:alice")
    first = {**own["events"][0], "memory_id": "fuzz-cross"}
    crossing = {"type": "history", "memory_id": "fuzz-cross", "events": [first, {**first, "user_id": "globex:carol"}]}
    with httpx.Client(base_url=fuzzed.url, headers=fuzzed.headers("tenant"), timeout=30) as http:
        refused = http.post("/v1/import", content=_lines([crossing]))
        assert refused.status_code == 403, refused.text
        assert fuzzed.memory.history("fuzz-cross") == []
        for events in ([], "abc", None, [1]):
            bad = http.post("/v1/import", content=_lines([{**crossing, "events": events}]))
            assert bad.status_code == 400, bad.text
            assert_clean(bad)


def test_concurrent_requests_stem_words_correctly(fuzzed: Fuzzed) -> None:
    """Found by bench/server_load.py: request threads shared one Snowball stemmer, which keeps the word
    it works on in itself; concurrent searches got 500s (IndexError) and wrong stems, kept in a cache."""
    rng = random.Random(7)
    suffixes = ("ational", "ization", "fulness", "iveness", "ing", "edly", "ments")
    words = ["".join(rng.choices("abdegilmnoprstu", k=rng.randint(4, 10))) + rng.choice(suffixes) for _ in range(3000)]
    queries = [" ".join(words[i : i + 30]) for i in range(0, len(words), 30)]
    body = {"user_id": "acme:alice", "limit": 1}

    def search(query: str) -> int:
        with httpx.Client(base_url=fuzzed.url, headers=fuzzed.headers("admin"), timeout=60) as http:
            return http.post("/v1/memories/search", json={**body, "query": query}).status_code

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a race shows up in a short test
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(search, queries))
    finally:
        sys.setswitchinterval(interval)
    assert statuses == [200] * len(queries)
    reference = snowballstemmer.stemmer("english")
    wrong = [w for w in words if text._stem(w) != reference.stemWord(w)]
    assert not wrong, f"{len(wrong)} words have a wrong cached stem, e.g. {wrong[:3]}"
