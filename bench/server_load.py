"""Server load benchmark: concurrent ``MemoryClient``s adding and searching over loopback.

Starts a real ``memlane serve`` (the CLI, ``--workers W``, auth on, the real default embedder:
all-MiniLM-L6-v2 int8 ONNX) on a temporary home with an admin key made by ``memlane keys create``,
waits for ``/readyz``, preloads memories spread over users (the LoCoMo turns of
``../shared/data/locomo-dev`` when present, else synthetic sentences), runs a short warm-up, then
runs N client threads for a fixed time, each with its own ``MemoryClient`` (no retries), each
request an add (one unique message, ``infer=False``) or a search (limit 10) in a random user's scope.

Reports throughput (requests/s, adds/s, searches/s), add and search latency p50/p95/p99, and errors
by type (429s included: the server gets a rate limit far above what it can serve, so the figures
measure capacity, not the limiter). Then it checks every acknowledged add against the server, paging
through ``get_all`` per scope with cursors: each must be there exactly once, under the id it was
acknowledged with ("lost: 0, duplicated: 0"); otherwise it exits with status 1.

    python bench/server_load.py                        # 8 clients, 20 s, 2 workers, 30% adds
    python bench/server_load.py --workers 1 --json out.json
    python bench/server_load.py --url http://127.0.0.1:8420 --api-key mlk_...   # an existing server

The client threads share the machine with the server: on a small machine they take part of its CPU.
Everything is written to a temporary directory that is removed at the end; against ``--url`` the
benchmark's own scopes are purged afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from locomo import DEFAULT_DATA, load_turns
from scale import corpus

from memlane import MemoryClient

PRELOAD_BATCH = 50  # messages per preload add
PAGE = 500  # get_all page size when verifying


# -- the server --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _child_env(home: Path) -> dict[str, str]:
    """This environment without memlane's own variables: the server reads only the temporary home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLANE_")}
    env["MEMLANE_HOME"] = str(home)
    return env


def _memlane(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "memlane", "--home", str(home), *args]


def _admin_token(home: Path) -> str:
    out = subprocess.run(
        _memlane(home, "--json", "keys", "create", "--admin", "--name", "bench"),
        env=_child_env(home), capture_output=True, text=True, check=True,
    )  # fmt: skip
    token: str = json.loads(out.stdout)["token"]
    return token


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"memlane serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"memlane serve was not ready after {timeout:g} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def local_server(workers: int) -> Iterator[tuple[str, str, Path]]:
    """``memlane serve`` on a free loopback port and a temporary home; yields (url, admin token, its log)."""
    home = Path(tempfile.mkdtemp(prefix="memlane-load-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        token = _admin_token(home)
        port = _free_port()
        log = home / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _memlane(home, "serve", "--port", str(port), "--workers", str(workers),
                         "--rate-limit", "1000000", "--log-level", "warning"),
                env=_child_env(home), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, log)
        yield url, token, log
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(home, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts its workers down), then SIGKILL to the server's own process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group is the server and its workers
    proc.wait(timeout=10)


# -- the data ----------------------------------------------------------------------------------
def load_corpus(data: Path, limit: int) -> tuple[list[dict[str, str]], list[str], str]:
    """(messages to preload, search queries, where they came from)."""
    files = sorted(data.glob("*.json")) if data.is_dir() else []
    if not files:
        texts = corpus(limit + 500, seed=11)
        messages = [{"role": "user", "content": t} for t in texts[:limit]]
        return messages, texts[limit:], "synthetic sentences (bench/scale.py templates)"
    messages, queries = [], []
    for f in files:
        conv = json.loads(f.read_text())
        messages += [{"role": "user", "content": text, "name": who} for _, who, text, _ in load_turns(conv)]
        queries += [str(qa["question"]) for qa in conv.get("qa", []) if qa.get("question")]
    return messages[:limit], queries, f"LoCoMo turns ({data})"


def preload(url: str, token: str, messages: list[dict[str, str]], users: list[str], threads: int) -> float:
    """Store the messages verbatim, round-robin over the users, from parallel clients; returns seconds taken."""
    per_user: dict[str, list[dict[str, str]]] = {u: [] for u in users}
    for i, message in enumerate(messages):
        per_user[users[i % len(users)]].append(message)

    def load(part: list[str]) -> None:
        with MemoryClient(url, api_key=token, retries=2, timeout=300) as client:
            for user in part:
                batch = per_user[user]
                for at in range(0, len(batch), PRELOAD_BATCH):
                    client.add(batch[at : at + PRELOAD_BATCH], user_id=user, infer=False)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(load, [users[i::threads] for i in range(threads)]))
    return time.perf_counter() - start


# -- the load ----------------------------------------------------------------------------------
@dataclass
class Tally:
    """What one client thread saw."""

    add_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # error type -> its first message
    acked: list[tuple[str, str, str]] = field(default_factory=list)  # (user, text, id)


def client_loop(
    number: int, url: str, token: str, users: list[str], queries: list[str], add_ratio: float,
    start: threading.Barrier, until: list[float], measuring: threading.Event, tally: Tally,
) -> None:  # fmt: skip
    rng = random.Random(number)
    seq = 0
    with MemoryClient(url, api_key=token, retries=0, timeout=60) as client:
        start.wait()
        while time.monotonic() < until[0]:
            user = rng.choice(users)
            adding = rng.random() < add_ratio
            t0 = time.perf_counter()
            try:
                if adding:
                    seq += 1
                    text = f"{rng.choice(queries)} (note {number}-{seq} {uuid.uuid4().hex[:8]})"
                    result = client.add(text, user_id=user, infer=False)
                    for item in result["results"]:
                        tally.acked.append((user, text, item["id"]))
                else:
                    client.search(rng.choice(queries), user_id=user, limit=10)
            except Exception as exc:  # counted, never fatal: MemlaneError, or a bug worth seeing
                if measuring.is_set():
                    tally.errors[type(exc).__name__] += 1
                    tally.examples.setdefault(type(exc).__name__, str(exc)[:300])
                continue
            if measuring.is_set():
                (tally.add_ms if adding else tally.search_ms).append((time.perf_counter() - t0) * 1000)


def run_load(
    url: str, token: str, users: list[str], queries: list[str], args: argparse.Namespace
) -> tuple[list[Tally], float]:
    """Warm up, then measure for ``args.seconds``; returns each thread's tally and the measured time."""
    tallies = [Tally() for _ in range(args.clients)]
    start = threading.Barrier(args.clients + 1)
    until = [float("inf")]
    measuring = threading.Event()
    threads = [
        threading.Thread(
            target=client_loop,
            args=(i, url, token, users, queries, args.add_ratio, start, until, measuring, tallies[i]),
            daemon=True,
        )
        for i in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(args.warmup)
    measuring.set()
    began = time.monotonic()
    until[0] = began + args.seconds
    for thread in threads:
        thread.join()
    return tallies, time.monotonic() - began


def verify(client: MemoryClient, acked: list[tuple[str, str, str]]) -> tuple[int, int]:
    """(lost, duplicated): every acknowledged add must be listed once, under its id."""
    lost = duplicated = 0
    by_user: dict[str, list[tuple[str, str]]] = {}
    for user, text, memory_id in acked:
        by_user.setdefault(user, []).append((text, memory_id))
    for user, expected in by_user.items():
        stored: dict[str, list[str]] = {}
        cursor: str | None = None
        while True:
            page = client.get_all(user_id=user, limit=PAGE, cursor=cursor)
            for item in page["results"]:
                stored.setdefault(item["memory"], []).append(item["id"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        for text, memory_id in expected:
            ids = stored.get(text, [])
            lost += memory_id not in ids
            duplicated += len(ids) > 1
    return lost, duplicated


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else 0.0


def summarise(tallies: list[Tally], seconds: float) -> dict[str, Any]:
    add_ms = [ms for t in tallies for ms in t.add_ms]
    search_ms = [ms for t in tallies for ms in t.search_ms]
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for t in tallies:
        errors.update(t.errors)
        examples = {**t.examples, **examples}
    return {
        "requests_per_s": round((len(add_ms) + len(search_ms)) / seconds, 1),
        "adds_per_s": round(len(add_ms) / seconds, 1),
        "searches_per_s": round(len(search_ms) / seconds, 1),
        "adds": len(add_ms),
        "searches": len(search_ms),
        "add_ms": {f"p{q}": percentile(add_ms, q / 100) for q in (50, 95, 99)},
        "search_ms": {f"p{q}": percentile(search_ms, q / 100) for q in (50, 95, 99)},
        "errors": dict(errors),
        "error_examples": examples,
        "rate_limited": errors.get("RateLimited", 0),
    }


def report(result: dict[str, Any]) -> None:
    a, s = result["add_ms"], result["search_ms"]
    print(
        f"{result['clients']} clients x {result['seconds']:g} s, {result['workers'] or '?'} workers, "
        f"{round(100 * result['add_ratio'])}% adds, {result['cpus']} CPUs (load {result['loadavg_before']} before); "
        f"preloaded {result['preloaded']} "
        f"memories over {result['users']} users in {result['preload_s']} s ({result['data']})"
    )
    columns = ("req/s", "adds/s", "searches/s", "add p50/p95/p99 ms", "search p50/p95/p99 ms", "errors", "429s")
    row = (
        result["requests_per_s"], result["adds_per_s"], result["searches_per_s"],
        f"{a['p50']} / {a['p95']} / {a['p99']}", f"{s['p50']} / {s['p95']} / {s['p99']}",
        sum(result["errors"].values()), result["rate_limited"],
    )  # fmt: skip
    widths = [max(len(c), len(str(v))) for c, v in zip(columns, row, strict=True)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)))
    for kind, count in sorted(result["errors"].items()):
        print(f"  error {kind}: {count}, e.g. {result['error_examples'][kind]}")
    print(f"acknowledged adds: {result['acked']}; lost: {result['lost']}, duplicated: {result['duplicated']}")


def bench(url: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    run = uuid.uuid4().hex[:6]
    users = [f"load-{run}-u{i:03d}" for i in range(args.users)]
    messages, queries, source = load_corpus(args.data, args.preload)
    with MemoryClient(url, api_key=token, retries=2, timeout=300) as admin:
        try:
            preload_s = preload(url, token, messages, users, args.clients)
            tallies, seconds = run_load(url, token, users, queries, args)
            acked = [a for t in tallies for a in t.acked]
            lost, duplicated = verify(admin, acked)
        finally:
            if args.url:  # an existing server: leave it as it was
                for user in users:
                    admin.delete_all(user_id=user, purge=True)
    return {
        "url": url if args.url else "memlane serve (temporary home)",
        "workers": None if args.url else args.workers,
        "clients": args.clients,
        "seconds": args.seconds,
        "add_ratio": args.add_ratio,
        "cpus": os.cpu_count(),
        "loadavg_before": round(load_before, 2),  # other work on the machine skews the figures
        "platform": platform.platform(),
        "data": source,
        "users": len(users),
        "preloaded": len(messages),
        "preload_s": round(preload_s, 1),
        "measured_s": round(seconds, 2),
        **summarise(tallies, seconds),
        "acked": len(acked),
        "lost": lost,
        "duplicated": duplicated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (memlane serve --workers)")
    parser.add_argument("--add-ratio", type=float, default=0.3, help="share of requests that are adds")
    parser.add_argument("--users", type=int, default=50, help="scopes the memories and requests spread over")
    parser.add_argument("--preload", type=int, default=1000, help="memories stored before the load (at most)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo folder (synthetic text if absent)")
    parser.add_argument("--url", default=None, help="benchmark this running server instead of starting one")
    parser.add_argument("--api-key", default=os.environ.get("MEMLANE_API_KEY"), help="admin key for --url")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.workers < 1 or not 0 <= args.add_ratio <= 1 or args.users < 1:
        parser.error("--clients, --workers and --users must be >= 1, --seconds > 0, --add-ratio in [0, 1]")
    if args.url:
        if not args.api_key:
            parser.error("--url needs --api-key (an admin key; or set MEMLANE_API_KEY)")
        result = bench(args.url.rstrip("/"), args.api_key, args)
    else:
        with local_server(args.workers) as (url, token, log):
            result = bench(url, token, args)
            if result["errors"]:  # the server's side of them, before its home is removed
                print(f"-- last lines of the server log --\n{log.read_text(errors='replace')[-6000:]}", file=sys.stderr)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result["lost"] or result["duplicated"] or not result["acked"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
