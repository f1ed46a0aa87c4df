"""MCP latency: what a host waits for, over stdio and streamable HTTP, against the embedded call itself.

Preloads 1,000 memories for one user (LoCoMo turns from ``../shared/data/locomo-dev`` when present,
else synthetic sentences) with the real default embedder, then for each transport starts the real
``memlane mcp`` process (stdio: spawned by the SDK's client, as a host does; HTTP:
``--transport http`` with an admin API key), and times with the SDK's real client:

- start: spawn to the first ``list_tools`` answer (the model loads at start);
- ``search_memories`` (limit 5) for N queries, and ``add_memory`` (verbatim) for M new facts.

The same queries through ``Memory.search`` in this process give the floor the transports add to.

    python bench/mcp_latency.py                 # 200 searches, 50 adds per transport
    python bench/mcp_latency.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from locomo import DEFAULT_DATA, load_turns
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from scale import corpus, pct, questions

from memlane import Memory
from memlane.server import KeyStore

USER = "bench"


def texts(n: int) -> list[str]:
    """LoCoMo turns when the data is there, else synthetic sentences."""
    if DEFAULT_DATA.exists():
        out: list[str] = []
        for path in sorted(DEFAULT_DATA.glob("*.json")):
            conv = json.loads(path.read_text())
            out.extend(f"{speaker}: {text}" for _, speaker, text, _ in load_turns(conv))
        if len(out) >= n:
            return out[:n]
    return corpus(n)


def env_without_memlane() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MEMLANE_")}


async def timed_calls(client: Client, queries: list[str], facts: list[str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"search": [], "add": []}
    for query in queries[:5]:  # warm-up
        await client.call_tool("search_memories", {"query": query})
    for query in queries:
        start = time.perf_counter()
        result = await client.call_tool("search_memories", {"query": query, "limit": 5})
        times["search"].append((time.perf_counter() - start) * 1000)
        assert not result.is_error, result
    for fact in facts:
        start = time.perf_counter()
        result = await client.call_tool("add_memory", {"text": fact, "infer": False})
        times["add"].append((time.perf_counter() - start) * 1000)
        assert not result.is_error, result
    return times


async def over_stdio(home: Path, queries: list[str], facts: list[str]) -> dict[str, Any]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memlane", "--home", str(home), "mcp", "--user-id", USER],
        env=env_without_memlane(),
    )
    start = time.perf_counter()
    async with Client(params) as client:
        await client.list_tools()
        started = (time.perf_counter() - start) * 1000
        times = await timed_calls(client, queries, facts)
    return {"start_ms": started, **times}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def over_http(home: Path, queries: list[str], facts: list[str]) -> dict[str, Any]:
    _, token = KeyStore(home / "keys.db").create("bench", admin=True)
    port = free_port()
    command = [sys.executable, "-m", "memlane", "--home", str(home), "mcp", "--transport", "http"]
    start = time.perf_counter()
    proc = subprocess.Popen([*command, "--port", str(port), "--rate-limit", "100000"], env=env_without_memlane())
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise RuntimeError("memlane mcp --transport http exited") from None
                await anyio.sleep(0.05)
        headers = {"Authorization": f"Bearer {token}", "X-Memlane-User-Id": USER}
        http = httpx2.AsyncClient(headers=headers, timeout=60)
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await client.list_tools()
            started = (time.perf_counter() - start) * 1000
            times = await timed_calls(client, queries, facts)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return {"start_ms": started, **times}


def embedded(db: Path, queries: list[str]) -> dict[str, Any]:
    with Memory(path=db) as memory:
        for query in queries[:5]:
            memory.search(query, user_id=USER, limit=5)
        search = []
        for query in queries:
            start = time.perf_counter()
            memory.search(query, user_id=USER, limit=5)
            search.append((time.perf_counter() - start) * 1000)
    return {"search": search}


def summary(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "start_ms" in raw:
        out["start_ms"] = round(raw["start_ms"])
    for op in ("search", "add"):
        if op in raw:
            out[op] = {"p50": round(pct(raw[op], 0.5), 1), "p95": round(pct(raw[op], 0.95), 1), "n": len(raw[op])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--adds", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="memlane-mcp-bench-"))
    try:
        with Memory(path=work / "memlane.db") as memory:
            stored = texts(args.memories)
            for i in range(0, len(stored), 100):
                memory.add([{"role": "user", "content": t} for t in stored[i : i + 100]], user_id=USER, infer=False)
        queries = questions(args.searches)
        facts = [f"Benchmark fact number {i}: prefers tea variety {i * 7 % 101}" for i in range(args.adds)]
        results: dict[str, Any] = {"embedded Memory.search": summary(embedded(work / "memlane.db", queries))}
        results["stdio"] = summary(anyio.run(over_stdio, work, queries, facts))
        results["streamable HTTP"] = summary(anyio.run(over_http, work, queries, [f"HTTP {fact}" for fact in facts]))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"MCP latency, {args.memories} memories in one user's scope ({platform.machine()}, {os.cpu_count()} cores)")
    print(f"{'':<24}{'start':>9}{'search p50':>12}{'p95':>8}{'add p50':>10}{'p95':>8}")
    for name, row in results.items():
        start = f"{row['start_ms']} ms" if "start_ms" in row else "-"
        add = row.get("add", {"p50": "-", "p95": "-"})
        print(
            f"{name:<24}{start:>9}{row['search']['p50']:>10} ms{row['search']['p95']:>8}{add['p50']:>10}{add['p95']:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
