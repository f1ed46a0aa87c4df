"""Two real ``memlane serve`` processes on one PostgreSQL database, as behind a load balancer.

They share nothing but the database (each has its own home, so no ``keys.db`` to share), and must
still agree on API keys, revocations, rate limits and the audit log:

- a key revoked through the CLI is refused (401) by both servers within a second;
- a tenant key's rate limit holds across both (accepted over both ~ the limit, not twice it);
- 16 clients spread over both, 500 mixed operations each (verbatim adds, searches, gets,
  deletes), lose nothing, duplicate nothing and see no 5xx; every audited request is in the
  database's audit log.

The servers use the hash embedder (registered through ``sitecustomize``, as in
``test_postgres_cli``): the point is the cluster, not embeddings. The fast tests at the end run
``memlane keys`` and ``memlane info`` on PostgreSQL in process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from wire_server import closed_port

from memlane.cli import cli
from memlane.server import PostgresKeyStore
from memlane.testing._postgres import LocalPostgres

HASH = "cluster-test-hash"
SITE = f"""
from memlane.providers import registry
from memlane.testing import HashEmbedder

registry.add_embedder({HASH!r}, lambda config: HashEmbedder())
"""
ENV_KEYS = ("MEMLANE_HOME", "MEMLANE_CONFIG", "MEMLANE_URL", "MEMLANE_API_KEY", "MEMLANE_JSON", "MEMLANE_DEBUG",
            "MEMLANE_DATABASE_URL", "MEMLANE_SERVER_SETTINGS", "MEMLANE_SERVE_DATABASE_URL")  # fmt: skip
CLEAN_ENV: Mapping[str, str | None] = {**dict.fromkeys(ENV_KEYS), "COLUMNS": "200"}
CLIENTS, OPERATIONS = 16, 500
# The operation mix: each is picked while a random roll is under its bound (adds 40%, searches 25%, ...).
MIX = (("add", 0.4), ("search", 0.65), ("get", 0.85), ("delete", 1.01))


def memlane_cli(home: Path, *args: str) -> Any:
    """``memlane --home HOME --json ARGS`` in process; its JSON output."""
    result = CliRunner().invoke(cli, ["--home", str(home), "--json", *args], env=dict(CLEAN_ENV))
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return json.loads(result.stdout)


@dataclass
class Server:
    home: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM, as a process manager stops a server: a clean shutdown."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Cluster:
    database_url: str
    servers: list[Server] = field(default_factory=list)

    def key(self, name: str, **kind: Any) -> tuple[str, str]:
        """A new key, made with ``memlane keys create`` on the first server's host: (id, token)."""
        flags = ["--admin"] if kind.get("admin") else ["--namespace", kind["namespace"]]
        if kind.get("rate_limit") is not None:
            flags += ["--rate-limit", str(kind["rate_limit"])]
        created = memlane_cli(self.servers[0].home, "keys", "create", "--name", name, *flags,
                              "--database-url", self.database_url)  # fmt: skip
        return created["key"]["id"], created["token"]


def _start(tmp: Path, index: int, database_url: str, env: dict[str, str]) -> Server:
    home, log = tmp / f"home{index}", tmp / f"serve{index}.log"
    port = closed_port()
    command = [sys.executable, "-m", "memlane", "--home", str(home), "--config", str(tmp / "config.json"), "serve",
               "--database-url", database_url, "--port", str(port), "--rate-limit", "100000",
               "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Server(home, f"http://127.0.0.1:{port}", process, log)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 90
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"memlane serve exited with {server.process.returncode}: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"memlane serve was not ready within 90 s: {server.log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(postgres_server: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two ``memlane serve`` processes (own homes, own ports) on one fresh database."""
    tmp = tmp_path_factory.mktemp("cluster")
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE, encoding="utf-8")
    (tmp / "config.json").write_text(json.dumps({"embedder": {"provider": HASH}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    name = f"cluster_{uuid.uuid4().hex[:8]}"
    built = Cluster(postgres_server.create_database(name))
    try:
        built.servers = [_start(tmp, i, built.database_url, env) for i in range(2)]
        for server in built.servers:
            _wait_ready(server)
        yield built
    finally:
        for server in built.servers:
            server.stop()
        postgres_server.drop_database(name)
    for server in built.servers:
        # A clean stop: uvicorn re-raises the SIGTERM it handled once its shutdown (audit flush) is done.
        log = server.log.read_text(errors="replace")
        assert server.process.returncode in (0, -signal.SIGTERM), log[-3000:]
        assert "Traceback" not in log and "audit record" not in log, log[-3000:]
        assert not (server.home / "keys.db").exists() and not (server.home / "audit.log").exists()


def _get(url: str, token: str, user_id: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/memories", params={"user_id": user_id}, timeout=10,
                     headers={"authorization": f"Bearer {token}"})  # fmt: skip


# -- revocation -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_key_revoked_through_the_cli_is_refused_by_both_servers_at_once(cluster: Cluster) -> None:
    _, token = cluster.key("soon-revoked", namespace="rev")
    a, b = (s.url for s in cluster.servers)
    assert _get(a, token, "rev:alice").status_code == 200  # a key made after both started works on both
    assert _get(b, token, "rev:alice").status_code == 200
    revoked = memlane_cli(cluster.servers[0].home, "keys", "revoke", "soon-revoked",
                          "--database-url", cluster.database_url)  # fmt: skip
    assert revoked["revoked_at"] is not None
    revoked_at = time.monotonic()
    while (response := _get(b, token, "rev:alice")).status_code != 401:
        assert response.status_code == 200, response.text
        assert time.monotonic() - revoked_at < 1.0, "the other server still accepts a key revoked a second ago"
    assert time.monotonic() - revoked_at < 1.0
    assert response.json()["error"]["type"] == "AuthenticationError"
    assert _get(a, token, "rev:alice").status_code == 401


# -- rate limits ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_tenant_keys_rate_limit_holds_across_both_servers(cluster: Cluster) -> None:
    rate, burst, window = 5.0, 10.0, 2.0  # a key's burst is twice its rate
    _, token = cluster.key("metered", namespace="meter", rate_limit=rate)
    statuses: Counter[tuple[int, int]] = Counter()
    retry_after: set[str] = set()
    lock = threading.Lock()
    started = time.monotonic()

    def hammer(offset: int) -> None:
        with httpx.Client(timeout=10, headers={"authorization": f"Bearer {token}"}) as http:
            turn = offset
            while time.monotonic() - started < window:
                server = turn % 2
                turn += 1
                response = http.get(f"{cluster.servers[server].url}/v1/memories", params={"user_id": "meter:a"})
                with lock:
                    statuses[server, response.status_code] += 1
                    if response.status_code == 429:
                        retry_after.add(response.headers["retry-after"])

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    accepted = statuses[0, 200] + statuses[1, 200]
    assert set(status for _, status in statuses) == {200, 429}, statuses
    assert statuses[0, 200] > 0 and statuses[1, 200] > 0, statuses  # both servers took part
    allowed = burst + rate * elapsed
    # One bucket for both: at most what the key's rate allows (with a per-server bucket: twice it).
    assert burst + rate * window * 0.6 <= accepted <= allowed + 1, (accepted, allowed, statuses)
    assert statuses[0, 429] + statuses[1, 429] > 2 * accepted, statuses  # the clients did push past it
    assert retry_after == {"1"}


# -- load -------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """What one client was acknowledged, and every unexpected answer it got."""

    user: str
    acked: dict[str, str] = field(default_factory=dict)
    audited: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def _client_run(number: int, token: str, urls: list[str]) -> Tally:
    """500 mixed operations, alternating between the servers, checking each answer."""
    rng = random.Random(number)
    tally = Tally(user=f"load{number}:alice")
    https = [httpx.Client(base_url=url, timeout=60, headers={"authorization": f"Bearer {token}"}) for url in urls]
    try:
        for i in range(OPERATIONS):
            http = https[i % 2]
            roll = rng.random()
            op = next(name for name, upto in MIX if roll < upto) if tally.acked else "add"
            tally.operations[op] += 1
            try:
                _operation(op, http, rng, tally)
            except AssertionError as exc:
                tally.problems.append(f"{op} on {http.base_url}: {exc}")
    finally:
        for http in https:
            http.close()
    return tally


def _operation(op: str, http: httpx.Client, rng: random.Random, tally: Tally) -> None:
    if op == "add":
        text = f"{tally.user} note {uuid.uuid4().hex[:12]} about harbour crane {rng.randrange(10_000)}"
        response = http.post("/v1/memories", json={"messages": text, "user_id": tally.user, "infer": False})
        tally.audited += 1
        assert response.status_code == 200, (response.status_code, response.text)
        results = response.json()["results"]
        assert [r["event"] for r in results] == ["ADD"], results
        tally.acked[results[0]["id"]] = text
    elif op == "search":
        query = rng.choice(list(tally.acked.values()))
        response = http.post("/v1/memories/search", json={"query": query, "user_id": tally.user, "limit": 5})
        assert response.status_code == 200, (response.status_code, response.text)
        hits = response.json()["results"]
        assert hits and all(h["user_id"] == tally.user for h in hits), hits
    elif op == "get":
        memory_id = rng.choice(list(tally.acked))
        response = http.get(f"/v1/memories/{memory_id}")
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.json()["memory"] == tally.acked[memory_id]
    else:
        memory_id = rng.choice(list(tally.acked))
        response = http.delete(f"/v1/memories/{memory_id}")
        tally.audited += 1
        assert response.status_code == 200, (response.status_code, response.text)
        del tally.acked[memory_id]


def _stored(url: str, token: str, user: str) -> list[tuple[str, str]]:
    """Every memory of ``user``, page by page: (id, text)."""
    out: list[tuple[str, str]] = []
    params: dict[str, Any] = {"user_id": user, "limit": 100}
    with httpx.Client(base_url=url, timeout=60, headers={"authorization": f"Bearer {token}"}) as http:
        while True:
            page = http.get("/v1/memories", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            out += [(m["id"], m["memory"]) for m in body["results"]]
            if not body.get("next_cursor"):
                return out
            params["cursor"] = body["next_cursor"]


@pytest.mark.slow
def test_sixteen_clients_over_both_servers_lose_and_duplicate_nothing(cluster: Cluster) -> None:
    store = PostgresKeyStore(cluster.database_url)  # keys made in bulk, straight into the shared store
    keys = [store.create(f"load{i}", namespace=f"load{i}") for i in range(CLIENTS)]
    store.close()
    urls = [s.url for s in cluster.servers]
    tallies: list[Tally] = [Tally(user="")] * CLIENTS

    def run(i: int) -> None:
        tallies[i] = _client_run(i, keys[i][1], urls)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    problems = [p for t in tallies for p in t.problems]
    assert not problems, f"{len(problems)} unexpected answers, e.g. {problems[:5]}"
    assert sum(sum(t.operations.values()) for t in tallies) == CLIENTS * OPERATIONS
    for i, tally in enumerate(tallies):
        stored = _stored(urls[(i + 1) % 2], keys[i][1], tally.user)
        assert len(stored) == len({memory_id for memory_id, _ in stored}), "a memory is listed twice"
        assert dict(stored) == tally.acked, f"client {i}: the store differs from what it was acknowledged"
    with psycopg.connect(cluster.database_url) as conn:
        total = conn.execute("SELECT count(*) FROM memlane.memories WHERE user_id LIKE 'load%%'").fetchone()
        assert total is not None and total[0] == sum(len(t.acked) for t in tallies)
        # Every audited request is in the shared audit log (written off the request path: wait briefly).
        deadline = time.monotonic() + 5
        while True:
            row = conn.execute("SELECT count(*) FROM memlane.audit_log WHERE key_id = ANY(%s)",
                               ([key.id for key, _ in keys],)).fetchone()  # fmt: skip
            if (row is not None and row[0] == sum(t.audited for t in tallies)) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert row is not None and row[0] == sum(t.audited for t in tallies)


# -- memlane keys and info on PostgreSQL (fast, in process) --------------------------------------------
def test_memlane_keys_manage_the_postgres_key_store(postgres_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = memlane_cli(home, "keys", "create", "--name", "ops", "--admin", "--database-url", postgres_url)
    tenant = memlane_cli(home, "--database-url", postgres_url, "keys", "create", "--name", "acme",
                         "--namespace", "acme", "--rate-limit", "5")  # fmt: skip
    store = PostgresKeyStore(postgres_url)
    try:
        assert store.authenticate(created["token"]) is not None and store.authenticate(tenant["token"]) is not None
        listed = memlane_cli(home, "keys", "list", "--database-url", postgres_url)
        assert [k["name"] for k in listed] == ["ops", "acme"] and listed[1]["rate_limit"] == 5.0
        memlane_cli(home, "keys", "revoke", "acme", "--database-url", postgres_url)
        assert store.authenticate(tenant["token"]) is None
        assert [k["name"] for k in memlane_cli(home, "keys", "list", "--all", "--database-url", postgres_url)] == [
            "ops",
            "acme",
        ]
    finally:
        store.close()
    assert not (home / "keys.db").exists()  # nothing went to the home
    # MEMLANE_DATABASE_URL picks the same store, as for memlane serve.
    env = {**CLEAN_ENV, "MEMLANE_DATABASE_URL": postgres_url}
    result = CliRunner().invoke(cli, ["--home", str(home), "--json", "keys", "list"], env=env)
    assert result.exit_code == 0 and [k["name"] for k in json.loads(result.stdout)] == ["ops"]
    info = memlane_cli(home, "--database-url", postgres_url, "info")
    assert info["keys"]["tables"] == ["memlane.api_keys", "memlane.rate_buckets"]
    assert info["audit_log"]["table"] == "memlane.audit_log" and "postgres" in info["audit_log"]["store"]
