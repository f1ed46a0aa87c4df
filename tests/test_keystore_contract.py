"""The key-store contract (``memlane.server.keys.KeyStore``) run over both backends.

Each test gets ``keys``, a factory of new handles on one fresh backing store: ``keys.db`` and
``audit.log`` in tmp_path (SQLite), or a fresh database on the session's real PostgreSQL. Two
handles stand for two servers on one store. What only PostgreSQL promises (buckets shared by
every server, its migrations) is tested after the contract, on PostgreSQL alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import psycopg
import pytest
from server_harness import serving, settings_for

from memlane import AuthenticationError, InvalidRequest, Memory, MemoryNotFound, RateLimited, StoreError
from memlane.server import KeyStore, PostgresKeyStore, SQLiteKeyStore, create_app, key_store_for
from memlane.server.audit_postgres import PostgresAuditLog
from memlane.server.postgres_schema import SERVER_MIGRATIONS
from memlane.testing import HashEmbedder

Keys = Callable[[], KeyStore]


def _sqlite(request: pytest.FixtureRequest) -> Keys:
    home: Path = request.getfixturevalue("tmp_path") / "home"
    return lambda: SQLiteKeyStore(home / "keys.db")


def _postgres(request: pytest.FixtureRequest) -> Keys:
    url: str = request.getfixturevalue("postgres_url")
    return lambda: PostgresKeyStore(url)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Keys]] = {"sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(BACKENDS))
def keys(request: pytest.FixtureRequest) -> Iterator[Keys]:
    """New handles on one fresh key store of the backend; every handle is closed afterwards."""
    make = BACKENDS[request.param](request)
    handles: list[KeyStore] = []

    def factory() -> KeyStore:
        handles.append(make())
        return handles[-1]

    yield factory
    for handle in handles:
        handle.close()


@pytest.fixture
def pg_keys(postgres_url: str) -> Iterator[Keys]:
    """``keys`` on PostgreSQL only."""
    handles: list[KeyStore] = []

    def factory() -> KeyStore:
        handles.append(PostgresKeyStore(postgres_url))
        return handles[-1]

    yield factory
    for handle in handles:
        handle.close()


# -- the contract ---------------------------------------------------------------------------------
def test_create_list_revoke_authenticate(keys: Keys) -> None:
    store, other = keys(), keys()
    assert store.list() == []
    admin, admin_token = store.create("ops", admin=True)
    tenant, tenant_token = store.create(" acme-prod ", namespace="acme", rate_limit=5)
    assert (tenant.name, tenant.role, tenant.namespace, tenant.rate_limit) == ("acme-prod", "tenant", "acme", 5.0)
    assert admin.is_admin and admin.namespace is None and admin.revoked_at is None
    assert admin_token.startswith(f"mlk_{admin.id}_")
    assert [k.id for k in other.list()] == [admin.id, tenant.id]  # oldest first, seen by every handle
    assert other.authenticate(tenant_token) == tenant
    assert other.authenticate(admin_token) == admin
    revoked = other.revoke("acme-prod")  # by name
    assert revoked.id == tenant.id and revoked.revoked_at is not None
    assert store.authenticate(tenant_token) is None  # at once, through the other handle
    assert [k.id for k in store.list()] == [admin.id]
    assert [(k.id, k.revoked_at is not None) for k in store.list(include_revoked=True)] == [
        (admin.id, False),
        (tenant.id, True),
    ]
    with pytest.raises(MemoryNotFound):
        store.revoke(tenant.id)  # already revoked
    with pytest.raises(MemoryNotFound):
        store.revoke("nobody")
    assert store.revoke(admin.id).id == admin.id  # by id
    assert store.list() == []


def test_a_name_shared_by_two_active_keys_is_revoked_by_id(keys: Keys) -> None:
    store = keys()
    first, _ = store.create("twin", admin=True)
    second, token = store.create("twin", namespace="acme")
    with pytest.raises(InvalidRequest, match="revoke one by its id"):
        store.revoke("twin")
    store.revoke(first.id)
    assert store.revoke("twin").id == second.id
    assert store.authenticate(token) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "x", "namespace": "ac:me"},
        {"name": "x", "admin": True, "namespace": "acme"},
        {"name": "x"},
        {"name": " ", "admin": True},
        {"name": "x" * 101, "admin": True},
        {"name": "x", "admin": True, "rate_limit": 0},
        {"name": "x", "admin": True, "rate_limit": 100_001},
    ],
)
def test_bad_keys_are_refused_and_nothing_is_stored(keys: Keys, kwargs: dict[str, object]) -> None:
    store = keys()
    with pytest.raises(InvalidRequest):
        store.create(**kwargs)  # type: ignore[arg-type]
    assert store.list(include_revoked=True) == []


def test_only_the_exact_token_authenticates(keys: Keys) -> None:
    store = keys()
    key, token = store.create("ops", admin=True)
    secret = token.removeprefix(f"mlk_{key.id}_")
    wrong = "A" * 43 if secret != "A" * 43 else "B" * 43
    for bad in ["", "mlk_", token + "x", token[:-1], f"mlk_{key.id}_{wrong}", f"mlk_{'0' * 16}_{secret}",
                token.upper(), f"Bearer {token}", token.replace("mlk_", "mlk-", 1)]:  # fmt: skip
        assert store.authenticate(bad) is None, bad
        with pytest.raises(AuthenticationError):
            store.admit(bad, rate=100)
    assert store.admit(token, rate=100) == key


def test_admit_spends_the_keys_own_rate_and_says_when_to_retry(keys: Keys) -> None:
    store = keys()
    _, default = store.create("default", admin=True)
    slow, own = store.create("slow", admin=True, rate_limit=0.5)
    # The server's rate (2/s) with its default burst (twice the rate): 4 at once, then 429.
    assert all(store.admit(default, rate=2.0).name == "default" for _ in range(4))
    with pytest.raises(RateLimited) as caught:
        store.admit(default, rate=2.0)
    assert 0 < caught.value.retry_after <= 0.5 and "2 requests/s" in str(caught.value)
    # A key's own rate wins (0.5/s: a burst of 1), and buckets are per key.
    assert store.admit(own, rate=1000.0) == slow
    with pytest.raises(RateLimited) as caught:
        store.admit(own, rate=1000.0)
    assert 1.5 < caught.value.retry_after <= 2.0
    # A fixed burst from the server applies to every key.
    _, fixed = store.create("fixed", admin=True)
    store.admit(fixed, rate=1.0, burst=1.0)
    with pytest.raises(RateLimited):
        store.admit(fixed, rate=1.0, burst=1.0)


def test_buckets_refill_with_time(keys: Keys) -> None:
    store = keys()
    _, token = store.create("ops", admin=True)
    store.admit(token, rate=20.0, burst=1.0)
    with pytest.raises(RateLimited) as caught:
        store.admit(token, rate=20.0, burst=1.0)
    time.sleep(caught.value.retry_after + 0.02)
    store.admit(token, rate=20.0, burst=1.0)


def test_a_wrong_secret_spends_nothing(keys: Keys) -> None:
    store = keys()
    key, token = store.create("ops", admin=True)
    forged = f"mlk_{key.id}_{'A' * 43}"
    for _ in range(10):  # the key id is public: guessing must not drain the key's bucket
        with pytest.raises(AuthenticationError):
            store.admit(forged, rate=1.0, burst=1.0)
    assert store.admit(token, rate=1.0, burst=1.0) == key


def test_take_limits_ids_that_are_not_keys(keys: Keys) -> None:
    store = keys()  # a --no-auth server's requests all spend the bucket of "anonymous"
    store.take("anonymous", 1.0, 2.0)
    store.take("anonymous", 1.0, 2.0)
    with pytest.raises(RateLimited) as caught:
        store.take("anonymous", 1.0, 2.0)
    assert 0 < caught.value.retry_after <= 1.0
    store.take("another", 1.0, 2.0)


def test_the_audit_log_keeps_every_record_in_order(keys: Keys) -> None:
    store = keys()
    assert store.audit.read() == []
    records = [{"request_id": f"r{i}", "key_id": "k1", "action": "add", "status": 200,
                "scope": {"user_id": "acme:alice", "agent_id": None, "run_id": None},
                "events": [[f"m{i}", "ADD"]], "purge": False} for i in range(250)]  # fmt: skip
    for record in records:
        store.audit.write(record)
    store.audit.write({"request_id": "last", "key_id": None, "action": "delete", "status": "MemoryNotFound"})
    read = store.audit.read(limit=1000)
    assert [{k: v for k, v in line.items() if k != "at"} for line in read[:-1]] == records
    assert read[-1] == {"at": read[-1]["at"], "request_id": "last", "key_id": None, "action": "delete",
                        "status": "MemoryNotFound"}  # fmt: skip
    assert all(line["at"].endswith("+00:00") for line in read)
    assert [line["request_id"] for line in store.audit.read(limit=2)] == ["r249", "last"]
    store.close()
    assert len(keys().audit.read(limit=1000)) == 251  # stored, and seen by another handle


def test_a_closed_store_reopens_on_use(keys: Keys) -> None:
    store = keys()
    _, token = store.create("ops", admin=True)
    store.audit.write({"action": "add"})
    store.close()
    assert store.admit(token, rate=10.0).name == "ops"
    store.audit.write({"action": "delete"})
    assert [line["action"] for line in store.audit.read()] == ["add", "delete"]


def test_key_store_for_follows_the_memory_store(tmp_path: Path, postgres_url: str) -> None:
    from memlane import MemoryConfig

    sqlite = key_store_for(MemoryConfig().store(), tmp_path)
    assert isinstance(sqlite, SQLiteKeyStore) and sqlite.path == tmp_path / "keys.db"
    config = MemoryConfig().with_database_url(postgres_url, schema="tenant_a")
    pg = key_store_for(config.store(), tmp_path)
    assert isinstance(pg, PostgresKeyStore) and pg.schema == "tenant_a" and pg.url == postgres_url
    assert isinstance(KeyStore(tmp_path / "keys.db"), SQLiteKeyStore)  # the old constructor still works
    pg.close()


# -- PostgreSQL only ------------------------------------------------------------------------------
def test_buckets_are_shared_and_exact_under_concurrency(pg_keys: Keys) -> None:
    """Two handles (two servers), eight threads each: exactly the burst is granted, never more."""
    stores = [pg_keys(), pg_keys()]
    _, token = stores[0].create("tenant", namespace="acme", rate_limit=0.001)
    granted, limited = [], []
    lock = threading.Lock()

    def hammer(store: KeyStore) -> None:
        for _ in range(15):
            try:
                store.admit(token, rate=50.0, burst=20.0)
                outcome = granted
            except RateLimited:
                outcome = limited
            with lock:
                outcome.append(1)

    threads = [threading.Thread(target=hammer, args=(stores[i % 2],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(granted), len(limited)) == (20, 16 * 15 - 20)


def test_server_tables_are_migrated_once_and_recorded_apart(pg_keys: Keys, postgres_url: str) -> None:
    stores = [pg_keys() for _ in range(4)]
    threads = [threading.Thread(target=s.list) for s in stores]  # first use migrates, all at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with psycopg.connect(postgres_url) as conn:
        applied = conn.execute("SELECT version, name FROM memlane.server_migrations").fetchall()
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'memlane'")}
    assert applied == [(v, n) for v, n, _ in SERVER_MIGRATIONS]
    assert tables == {"server_migrations", "api_keys", "rate_buckets", "audit_log"}  # no memory tables


def test_the_server_on_postgres_keys_shares_revocation_limits_and_audit(pg_keys: Keys, tmp_path: Path) -> None:
    admin_store, cli = pg_keys(), pg_keys()  # the server's handle, and one like `memlane keys`
    _, admin = cli.create("ops", admin=True)
    tenant, token = cli.create("acme", namespace="acme", rate_limit=1.0)
    settings = settings_for(tmp_path)
    with Memory(path=tmp_path / "m.db", embedder=HashEmbedder()) as memory:
        app = create_app(memory, settings, keys=admin_store)
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            auth = {"authorization": f"Bearer {token}"}
            added = http.post("/v1/memories", json={"messages": "acme alice likes tea", "user_id": "acme:alice",
                                                    "infer": False}, headers=auth)  # fmt: skip
            assert added.status_code == 200, added.text
            assert http.get("/v1/memories", params={"user_id": "acme:alice"}, headers=auth).status_code == 200
            limited = http.get("/v1/memories", params={"user_id": "acme:alice"}, headers=auth)
            assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
            assert limited.json()["error"]["type"] == "RateLimited"
            cli.revoke("acme")
            refused = http.get("/v1/memories", params={"user_id": "acme:alice"}, headers=auth)
            assert refused.status_code == 401 and refused.json()["error"]["type"] == "AuthenticationError"
            admin_auth = {"authorization": f"Bearer {admin}"}
            assert http.delete("/v1/memories", params={"user_id": "acme:alice"}, headers=admin_auth).status_code == 200
    assert not (tmp_path / "audit.log").exists()  # the records went to the database, all of them
    lines = cli.audit.read()
    assert [(line["key_id"], line["action"], line["status"]) for line in lines] == [
        (tenant.id, "add", 200),
        (cli.list()[0].id, "delete_all", 200),
    ]
    assert lines[0]["scope"]["user_id"] == "acme:alice" and "acme alice likes tea" not in str(lines)


# -- the audit writer when the database is away ------------------------------------------------------
class _Unreachable:
    """A connection source for PostgresAuditLog that fails like a database that is down (a fake)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> NoReturn:
        self.calls += 1
        raise StoreError("connection refused (the fake database is down)")


def test_audit_records_that_cannot_be_stored_by_close_go_to_the_server_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="memlane.server")
    source = _Unreachable()
    audit = PostgresAuditLog(source, '"memlane".audit_log', "the fake database", close_timeout=0.3)  # type: ignore[arg-type]
    audit.write({"request_id": "r1", "key_id": "k1", "action": "add", "status": 200})
    audit.write({"request_id": "r2", "key_id": "k1", "action": "delete", "status": 200})
    started = time.monotonic()
    audit.close()
    assert time.monotonic() - started < 6
    assert source.calls >= 2  # it kept retrying until close gave up
    lost = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lost) == 2 and '"request_id": "r1"' in lost[0] and '"request_id": "r2"' in lost[1]
