"""Consolidation over REST, on real HTTP on 127.0.0.1: ``POST /v1/consolidate``, ``GET /v1/profile``,
``POST /v1/memories/{id}/restore``, ``include_merged`` / ``include_archived``, the error table,
tenant confinement, ``MemoryClient`` / ``AsyncMemoryClient`` giving what ``Memory`` gives, and the
scheduled pass (``memlane serve --consolidate-every``): in process with a fake clock, and as two real
``memlane serve`` processes sharing one SQLite file.

No LLM: near-exact duplicates merge, idle memories archive (``archive_after_days``), and profiles
are built from the graph. The same texts are written in two namespaces, ``acme`` and ``globex``,
so a leak would show as a foreign id rather than pass unnoticed.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import serving, settings_for
from wire_server import closed_port

from memlane import (
    AsyncMemoryClient,
    ConsolidationReport,
    InvalidRequest,
    Memory,
    MemoryClient,
    MemoryNotFound,
    PermissionDenied,
)
from memlane.server import KeyStore, create_app
from memlane.server.scheduler import LEASE, ConsolidationScheduler, parse_interval
from memlane.stores.postgres import PostgresStore
from memlane.testing import FrozenClock, HashEmbedder

T0 = datetime(2026, 5, 12, 9, 30, tzinfo=UTC)
CONFIG: dict[str, Any] = {"consolidation": {"archive_after_days": 30}}
ACME, GLOBEX = "acme:u", "globex:u"
DUPLICATES = ("I love sushi", "i love sushi!", "I love  Sushi.")


def fill(memory: Memory, clock: FrozenClock) -> None:
    """In each namespace: three spellings of one fact, one stale memory, one fresh one."""
    for user in (ACME, GLOBEX):
        memory.add("I once lived in Lisbon", user_id=user, infer=False)
    clock.advance(days=40)
    for user in (ACME, GLOBEX):
        for text in DUPLICATES:
            memory.add(text, user_id=user, infer=False)
        memory.add("My sister Ana visits in June", user_id=user, infer=False)


def timeless(report: ConsolidationReport) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "seconds"}


@dataclass
class World:
    url: str
    admin: str
    acme: str
    memory: Memory
    clock: FrozenClock
    home: Path

    def client(self, token: str | None = None) -> MemoryClient:
        return MemoryClient(self.url, api_key=token or self.admin, retries=0)

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token or self.admin}"}, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, str, str, Path]]:
    home = tmp_path_factory.mktemp("consolidate-server")
    settings = settings_for(home)
    keys = KeyStore(settings.keys_path)
    _, admin = keys.create("admin", admin=True)
    _, acme = keys.create("acme", namespace="acme")
    keys.close()
    with Memory(path=home / "idle.db", embedder=HashEmbedder()) as idle:
        app = create_app(idle, settings)
        with serving(app) as url:
            yield app, url, admin, acme, home


@pytest.fixture
def world(server: tuple[Any, str, str, str, Path], tmp_path: Path) -> Iterator[World]:
    """A fresh store (filled, on a frozen clock) behind the module's server."""
    app, url, admin, acme, home = server
    clock = FrozenClock(T0)
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder(), clock=clock, config=CONFIG) as memory:
        fill(memory, clock)
        idle = app.state.memlane.memory
        app.state.memlane.use(memory)
        try:
            yield World(url, admin, acme, memory, clock, home)
        finally:
            app.state.memlane.use(idle)


# -- the client gives what Memory gives ------------------------------------------------------------
def test_a_dry_run_reports_what_memory_reports_and_changes_nothing(world: World) -> None:
    before = world.memory.get_all(user_id=ACME)
    with world.client() as client:
        remote = client.consolidate(user_id=ACME, dry_run=True)
    assert timeless(remote) == timeless(world.memory.consolidate(user_id=ACME, dry_run=True))
    assert remote["dry_run"] and len(remote["merged"]) == 1 and len(remote["merged"][0]["ids"]) == 2
    assert [a["memory"] for a in remote["archived"]] == ["I once lived in Lisbon"]
    assert world.memory.get_all(user_id=ACME) == before


def test_consolidate_merges_and_the_include_flags_show_what_it_set_aside(world: World) -> None:
    with world.client() as client:
        progress: list[tuple[int, int]] = []
        report = client.consolidate(user_id=ACME, progress=lambda done, total: progress.append((done, total)))
        assert progress == [(1, 1)] and report["scopes"] == 1 and not report["dry_run"]
        (merge,) = report["merged"]
        assert merge["memory"] == "I love sushi" and len(merge["ids"]) == 2
        assert {m["memory"] for m in client.get_all(user_id=ACME)["results"]} == {
            "I love sushi", "My sister Ana visits in June"
        }  # fmt: skip
        for flags in ({"include_merged": True}, {"include_archived": True}, {"include_merged": True,
                                                                             "include_archived": True}):  # fmt: skip
            assert client.get_all(user_id=ACME, **flags) == world.memory.get_all(user_id=ACME, **flags)
            assert client.search("sushi", user_id=ACME, **flags) == world.memory.search("sushi", user_id=ACME, **flags)
        listed = {m["id"]: m for m in client.get_all(user_id=ACME, include_merged=True)["results"]}
        assert all(listed[i]["state"] == "merged" and listed[i]["merged_into"] == merge["into"] for i in merge["ids"])
        assert [e["event"] for e in client.history(merge["ids"][0])] == ["ADD", "MERGE"]
        # globex is untouched by acme's pass
        assert len(client.get_all(user_id=GLOBEX)["results"]) == 5


def test_restore_brings_a_memory_back_with_memorys_errors(world: World) -> None:
    report = world.memory.consolidate(user_id=ACME)
    merged, archived = report["merged"][0]["ids"][0], report["archived"][0]["id"]
    with world.client() as client:
        for memory_id in (merged, archived):
            item = client.restore(memory_id)
            assert "state" not in item and item == world.memory.get(memory_id)
        with pytest.raises(InvalidRequest, match="active already"):
            client.restore(merged)
        with pytest.raises(MemoryNotFound, match="no memory with id 'nope'"):
            client.restore("nope")
        with pytest.raises(InvalidRequest, match="memory_id is empty"):
            client.restore(" ")
    assert [e["event"] for e in world.memory.history(archived)][-1] == "ADD"


def test_profile_is_memorys_profile(world: World) -> None:
    world.memory.consolidate(user_id=ACME)
    with world.client() as client:
        remote = client.profile(user_id=ACME)
        assert remote == world.memory.profile(user_id=ACME)
        assert remote["mode"] == "graph" and "I love sushi" in remote["text"]
        assert client.profile(user_id=ACME, refresh=True)["sections"] == remote["sections"]
        assert client.profile(user_id="nobody")["mode"] == "empty"
        for bad, message in (("", "user_id is empty"), (None, "user_id must be a string")):
            with pytest.raises(InvalidRequest, match=message):
                client.profile(user_id=bad)  # type: ignore[arg-type]


async def test_the_async_client_consolidates_as_memory_does(world: World) -> None:
    async with AsyncMemoryClient(world.url, api_key=world.admin, retries=0) as client:
        dry = await client.consolidate(user_id=GLOBEX, dry_run=True)
        assert timeless(dry) == timeless(world.memory.consolidate(user_id=GLOBEX, dry_run=True))
        report = await client.consolidate(user_id=GLOBEX)
        merged = report["merged"][0]["ids"][0]
        listed = await client.get_all(user_id=GLOBEX, include_merged=True, include_archived=True)
        assert listed == world.memory.get_all(user_id=GLOBEX, include_merged=True, include_archived=True)
        assert await client.profile(user_id=GLOBEX) == world.memory.profile(user_id=GLOBEX)
        assert await client.restore(merged) == world.memory.get(merged)
        with pytest.raises(MemoryNotFound):
            await client.restore("nope")


# -- tenants and the whole store ----------------------------------------------------------------------
def test_a_tenant_key_consolidates_only_inside_its_namespace(world: World) -> None:
    foreign = world.memory.consolidate(user_id=GLOBEX)["merged"][0]["ids"][0]
    with world.client(world.acme) as tenant:
        for call in (
            lambda: tenant.consolidate(user_id=GLOBEX),
            lambda: tenant.consolidate(),  # the whole store
            lambda: tenant.consolidate(run_id="r1"),  # no user or agent of its own
            lambda: tenant.profile(user_id=GLOBEX),
        ):
            with pytest.raises(PermissionDenied):
                call()
        with pytest.raises(MemoryNotFound, match=repr(foreign)):  # exactly an unknown id
            tenant.restore(foreign)
        with pytest.raises(PermissionDenied):
            tenant.get_all(user_id=GLOBEX, include_merged=True)
        report = tenant.consolidate(user_id=ACME)
        assert report["scopes"] == 1 and report["merged"][0]["memory"] == "I love sushi"
        assert tenant.profile(user_id=ACME)["user_id"] == ACME
        assert tenant.restore(report["merged"][0]["ids"][0])["user_id"] == ACME
    assert world.memory.get(foreign)["state"] == "merged"  # still merged: the tenant never reached it


def test_only_an_admin_key_consolidates_the_whole_store(world: World) -> None:
    with world.http(world.acme) as tenant:
        refused = tenant.post("/v1/consolidate", json={})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "PermissionDenied"
        assert "admin key" in refused.json()["error"]["message"]
    with world.client() as admin:
        report = admin.consolidate()
    assert report["scopes"] == 2 and sorted(m["memory"] for m in report["merged"]) == ["I love sushi"] * 2
    assert sorted(report["profiles"]) == [ACME, GLOBEX]


# -- raw HTTP: validation, mem0 paths, audit ------------------------------------------------------------
def test_the_routes_over_raw_http(world: World) -> None:
    with world.http() as http:
        for body in ({"user_id": ACME, "dry_run": "yes"}, {"user_id": ACME, "purge": True}):
            bad = http.post("/v1/consolidate", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["type"] == "InvalidRequest"
        blank = http.post("/v1/consolidate", json={"user_id": " "})
        assert blank.status_code == 400
        missing = http.get("/v1/profile")
        assert missing.status_code == 400 and "user_id=" in missing.json()["error"]["message"]
        report = http.post("/v1/consolidate", json={"user_id": ACME}).json()
        merged = report["merged"][0]["ids"][0]
        # mem0's self-hosted paths take the flags too
        hidden = http.get("/memories", params={"user_id": ACME}).json()["results"]
        shown = http.get("/memories", params={"user_id": ACME, "include_merged": "true"}).json()["results"]
        assert merged not in {m["id"] for m in hidden} and merged in {m["id"] for m in shown}
        hits = http.post("/search", json={"query": "sushi", "user_id": ACME, "include_merged": True}).json()
        assert merged in {h["id"] for h in hits["results"]}
        assert http.post(f"/v1/memories/{merged}/restore").status_code == 200
        assert http.post("/v1/memories/nope/restore").status_code == 404
    audited = [r for r in KeyStore(settings_for(world.home).keys_path).audit.read() if r.get("memory_id") == merged]
    assert [r["action"] for r in audited] == ["restore"] and audited[0]["status"] == 200
    passes = [r for r in KeyStore(settings_for(world.home).keys_path).audit.read() if r["action"] == "consolidate"]
    assert passes[-1]["scope"] == {"user_id": ACME, "agent_id": None, "run_id": None} and passes[-1]["merged"] == 2
    assert "sushi" not in json.dumps(passes)  # ids and counts, never memory text


# -- the scheduler, in process ---------------------------------------------------------------------------
def test_intervals_are_read_as_people_write_them() -> None:
    assert [parse_interval(t) for t in ("30s", "15m", "1h", "1d", "1.5h", "90", " 2 M ")] == [
        30, 900, 3600, 86400, 5400, 90, 120
    ]  # fmt: skip
    for bad in ("", "0s", "-1h", "1w", "h", "1h30m", "nan"):
        with pytest.raises(InvalidRequest, match="not an interval"):
            parse_interval(bad)


class Epoch:
    """A settable epoch clock for the lease."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _engines(kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock) -> list[Memory]:
    """Two engines on one store, as two server processes have: a SQLite file, or a PostgreSQL database."""
    if kind == "sqlite":
        stores: list[dict[str, Any]] = [{"path": tmp_path / "m.db"} for _ in range(2)]
    else:
        url = request.getfixturevalue("migrated_postgres_url")
        stores = [{"store": PostgresStore(url, max_size=2, timeout=10.0)} for _ in range(2)]
    return [Memory(**store, embedder=HashEmbedder(), clock=clock, config=CONFIG) for store in stores]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_lease_lets_one_pass_run_and_a_crashed_holder_lapse(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    clock, epoch = FrozenClock(T0), Epoch()
    first, second = _engines(kind, request, tmp_path, clock)
    with first, second:
        fill(first, clock)
        second.get_all(user_id=ACME, limit=1)  # opens its store
        assert second.store.lease(LEASE, "crashed-holder", 600, epoch.now)  # took it, then died
        mine = ConsolidationScheduler(lambda: first, 60, holder="mine", clock=epoch)
        assert mine.run_due() is None and len(first.get_all(user_id=ACME)["results"]) == 5
        epoch.now += 601  # the crashed holder's lease lapses
        report = mine.run_due()
        assert report is not None and sum(len(m["ids"]) for m in report["merged"]) == 4
        other = ConsolidationScheduler(lambda: second, 60, holder="other", clock=epoch)
        epoch.now += 30  # within mine's cooldown: nobody runs, mine is not due either
        assert other.run_due() is None and mine.run_due() is None
        epoch.now += 31  # due again: mine runs (its next look is at the end of the cooldown)
        assert mine.run_due() is not None and other.run_due() is None
        epoch.now += 61  # mine is gone (never looks again): the other runs once the cooldown lapses
        assert other.run_due() is not None


class SlowMemory:
    """A fake engine: the real store, and a pass that waits between its two scopes until told to go on."""

    def __init__(self, memory: Memory) -> None:
        self.store = memory.store
        self.started, self.go_on = threading.Event(), threading.Event()

    def get_all(self, **scope: Any) -> dict[str, Any]:
        return {"results": []}

    def consolidate(self, *, progress: Callable[[int, int], None]) -> ConsolidationReport:
        progress(1, 2)
        self.started.set()
        assert self.go_on.wait(30)
        progress(2, 2)
        return ConsolidationReport(
            dry_run=False, scopes=2, examined=0, merged=[], superseded=[], summaries=[], archived=[], profiles=[],
            skipped=[], usage={"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}, seconds=0.0,
        )  # fmt: skip


def test_no_second_pass_while_one_runs_and_a_stopped_pass_frees_the_lease(tmp_path: Path) -> None:
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        memory.get_all(user_id="open-the-store")
        slow = SlowMemory(memory)
        first = ConsolidationScheduler(lambda: slow, 0.05)  # type: ignore[arg-type, return-value]
        second = ConsolidationScheduler(lambda: memory, 0.05)
        first.start()
        assert slow.started.wait(30)
        assert second.run_due() is None  # the first holds the lease mid-pass
        first.stop(timeout=0.1)  # asks the pass to stop at its next scope
        slow.go_on.set()
        first.stop()
        assert memory.store.lease(LEASE, second.holder, 1, time.time())  # released: free at once


# -- two real `memlane serve` processes on one SQLite file -------------------------------------------------
HASH = "consolidate-test-hash"
SITE = f"""
from memlane.providers import registry
from memlane.testing import HashEmbedder

registry.add_embedder({HASH!r}, lambda config: HashEmbedder())
"""
ENV_KEYS = ("MEMLANE_HOME", "MEMLANE_CONFIG", "MEMLANE_URL", "MEMLANE_API_KEY", "MEMLANE_JSON", "MEMLANE_DEBUG",
            "MEMLANE_DATABASE_URL", "MEMLANE_SERVER_SETTINGS", "MEMLANE_SERVE_DATABASE_URL")  # fmt: skip


def _serve(tmp: Path, home: Path, index: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    port, log = closed_port(), tmp / f"serve{index}.log"
    command = [sys.executable, "-m", "memlane", "--home", str(home), "--config", str(tmp / "config.json"), "serve",
               "--no-auth", "--port", str(port), "--consolidate-every", "1s", "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, f"http://127.0.0.1:{port}", log


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _passes(home: Path) -> list[dict[str, Any]]:
    """The scheduled passes the servers of ``home`` recorded in its audit log."""
    keys = KeyStore(home / "keys.db")
    try:
        return [r for r in keys.audit.read() if r.get("by") == "scheduler"]
    finally:
        keys.close()


@pytest.mark.slow
def test_two_servers_share_one_scheduled_pass(tmp_path: Path) -> None:
    site, home = tmp_path / "site", tmp_path / "home"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE, encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps({"embedder": {"provider": HASH}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    servers = [_serve(tmp_path, home, i, env) for i in range(2)]
    try:
        for _, url, log in servers:
            _until(f"{url} ready ({log})", lambda u=url: httpx.get(f"{u}/readyz", timeout=2).status_code == 200)
        clients = [MemoryClient(url, retries=0) for _, url, _ in servers]
        for client, user in zip(clients, ("a", "b"), strict=True):
            for text in DUPLICATES:
                client.add(text, user_id=user, infer=False)
        for client, user in zip(clients, ("a", "b"), strict=True):  # merged by the schedule, no call
            _until(f"{user}'s duplicates merged", lambda c=client, u=user: len(c.get_all(user_id=u)["results"]) == 1)
        merged = [m for user in "ab" for m in clients[0].get_all(user_id=user, include_merged=True)["results"]]
        assert sum(m.get("state") == "merged" for m in merged) == 4
        for m in merged:  # each merge happened once, by one pass
            assert [e["event"] for e in clients[1].history(m["id"])].count("MERGE") == (m.get("state") == "merged")
        # the server whose process ran the last pass stops (cleanly); the other takes the schedule over
        last = max(_passes(home), key=lambda r: r["started_at"])
        runner = next(
            i for i, (process, _, _) in enumerate(servers) if last["holder"].split(":")[1] == str(process.pid)
        )
        servers[runner][0].terminate()
        # uvicorn shuts down gracefully, then exits by the signal it caught
        assert servers[runner][0].wait(30) in (0, -signal.SIGTERM)
        assert "Traceback" not in servers[runner][2].read_text()
        survivor = clients[1 - runner]
        for text in DUPLICATES:
            survivor.add(text, user_id="c", infer=False)
        _until("c's duplicates merged by the other server", lambda: len(survivor.get_all(user_id="c")["results"]) == 1)
        for client in clients:
            client.close()
    finally:
        for process, _, _ in servers:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
    passes = sorted(_passes(home), key=lambda r: r["started_at"])
    assert len({r["holder"] for r in passes}) == 2, passes
    # a pass cut short by the shutdown (between two scopes) is recorded as such
    assert all(r["status"] == "ok" or r.get("error") == "stopped" for r in passes), passes
    for before, after in itertools.pairwise(passes):
        # one pass at a time across both processes and, after a finished pass, none for an interval
        gap = datetime.fromisoformat(after["started_at"]) - datetime.fromisoformat(before["finished_at"])
        assert gap.total_seconds() >= (0.99 if before["status"] == "ok" else 0), (before, after)


def test_with_an_llm_supersessions_and_summaries_come_through_whole(
    server: tuple[Any, str, str, str, Path], tmp_path: Path
) -> None:
    """A server whose Memory has a (scripted) model: the report, the summary's sources and the
    superseded memory's history read the same through the client as through Memory."""
    from memlane.testing import FakeLLM

    def judge(request: Any) -> dict[str, Any]:
        ids = {line.split(": ", 1)[1].rsplit(" (", 1)[0]: line.split(":")[0] for line in request.user.splitlines()
               if line.startswith("m")}  # fmt: skip
        if "Lives in Berlin" in ids and "Moved to Lisbon" in ids:
            return {"merges": [], "supersedes": [{"old": ids["Lives in Berlin"], "new": ids["Moved to Lisbon"]}]}
        return {"merges": [], "supersedes": []}

    answers = {"consolidation": judge, "summary": {"summary": "Ana moved and planned a trip."}, "profile": {}}
    llm = FakeLLM(
        default=lambda r: answers[r.schema_name](r) if callable(answers[r.schema_name]) else answers[r.schema_name]
    )
    app, url, admin, _, _ = server
    clock = FrozenClock(T0)
    config = {"consolidation": {"llm_cosine": 0.0, "min_episode": 3}}
    with Memory(path=tmp_path / "llm.db", embedder=HashEmbedder(), clock=clock, llm=llm, config=config) as memory:
        for text in ("Lives in Berlin", "Booked a flight", "Packed the bags", "Moved to Lisbon"):
            memory.add(text, user_id=ACME, infer=False)
            clock.advance(minutes=5)
        clock.advance(hours=5)
        idle = app.state.memlane.memory
        app.state.memlane.use(memory)
        try:
            with MemoryClient(url, api_key=admin, retries=0) as client:
                report = client.consolidate(user_id=ACME)
                (gone,) = report["superseded"]
                (summary,) = report["summaries"]
                assert gone["memory"] == "Lives in Berlin" and summary["memory"] == "Ana moved and planned a trip."
                item = client.get(summary["id"] or "", include_sources=True)
                assert item == memory.get(summary["id"] or "", include_sources=True)
                assert [s.get("memory_id") for s in item["sources"]] == summary["sources"]
                assert [e["event"] for e in client.history(gone["id"])] == ["ADD", "DELETE"]
                with pytest.raises(MemoryNotFound):
                    client.get(gone["id"])
        finally:
            app.state.memlane.use(idle)
