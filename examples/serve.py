"""`make serve`: start memlane's REST server on the embedded default and show it working.

1. Creates an admin API key on first run (kept in $MEMLANE_HOME/demo-admin.key, mode 600).
2. Starts `memlane serve` (SQLite under $MEMLANE_HOME, the local MiniLM embedder) on 127.0.0.1.
3. Talks to it over HTTP with `MemoryClient`: add, search, list, and shows what a request
   without a key and a tenant key outside its namespace get.
4. Keeps serving until Ctrl-C (or stops at once with --once).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from memlane import MemoryClient, PermissionDenied
from memlane.config import default_home
from memlane.server import KeyStore


def admin_token(home: Path) -> str:
    """The demo's admin key: made once, then read back (only its hash is in keys.db)."""
    saved = home / "demo-admin.key"
    if saved.exists():
        token = saved.read_text().strip()
        if KeyStore(home / "keys.db").authenticate(token) is not None:
            return token
    _, token = KeyStore(home / "keys.db").create("make-serve demo", admin=True)
    home.mkdir(parents=True, exist_ok=True)
    saved.write_text(token + "\n")
    saved.chmod(0o600)
    return token


def wait_ready(url: str, server: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"memlane serve exited with {server.returncode}; see the messages above")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit(f"memlane serve did not get ready within {seconds:.0f} s")


def show(title: str, value: object) -> None:
    print(f"\n== {title}")
    print(json.dumps(value, indent=2, ensure_ascii=False))


def tour(url: str, token: str, home: Path) -> None:
    with MemoryClient(url, api_key=token) as memory:
        memory.delete_all(user_id="demo:alice", purge=True)  # start from a clean scope
        added = memory.add(
            [
                {"role": "user", "content": "I'm vegetarian and I just moved to Amsterdam."},
                {"role": "assistant", "content": "Noted! Amsterdam has great vegetarian places."},
            ],
            user_id="demo:alice",
            metadata={"topic": "profile"},
        )
        show("POST /v1/memories (add)", added)
        memory.add("My sister Maya's birthday is on 12 June", user_id="demo:alice")
        hits = memory.search("what should I cook for dinner?", user_id="demo:alice", limit=2)
        show("POST /v1/memories/search", [{"score": h["score"], "memory": h["memory"]} for h in hits["results"]])
        listed = memory.get_all(user_id="demo:alice", limit=10)
        show("GET /v1/memories (list)", [m["memory"] for m in listed["results"]])

    anonymous = httpx.get(f"{url}/v1/memories", params={"user_id": "demo:alice"})
    show(f"the same list without an API key: HTTP {anonymous.status_code}", anonymous.json())
    store = KeyStore(home / "keys.db")
    tenant, tenant_token = store.create("demo tenant", namespace="acme")
    try:
        with MemoryClient(url, api_key=tenant_token) as acme:
            acme.add("Our office is in Utrecht", user_id="acme:bob")
            try:
                acme.get_all(user_id="demo:alice")
            except PermissionDenied as exc:
                show("a tenant key for namespace 'acme' asking for demo:alice", f"PermissionDenied: {exc}")
            acme.delete_all(user_id="acme:bob", purge=True)
    finally:
        store.revoke(tenant.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8420")))
    parser.add_argument("--once", action="store_true", help="stop the server after the tour")
    args = parser.parse_args()
    home = default_home()
    token = admin_token(home)
    url = f"http://127.0.0.1:{args.port}"
    command = [sys.executable, "-m", "memlane", "--home", str(home), "serve", "--port", str(args.port)]
    command += ["--log-level", "warning"]
    server = subprocess.Popen(command)
    # `kill` (SIGTERM) stops the server too, like Ctrl-C: run the cleanup below instead of dying.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        wait_ready(url, server)
        tour(url, token, home)
        print(f"\nmemlane is serving {url} (data in {home}); API docs: {url}/docs")
        key_file = home / "demo-admin.key"
        print(f"admin key in {key_file}; try:")
        print(f'  curl -H "Authorization: Bearer $(cat {key_file})" "{url}/v1/memories?user_id=demo:alice"')
        if args.once:
            return
        print("Ctrl-C stops it.")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
