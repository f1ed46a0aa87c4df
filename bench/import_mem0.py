"""How fast ``memlane import-mem0`` moves a mem0 deployment, with memlane's default local embedder.

The source is a mem0 2.2.1 layout built here without mem0 (which would need its LLM and embedder
for every write): a local Qdrant collection ``mem0`` with mem0's payload keys (``data``, ``hash``,
``created_at``, ``updated_at``, ``user_id``, ``text_lemmatized``, ``attributed_to``, user metadata,
an ``expiration_date`` on some, ``actor_id``/``role`` on the verbatim ones), the collection
``mem0_entities``, and a history database with mem0's schema: an ADD per memory, an UPDATE for one
in five, and as many deleted memories (ADD + DELETE, history only) as one in twenty.

Three runs of :func:`memlane.mem0_import.import_mem0` into a fresh SQLite memlane store: a dry run,
the import (re-embedding every text with all-MiniLM-L6-v2 int8 ONNX), and a rerun (every id already
there: nothing embedded). The embedder is loaded and warmed before timing.

    python bench/import_mem0.py                  # 5000 memories, 100 users, batches of 100
    python bench/import_mem0.py --memories 20000 --batch-size 200 --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from memlane import Memory
from memlane.mem0_import import Mem0Source, import_mem0

_WORDS = ("coffee tea morning trip Lisbon Porto Japan cat dog piano chess garden vegan allergy meeting Monday "
          "project deadline sister birthday marathon book jazz Python Rust hiking beach winter").split()  # fmt: skip


def _text(rng: random.Random, i: int) -> str:
    return f"Fact {i}: the user mentioned " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14)))


def build_source(root: Path, memories: int, users: int, seed: int = 7) -> dict[str, Any]:
    """A mem0-layout Qdrant store + history database under ``root``; returns mem0's config dict."""
    from qdrant_client import QdrantClient, models

    rng = random.Random(seed)
    client = QdrantClient(path=str(root / "qdrant"))
    for name in ("mem0", "mem0_entities"):
        client.create_collection(name, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    history = sqlite3.connect(root / "history.db")
    history.execute("CREATE TABLE history (id TEXT PRIMARY KEY, memory_id TEXT, old_memory TEXT, new_memory TEXT, "
                    "event TEXT, created_at DATETIME, updated_at DATETIME, is_deleted INTEGER, actor_id TEXT, "
                    "role TEXT)")  # fmt: skip
    start = datetime(2025, 1, 1, tzinfo=UTC)
    points, rows = [], []
    for i in range(memories + memories // 20):
        memory_id, text = str(uuid.UUID(int=rng.getrandbits(128), version=4)), _text(rng, i)
        created = (start + timedelta(minutes=i)).isoformat()
        rows.append((str(uuid.uuid4()), memory_id, None, text, "ADD", created, None, 0, None, None))
        if i >= memories:  # deleted in mem0: history only
            rows.append((str(uuid.uuid4()), memory_id, text, None, "DELETE", created, created, 1, None, None))
            continue
        updated = created
        if i % 5 == 0:
            old, text = text, text + " (updated)"
            updated = (start + timedelta(minutes=i, seconds=30)).isoformat()
            rows.append((str(uuid.uuid4()), memory_id, old, text, "UPDATE", created, updated, 0, None, None))
        payload: dict[str, Any] = {
            "data": text, "hash": hashlib.md5(text.encode()).hexdigest(), "text_lemmatized": text.lower(),
            "created_at": created, "updated_at": updated, "user_id": f"user-{i % users}",
            "attributed_to": "user", "topic": rng.choice(_WORDS),
        }  # fmt: skip
        if i % 10 == 0:
            payload["expiration_date"] = "2030-12-31"
        if i % 7 == 0:
            payload.update(role="user", actor_id="Sam")
        points.append(models.PointStruct(id=memory_id, vector=[rng.random() + 0.01 for _ in range(8)], payload=payload))
    for start_at in range(0, len(points), 1000):
        client.upsert("mem0", points[start_at : start_at + 1000])
    client.close()
    history.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    history.commit()
    history.close()
    return {"vector_store": {"provider": "qdrant", "config": {"path": str(root / "qdrant"), "collection_name": "mem0"}},
            "history_db_path": str(root / "history.db")}  # fmt: skip


def run(memories: int, users: int, batch_size: int) -> dict[str, Any]:
    """Build the source, then time the dry run, the import and the rerun."""
    with tempfile.TemporaryDirectory(prefix="memlane-bench-mem0-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        config = build_source(root, memories, users)
        built = time.perf_counter() - started
        source = Mem0Source.from_config(config)
        out: dict[str, Any] = {"memories": memories, "users": users, "batch_size": batch_size,
                               "cpus": os.cpu_count(), "build_source_s": round(built, 1)}  # fmt: skip
        with Memory(root / "memlane.db") as memory:
            memory.embedder.embed(["warm up the embedder"])
            out["embedder"] = memory.embedder.model_id
            for name, dry in (("dry_run", True), ("import", False), ("rerun", False)):
                t0 = time.perf_counter()
                report = import_mem0(memory, source, batch_size=batch_size, dry_run=dry)
                seconds = time.perf_counter() - t0
                out[name] = {"seconds": round(seconds, 2), "memories_per_s": round(report.found / seconds, 1),
                             "imported": report.imported, "already_present": report.already_present,
                             "history_events": report.history_events, "problems": report.problems}  # fmt: skip
    out["load"] = [round(x, 1) for x in os.getloadavg()]
    return out


def main() -> None:
    """Command line: sizes, then a table or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--memories", type=int, default=5000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")
    args = parser.parse_args()
    result = run(args.memories, args.users, args.batch_size)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['memories']} mem0 memories, {result['users']} users, batches of {result['batch_size']}, "
          f"embedder {result['embedder']}, load {result['load']}")  # fmt: skip
    print(f"{'run':<8} {'seconds':>8} {'memories/s':>11} {'imported':>9} {'present':>8} {'events':>7}")
    for name in ("dry_run", "import", "rerun"):
        r = result[name]
        print(f"{name:<8} {r['seconds']:>8} {r['memories_per_s']:>11} {r['imported']:>9} {r['already_present']:>8} "
              f"{r['history_events']:>7}")  # fmt: skip


if __name__ == "__main__":
    main()
