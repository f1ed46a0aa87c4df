"""search(graph=True) against plain search on LoCoMo dev, every turn stored verbatim.

Stored as ``bench/locomo.py`` stores it (speaker as the message name), so each memory is linked to
its speaker and to the names found in its text (no LLM: no relations). Each question of
categories 1-4 is searched with ``graph=False`` and with ``graph=True`` in its conversation's
scope; category 1 (multi-hop in the files' numbering) is where the graph should help.

    python bench/graph_locomo.py                      # a temporary store
    python bench/graph_locomo.py --db /tmp/lg.db      # keep the store and reuse it next time
    python bench/graph_locomo.py --json out.json

Prints the recall table of ``bench/locomo.py`` for both, recall_all@10 per category, the entities
linked per conversation, and how many top-20 hits the graph signal touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _retrieval import KS, Tally, print_categories, print_table
from locomo import CATEGORIES, DEFAULT_DATA, conversations, evidence_ids, open_store

from memlane import Memory


def _run(mem: Memory, convs: list[Any], ids: dict[str, dict[str, str]], graph: bool, ingested: Tally) -> dict[str, Any]:
    tally = Tally()
    tally.ingest_ms, tally.ingested = ingested.ingest_ms, ingested.ingested
    touched = joined = 0
    for scope, conv in convs:
        for qa in conv["qa"]:
            if qa.get("category") not in CATEGORIES:
                continue
            gold = evidence_ids(qa)
            if not gold or any(g not in ids[scope] for g in gold):
                continue

            def search(q: str = str(qa["question"]), s: str = scope) -> list[Any]:
                nonlocal touched, joined
                hits = mem.search(q, user_id=s, limit=max(KS), graph=graph, explain=graph)["results"]
                for h in hits if graph else ():
                    if "graph" in h["explain"]:
                        touched += 1
                        joined += h["explain"]["sources"] == ["graph"]
                return hits

            tally.ask(search, (ids[scope][g] for g in gold), CATEGORIES[qa["category"]])
    summary: dict[str, Any] = tally.summary("graph=True" if graph else "graph=False")
    summary["graph_touched_top20"], summary["graph_joined_top20"] = touched, joined
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--db", type=Path, help="the store (reused when it exists)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    convs = conversations(args.data)
    db = args.db or Path(tempfile.mkdtemp(prefix="graph-locomo-")) / "locomo.db"
    ingested = Tally()
    ids = open_store(db, convs, ingested)
    with Memory(path=db) as mem:
        linked = {scope: len(mem.entities(user_id=scope)["results"]) for scope, _ in convs}
        results = [_run(mem, convs, ids, graph, ingested) for graph in (False, True)]
    print_table(results, "turn")
    print_categories(results)
    print("entities linked per conversation:", linked)
    touched, joined = results[1]["graph_touched_top20"], results[1]["graph_joined_top20"]
    print(f"graph=True: {touched} top-20 hits carry a graph signal, {joined} of them reached through the graph only")
    if args.json:
        args.json.write_text(json.dumps({"entities": linked, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
