"""Retrieval benchmark on BEAM user-assistant chats (../shared/data/beam-dev by default).

Every message is stored verbatim, one scope per chat, added a turn (user message + reply) at a time
as a chatbot would after each exchange. A message's timestamp is its chat's latest ``time_anchor``
date plus one minute per message since that anchor (the data gives dates, not times). Each probing
question with gold ``source_chat_ids`` (every category but abstention) is searched in its chat's
scope; a result counts as evidence when it is one of the gold messages. For knowledge updates the
gold message is the updated one, and the bench also counts how often it outranks the original.

    python bench/beam.py                      # default configuration
    python bench/beam.py --ablation           # also each signal alone
    python bench/beam.py --db /tmp/beam.db    # keep the ingested store and reuse it next time
    python bench/beam.py --json out.json

Prints recall_all@k / recall_any@k (k = 1, 5, 10, 20), MRR, median words returned at k=10, ingest
ms per message, search p50/p95, recall_all@10 per category and the update-first count.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _retrieval import KS, Tally, bench_args, print_categories, print_table

from memlane import Memory

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "beam-dev"


def _flat(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [i for v in value.values() for i in _flat(v)]
    if isinstance(value, list):
        return [i for v in value for i in _flat(v)]
    return [int(value)]


def load_turns(chat: list[dict[str, Any]]) -> Iterator[list[tuple[int, str, str, datetime]]]:
    """Each turn as [(message id, role, content, time)], in order."""
    anchor = datetime(2024, 1, 1)
    since = 0
    for block in chat:
        if block.get("time_anchor"):
            anchor, since = datetime.strptime(block["time_anchor"], "%B-%d-%Y"), 0
        for pair in block["turns"]:
            turn = []
            for msg in pair:
                if msg.get("time_anchor"):
                    anchor, since = datetime.strptime(msg["time_anchor"], "%B-%d-%Y"), 0
                turn.append((int(msg["id"]), msg["role"], msg["content"], anchor + timedelta(minutes=since)))
                since += 1
            yield turn


def load_questions(chat_dir: Path) -> list[tuple[str, str, list[int], list[int]]]:
    """(category, question, gold message ids, original ids for knowledge updates)."""
    probing = json.loads((chat_dir / "probing_questions" / "probing_questions.json").read_text())
    out = []
    for category, questions in probing.items():
        if category == "abstention":
            continue
        for q in questions:
            source = q.get("source_chat_ids")
            if not source:
                continue
            if isinstance(source, dict) and "updated_info" in source:
                out.append((category, q["question"], _flat(source["updated_info"]), _flat(source["original_info"])))
            else:
                out.append((category, q["question"], _flat(source), []))
    return out


def chats(data_dir: Path) -> list[Path]:
    found = sorted((p for p in data_dir.iterdir() if (p / "chat.json").is_file()), key=lambda p: (len(p.name), p.name))
    if not found:
        sys.exit(f"no BEAM chats in {data_dir}")
    return found


def ingest(mem: Memory, chat_dirs: list[Path], tally: Tally) -> dict[str, dict[int, str]]:
    """Store every message; returns {scope: {message id: memory id}}."""
    ids: dict[str, dict[int, str]] = {}
    for chat_dir in chat_dirs:
        scope = f"beam-{chat_dir.name}"
        ids[scope] = {}
        for turn in load_turns(json.loads((chat_dir / "chat.json").read_text())):
            t0 = time.perf_counter()
            res = mem.add(
                [{"role": role, "content": text} for _, role, text, _ in turn],
                user_id=scope,
                metadata={"chat": chat_dir.name},
                timestamp=turn[0][3],
                infer=False,
            )
            tally.ingest_ms.append((time.perf_counter() - t0) * 1000)
            tally.ingested += len(turn)
            for (mid, *_), item in zip(turn, res["results"], strict=True):
                ids[scope][mid] = item["id"]
    return ids


def open_store(path: Path, chat_dirs: list[Path], tally: Tally) -> dict[str, dict[int, str]]:
    """Ingest the chats into ``path`` unless an earlier run left them there; returns the id map."""
    id_file = path.with_suffix(".ids.json")
    if id_file.is_file():
        return {s: {int(k): v for k, v in m.items()} for s, m in json.loads(id_file.read_text()).items()}
    with Memory(path=path) as mem:
        ids = ingest(mem, chat_dirs, tally)
    id_file.write_text(json.dumps(ids))
    return ids


def run(
    path: Path, chat_dirs: list[Path], ids: dict[str, dict[int, str]], ranking: dict[str, Any] | None, label: str
) -> Tally:
    """Search every question with one ranking configuration."""
    tally = Tally()
    with Memory(path=path, config={"ranking": ranking} if ranking else {}) as mem:
        for chat_dir in chat_dirs:
            scope = f"beam-{chat_dir.name}"
            for category, question, gold, original in load_questions(chat_dir):
                if any(g not in ids[scope] for g in gold):
                    continue
                found = tally.ask(
                    lambda q=question, s=scope: mem.search(q, user_id=s, limit=max(KS))["results"],
                    (ids[scope][g] for g in gold),
                    category,
                )
                if original:
                    rank = {mid: i for i, mid in reversed(list(enumerate(found)))}
                    best_new = min(rank.get(ids[scope][g], 99) for g in gold)
                    best_old = min((rank.get(ids[scope][o], 99) for o in original if o in ids[scope]), default=99)
                    tally.updates[0] += best_new < best_old
                    tally.updates[1] += 1
    return tally


def main() -> None:
    args, runs = bench_args(__doc__, DEFAULT_DATA, "folder of BEAM chats (N/chat.json)")
    chat_dirs = chats(args.data)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "beam.db"
        ingested = Tally()
        ids = open_store(path, chat_dirs, ingested)
        for label, ranking in runs:
            tally = run(path, chat_dirs, ids, ranking, label)
            tally.ingest_ms, tally.ingested = ingested.ingest_ms, ingested.ingested
            out = tally.summary(label)
            out["updates_first"] = f"{tally.updates[0]}/{tally.updates[1]}"
            results.append(out)
    print_table(results, "msg")
    print_categories(results)
    print(
        "\nupdate outranks its original (in the top 20): "
        + ", ".join(f"{r['label']} {r['updates_first']}" for r in results)
    )
    print(f"questions: {results[0]['questions']} (every category but abstention)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
