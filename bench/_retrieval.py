"""Shared scoring for the retrieval benchmarks (bench/locomo.py, bench/beam.py).

A question is a query, the scope it is searched in and its gold memory ids; ``Tally`` counts
recall_all@k (every gold memory in the top k), recall_any@k (at least one), MRR and words returned,
overall and per category, and search latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KS = (1, 5, 10, 20)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class _Counts:
    n: int = 0
    all_: dict[int, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    any_: dict[int, int] = field(default_factory=lambda: dict.fromkeys(KS, 0))
    rr: list[float] = field(default_factory=list)

    def add(self, ids: list[str], gold: set[str]) -> None:
        self.n += 1
        for k in KS:
            top = set(ids[:k])
            self.all_[k] += gold <= top
            self.any_[k] += bool(gold & top)
        rank = next((i + 1 for i, mid in enumerate(ids) if mid in gold), None)
        self.rr.append(1.0 / rank if rank else 0.0)

    def summary(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {
            "questions": self.n,
            "recall_all": {k: round(100 * self.all_[k] / n, 1) for k in KS},
            "recall_any": {k: round(100 * self.any_[k] / n, 1) for k in KS},
            "mrr": round(statistics.fmean(self.rr), 3) if self.rr else 0.0,
        }


@dataclass
class Tally:
    """Recall, MRR, words and latency over a run's questions."""

    total: _Counts = field(default_factory=_Counts)
    by_category: dict[str, _Counts] = field(default_factory=dict)
    words10: list[int] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    ingest_ms: list[float] = field(default_factory=list)
    ingested: int = 0
    updates: list[int] = field(default_factory=lambda: [0, 0])  # [update ranked first, update questions]

    def ask(self, search: Callable[[], list[dict[str, Any]]], gold: Iterable[str], category: str) -> list[str]:
        """Run one search, score it against ``gold``; returns the result ids in rank order."""
        t0 = time.perf_counter()
        found = search()
        self.search_ms.append((time.perf_counter() - t0) * 1000)
        ids = [str(r["id"]) for r in found]
        gold_set = set(gold)
        self.total.add(ids, gold_set)
        self.by_category.setdefault(category, _Counts()).add(ids, gold_set)
        self.words10.append(sum(len(r["memory"].split()) for r in found[:10]))
        return ids

    def summary(self, label: str) -> dict[str, Any]:
        return {
            "label": label,
            **self.total.summary(),
            "by_category": {c: v.summary() for c, v in sorted(self.by_category.items())},
            "median_words_at_10": statistics.median(self.words10) if self.words10 else 0,
            "ingest_ms_per_message": round(sum(self.ingest_ms) / max(self.ingested, 1), 2),
            "search_ms_p50": round(percentile(self.search_ms, 0.5), 2),
            "search_ms_p95": round(percentile(self.search_ms, 0.95), 2),
        }


def print_table(results: list[dict[str, Any]], unit: str) -> None:
    """One row per configuration: recall_all@k, recall_any@10, MRR, words, ingest and search time."""
    head = f"{'config':<16}{'R_all@1':>8}{'@5':>6}{'@10':>6}{'@20':>6}{'R_any@10':>9}{'MRR':>7}{'words@10':>9}"
    head += f"{'ingest ms/' + unit:>16}{'p50 ms':>8}{'p95 ms':>8}"
    print(head)
    for r in results:
        ra, rn = r["recall_all"], r["recall_any"]
        print(
            f"{r['label']:<16}{ra[1]:>8}{ra[5]:>6}{ra[10]:>6}{ra[20]:>6}{rn[10]:>9}{r['mrr']:>7}"
            f"{r['median_words_at_10']:>9}{r['ingest_ms_per_message']:>16}{r['search_ms_p50']:>8}{r['search_ms_p95']:>8}"
        )


def print_categories(results: list[dict[str, Any]]) -> None:
    """recall_all@10 per category, one column per configuration."""
    cats = sorted({c for r in results for c in r["by_category"]})
    print(f"\n{'R_all@10 by category':<28}" + "".join(f"{r['label'][:14]:>16}" for r in results))
    for c in cats:
        row = f"{c[:26]:<28}"
        for r in results:
            got = r["by_category"].get(c)
            row += f"{(str(got['recall_all'][10]) + ' (' + str(got['questions']) + ')') if got else '-':>16}"
        print(row)


# For --ablation: each signal alone (plain dense search, plain keyword search), then the default
# without each of its rules, to show what every part contributes.
_PLAIN = {"context_weight": 0, "length_exponent": 0, "newer_bonus": 0}
ABLATIONS: list[tuple[str, dict[str, Any]]] = [
    ("dense only", {"keyword_weight": 0, "entity_weight": 0, **_PLAIN}),
    ("keyword only", {"dense_weight": 0, "entity_weight": 0, **_PLAIN}),
    ("no context", {"context_weight": 0}),
    ("no length prior", {"length_exponent": 0}),
    ("no newer bonus", {"newer_bonus": 0}),
]


def bench_args(doc: str | None, data: Path, data_help: str) -> tuple[argparse.Namespace, list[tuple[str, Any]]]:
    """The benchmarks' shared command line; returns the arguments and the (label, ranking) runs."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data, help=data_help)
    parser.add_argument("--ablation", action="store_true", help="also run each signal alone and each rule left out")
    parser.add_argument("--ranking", type=json.loads, default=None, help="ranking overrides as JSON")
    parser.add_argument("--db", type=Path, default=None, help="keep the ingested store here and reuse it")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    runs: list[tuple[str, Any]] = [("default" if not args.ranking else "custom", args.ranking)]
    if args.ablation:
        runs += ABLATIONS
    return args, runs
