"""Retrieval benchmark on LoCoMo dialogues (../shared/data/locomo-dev by default).

Every turn is stored verbatim (speaker as the message name, its ``dia_id`` in metadata, the
session's date as timestamp), one scope per conversation. Each question of categories 1-4 is
searched in its conversation's scope; a result counts as evidence when it is the stored turn the
gold ``evidence`` names. Each result is exactly one stored memory.

    python bench/locomo.py                         # default configuration
    python bench/locomo.py --ablation              # also each signal alone
    python bench/locomo.py --db /tmp/locomo.db     # keep the ingested store and reuse it next time
    python bench/locomo.py --json out.json

Prints recall_all@k / recall_any@k (k = 1, 5, 10, 20), MRR, median words returned at k=10,
ingest ms per turn, search p50/p95 and recall_all@10 per category.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _retrieval import KS, Tally, bench_args, print_categories, print_table

from memlane import Memory

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo-dev"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


def load_turns(conv: dict[str, Any]) -> list[tuple[str, str, str, datetime]]:
    """(dia_id, speaker, text, session time) for every turn, in order."""
    out = []
    n = 1
    while f"session_{n}" in conv:
        when = datetime.strptime(conv[f"session_{n}_date_time"], "%I:%M %p on %d %B, %Y")
        for turn in conv[f"session_{n}"]:
            text = turn["text"]
            if turn.get("blip_caption"):
                text = f"{text} [shares {turn['blip_caption']}]"
            out.append((turn["dia_id"], turn["speaker"], text, when))
        n += 1
    return out


def evidence_ids(qa: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    for item in qa.get("evidence", []):
        ids += [part.strip() for part in str(item).replace(",", ";").split(";") if part.strip()]
    return ids


def conversations(data_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    files = sorted(data_dir.glob("*.json"))
    if not files:
        sys.exit(f"no LoCoMo conversations in {data_dir}")
    return [(f"locomo-{f.stem}", json.loads(f.read_text())) for f in files]


def open_store(path: Path, convs: list[tuple[str, dict[str, Any]]], tally: Tally) -> dict[str, dict[str, str]]:
    """Ingest the conversations into ``path`` unless an earlier run left them there; returns the id map."""
    id_file = path.with_suffix(".ids.json")
    if id_file.is_file():
        loaded: dict[str, dict[str, str]] = json.loads(id_file.read_text())
        return loaded
    ids: dict[str, dict[str, str]] = {}
    with Memory(path=path) as mem:
        for scope, conv in convs:
            ids[scope] = {}
            for dia_id, speaker, text, when in load_turns(conv):
                t0 = time.perf_counter()
                res = mem.add(
                    [{"role": "user", "content": text, "name": speaker}],
                    user_id=scope,
                    metadata={"dia_id": dia_id},
                    timestamp=when,
                )
                tally.ingest_ms.append((time.perf_counter() - t0) * 1000)
                tally.ingested += 1
                ids[scope][dia_id] = res["results"][0]["id"]
    id_file.write_text(json.dumps(ids))
    return ids


def run(
    path: Path,
    convs: list[tuple[str, dict[str, Any]]],
    ids: dict[str, dict[str, str]],
    ranking: dict[str, Any] | None,
    label: str,
) -> tuple[Tally, int]:
    """Search every question with one ranking configuration; returns the tally and questions skipped."""
    tally = Tally()
    skipped = 0
    with Memory(path=path, config={"ranking": ranking} if ranking else {}) as mem:
        for scope, conv in convs:
            for qa in conv["qa"]:
                if qa.get("category") not in CATEGORIES:
                    continue
                gold = evidence_ids(qa)
                if not gold or any(g not in ids[scope] for g in gold):
                    skipped += 1
                    continue
                tally.ask(
                    lambda q=str(qa["question"]), s=scope: mem.search(q, user_id=s, limit=max(KS))["results"],
                    (ids[scope][g] for g in gold),
                    CATEGORIES[qa["category"]],
                )
    return tally, skipped


def main() -> None:
    args, runs = bench_args(__doc__, DEFAULT_DATA, "folder of LoCoMo conversation JSON files")
    convs = conversations(args.data)
    results = []
    skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "locomo.db"
        ingested = Tally()
        ids = open_store(path, convs, ingested)
        for label, ranking in runs:
            tally, skipped = run(path, convs, ids, ranking, label)
            tally.ingest_ms, tally.ingested = ingested.ingest_ms, ingested.ingested
            results.append(tally.summary(label))
    print_table(results, "turn")
    print_categories(results)
    print(
        f"questions: {results[0]['questions']} (categories 1-4; {skipped} skipped: gold evidence names no stored turn)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
