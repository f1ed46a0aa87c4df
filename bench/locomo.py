"""Retrieval benchmark on LoCoMo dialogues (../shared/data/locomo-dev by default).

Every turn is stored verbatim (speaker as the message name, its ``dia_id`` in metadata, the
session's date as timestamp), one scope per conversation. Each question of categories 1-4 is
searched in its conversation's scope; a result counts as evidence when it is the stored turn the
gold ``evidence`` names. Each result is exactly one stored memory.

    python bench/locomo.py                         # default configuration
    python bench/locomo.py --ablation              # also dense-only and keyword-only
    python bench/locomo.py --json out.json

Prints recall_all@k / recall_any@k (k = 1, 5, 10, 20), MRR, median words returned at k=10,
ingest ms per turn and search p50/p95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from memlane import Memory

KS = (1, 5, 10, 20)
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo-dev"


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(data_dir: Path, ranking: dict[str, Any] | None, label: str) -> dict[str, Any]:
    files = sorted(data_dir.glob("*.json"))
    if not files:
        sys.exit(f"no LoCoMo conversations in {data_dir}")
    hits_all = {k: 0 for k in KS}
    hits_any = {k: 0 for k in KS}
    rr: list[float] = []
    words10: list[int] = []
    ingest_ms: list[float] = []
    search_ms: list[float] = []
    questions = skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        config = {"ranking": ranking} if ranking else {}
        mem = Memory(path=Path(tmp) / "locomo.db", config=config)
        for f in files:
            conv = json.loads(f.read_text())
            scope = f"locomo-{f.stem}"
            dia_to_mem: dict[str, str] = {}
            for dia_id, speaker, text, when in load_turns(conv):
                t0 = time.perf_counter()
                res = mem.add(
                    [{"role": "user", "content": text, "name": speaker}],
                    user_id=scope,
                    metadata={"dia_id": dia_id},
                    timestamp=when,
                )
                ingest_ms.append((time.perf_counter() - t0) * 1000)
                dia_to_mem[dia_id] = res["results"][0]["id"]
            for qa in conv["qa"]:
                if qa.get("category") not in (1, 2, 3, 4):
                    continue
                gold = evidence_ids(qa)
                if not gold or any(g not in dia_to_mem for g in gold):
                    skipped += 1
                    continue
                questions += 1
                gold_mem = {dia_to_mem[g] for g in gold}
                t0 = time.perf_counter()
                found = mem.search(str(qa["question"]), user_id=scope, limit=max(KS))["results"]
                search_ms.append((time.perf_counter() - t0) * 1000)
                ids = [r["id"] for r in found]
                for k in KS:
                    top = set(ids[:k])
                    hits_all[k] += gold_mem <= top
                    hits_any[k] += bool(gold_mem & top)
                rank = next((i + 1 for i, mid in enumerate(ids) if mid in gold_mem), None)
                rr.append(1.0 / rank if rank else 0.0)
                words10.append(sum(len(r["memory"].split()) for r in found[:10]))
        mem.close()
    return {
        "label": label,
        "questions": questions,
        "skipped_bad_evidence": skipped,
        "recall_all": {k: round(100 * hits_all[k] / questions, 1) for k in KS},
        "recall_any": {k: round(100 * hits_any[k] / questions, 1) for k in KS},
        "mrr": round(statistics.fmean(rr), 3),
        "median_words_at_10": statistics.median(words10),
        "ingest_ms_per_turn": round(statistics.fmean(ingest_ms), 2),
        "search_ms_p50": round(percentile(search_ms, 0.5), 2),
        "search_ms_p95": round(percentile(search_ms, 0.95), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of LoCoMo conversation JSON files")
    parser.add_argument("--ablation", action="store_true", help="also run dense-only and keyword-only")
    parser.add_argument("--ranking", type=json.loads, default=None, help="ranking overrides as JSON")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    runs = [("default" if not args.ranking else "custom", args.ranking)]
    if args.ablation:
        runs += [
            ("dense only", {"keyword_weight": 0, "entity_weight": 0}),
            ("keyword only", {"dense_weight": 0, "entity_weight": 0}),
        ]
    results = [run(args.data, ranking, label) for label, ranking in runs]
    head = f"{'config':<14}{'R_all@1':>8}{'@5':>6}{'@10':>6}{'@20':>6}{'R_any@10':>9}{'MRR':>7}{'words@10':>9}"
    head += f"{'ingest ms':>10}{'p50 ms':>8}{'p95 ms':>8}"
    print(head)
    for r in results:
        ra, rn = r["recall_all"], r["recall_any"]
        print(
            f"{r['label']:<14}{ra[1]:>8}{ra[5]:>6}{ra[10]:>6}{ra[20]:>6}{rn[10]:>9}{r['mrr']:>7}"
            f"{r['median_words_at_10']:>9}{r['ingest_ms_per_turn']:>10}{r['search_ms_p50']:>8}{r['search_ms_p95']:>8}"
        )
    print(
        f"questions: {results[0]['questions']} (categories 1-4; {results[0]['skipped_bad_evidence']} skipped: "
        "gold evidence names no stored turn)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
