"""What API-key auth, the rate limit and the audit log cost a request, on SQLite and on PostgreSQL.

Starts a throwaway PostgreSQL (``memlane.testing._postgres.LocalPostgres``, fsync on) and times
the key store calls a request makes, in this process, against the same calls on ``keys.db``:

- ``admit``: authenticate a token and spend a token of its bucket (PostgreSQL: one statement);
- the same from T threads on one key (one bucket row: the hottest row a cluster has);
- ``audit.write``: what the request itself pays to be audited (PostgreSQL: a queue append).

    python bench/server_keys.py                 # 3,000 sequential admits, 8 threads x 500
    python bench/server_keys.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from memlane.server import KeyStore, PostgresKeyStore, SQLiteKeyStore
from memlane.testing._postgres import LocalPostgres


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sequential(store: KeyStore, token: str, n: int) -> dict[str, float]:
    """Milliseconds per ``admit``, one after the other (after 50 to warm the pool and prepare)."""
    for _ in range(50):
        store.admit(token, rate=1e5)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        store.admit(token, rate=1e5)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(pct(times, 0.99), 3)}


def concurrent(store: KeyStore, token: str, threads: int, each: int) -> dict[str, float]:
    """Admits per second of ``threads`` threads on one key (one bucket row)."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(each):
            store.admit(token, rate=1e5)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"threads": threads, "admits_per_s": round(threads * each / elapsed)}


def audit_cost(store: KeyStore, n: int) -> dict[str, float]:
    """Microseconds a request spends in ``audit.write``, and how long ``close`` takes to store the rest."""
    scope = {"user_id": "acme:alice", "agent_id": None, "run_id": None}
    record = {"request_id": "0123456789abcdef", "key_id": "0123456789abcdef", "action": "add", "status": 200,
              "scope": scope, "events": [["m", "ADD"]]}  # fmt: skip
    times = []
    for _ in range(n):
        started = time.perf_counter()
        store.audit.write(record)
        times.append((time.perf_counter() - started) * 1e6)
    started = time.perf_counter()
    store.close()
    return {"write_p50_us": round(statistics.median(times), 1), "write_p99_us": round(pct(times, 0.99), 1),
            "close_ms": round((time.perf_counter() - started) * 1000, 1)}  # fmt: skip


def measure(store: KeyStore, n: int, threads: int, each: int) -> dict[str, Any]:
    _, token = store.create("bench", admin=True)
    out: dict[str, Any] = {"admit": sequential(store, token, n)}
    out["admit_concurrent_one_key"] = concurrent(store, token, threads, each)
    out["audit"] = audit_cost(store, n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=3000, help="sequential admits and audit writes")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--each", type=int, default=500, help="admits per thread")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as home:
        results["sqlite"] = measure(SQLiteKeyStore(Path(home) / "keys.db"), args.n, args.threads, args.each)
    with LocalPostgres(durable=True) as pg:
        store = PostgresKeyStore(pg.create_database("bench"))
        results["postgres"] = measure(store, args.n, args.threads, args.each)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
