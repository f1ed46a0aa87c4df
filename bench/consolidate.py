"""What ``Memory.consolidate()`` does without an LLM: memory count, merges, recall before and
after, wrong merges, and time per 10k memories.

Four parts (``--only`` picks one; all by default), each with the default configuration and the
default embedder (all-MiniLM-L6-v2, ONNX):

* ``locomo``: LoCoMo dev stored verbatim as ``bench/locomo.py`` stores it (each turn carries its
  ``dia_id`` in metadata), and once more with no per-turn metadata (near-duplicates only merge
  when their metadata agree, so the first store cannot merge anything: it checks that the pass
  leaves recall exactly as it was). Recall is measured, every scope consolidated (a dry run, then
  the real pass), and recall measured again.
* ``beam``: BEAM dev stored as ``bench/beam.py`` stores it, then the same.
* ``labelled``: ``tests/data/near_duplicates.json``, each pair two memories in a scope of its own,
  one pass over the store: precision and recall of the merges, overall and without paraphrases.
* ``timing``: 10,000 memories in one scope, ~10 % of them near-exact variants of the others (from
  this file's own templates): seconds per pass (dry run and real), then 10 scopes of 1,000.

After a pass, a gold evidence memory that was merged is stood for by its survivor (``get(id)``
gives ``merged_into``); the output counts how many gold memories that touched.

    python bench/consolidate.py                       # everything (BEAM's ingest takes longest)
    python bench/consolidate.py --only labelled       # one part
    python bench/consolidate.py --db /tmp/cons        # keep the ingested stores, reuse them
    python bench/consolidate.py --json out.json

The machine may be shared: each timed step prints the 1-minute load average around it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import beam
import locomo
from _retrieval import Tally

from memlane import Memory
from memlane.core.consolidate import near_exact_key

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "tests" / "data" / "near_duplicates.json"
K = TypeVar("K")


def load() -> float:
    return round(os.getloadavg()[0], 2)


# -- consolidating and following merges ---------------------------------------------------------


def consolidate_scopes(mem: Memory, scopes: Iterable[str]) -> dict[str, Any]:
    """A dry run, then the real pass, scope by scope; counts, merges and seconds (with load)."""
    out: dict[str, Any] = {"before": 0, "after": 0, "groups": 0, "merged": 0, "dry_seconds": 0.0, "seconds": 0.0}
    out["merges"], out["load"] = [], [load()]
    for scope in scopes:
        t0 = time.perf_counter()
        dry = mem.consolidate(user_id=scope, dry_run=True)
        out["dry_seconds"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        real = mem.consolidate(user_id=scope)
        out["seconds"] += time.perf_counter() - t0
        if [m["ids"] for m in dry["merged"]] != [m["ids"] for m in real["merged"]]:
            print(f"  note: {scope}: the dry run planned other merges than the pass made", file=sys.stderr)
        merged = sum(len(m["ids"]) for m in real["merged"])
        out["before"] += real["examined"]
        out["after"] += real["examined"] - merged
        out["groups"] += len(real["merged"])
        out["merged"] += merged
        out["merges"] += [
            {"scope": scope, "into": m["into"], "ids": m["ids"], "memory": m["memory"],
             "merged": [mem.get(i)["memory"] for i in m["ids"]]}
            for m in real["merged"]
        ]  # fmt: skip
    out["load"].append(load())
    per = 10_000 / max(out["before"], 1)
    out["dry_seconds"], out["seconds"] = round(out["dry_seconds"], 2), round(out["seconds"], 2)
    out["dry_seconds_per_10k"] = round(out["dry_seconds"] * per, 2)
    out["seconds_per_10k"] = round(out["seconds"] * per, 2)
    return out


def survivors(mem: Memory, merged_ids: Iterable[str]) -> dict[str, str]:
    """{merged memory id: the active memory that stands for it}, read back with ``get``."""
    out = {}
    for mid in merged_ids:
        into = mid
        while (item := mem.get(into)).get("merged_into"):
            into = item["merged_into"]
        out[mid] = into
    return out


def remap(ids: Mapping[str, Mapping[K, str]], stand_in: Mapping[str, str]) -> dict[str, dict[K, str]]:
    """The benchmark's {scope: {message: memory id}} with merged memories replaced by their survivors."""
    return {s: {k: stand_in.get(v, v) for k, v in m.items()} for s, m in ids.items()}


def _copy_store(src: Path, dst: Path) -> None:
    """A closed store's file (and any WAL left behind) copied, so the ingested store stays untouched."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")


def _gold_touched(gold_by_question: list[list[str]], stand_in: Mapping[str, str]) -> dict[str, int]:
    merged_gold = {g for gold in gold_by_question for g in gold if g in stand_in}
    questions = sum(1 for gold in gold_by_question if any(g in stand_in for g in gold))
    return {"gold_memories_merged": len(merged_gold), "questions_touched": questions}


def before_after(
    work: Path,
    scopes: list[str],
    ids: Mapping[str, Mapping[Any, str]],
    search: Callable[[Path, Any, str], dict[str, Any]],
    gold: Callable[[Any], list[list[str]]],
) -> dict[str, Any]:
    """Recall on ``work``, one consolidation pass over ``scopes``, recall again (gold mapped to survivors)."""
    before = search(work, ids, "before")
    with Memory(path=work) as mem:
        passed = consolidate_scopes(mem, scopes)
        stand_in = survivors(mem, (mid for m in passed["merges"] for mid in m["ids"]))
    new_ids = remap(ids, stand_in)
    after = search(work, new_ids, "after")
    return {"before": before, "after": after, "pass": passed, **_gold_touched(gold(ids), stand_in)}


# -- LoCoMo and BEAM ---------------------------------------------------------------------------


def _ingest_locomo_plain(path: Path, convs: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    """Every turn as ``bench/locomo.py`` stores it, but without the per-turn ``dia_id`` metadata."""
    id_file = path.with_suffix(".ids.json")
    if id_file.is_file():
        loaded: dict[str, dict[str, str]] = json.loads(id_file.read_text())
        return loaded
    ids: dict[str, dict[str, str]] = {}
    with Memory(path=path) as mem:
        for scope, conv in convs:
            ids[scope] = {}
            for dia_id, speaker, text, when in locomo.load_turns(conv):
                res = mem.add([{"role": "user", "content": text, "name": speaker}], user_id=scope, timestamp=when)
                ids[scope][dia_id] = res["results"][0]["id"]  # an exact repeat points at the first
    id_file.write_text(json.dumps(ids))
    return ids


def run_locomo(data: Path, keep: Path, tmp: Path) -> dict[str, Any]:
    convs = locomo.conversations(data)
    scopes = [s for s, _ in convs]

    def search(work: Path, ids: Any, label: str) -> dict[str, Any]:
        summary: dict[str, Any] = locomo.run(work, convs, ids, None, label)[0].summary(label)
        return summary

    def gold(ids: Any) -> list[list[str]]:
        out = []
        for scope, conv in convs:
            for qa in conv["qa"]:
                ev = locomo.evidence_ids(qa)
                if qa.get("category") in locomo.CATEGORIES and ev and all(g in ids[scope] for g in ev):
                    out.append([ids[scope][g] for g in ev])
        return out

    out = {}
    for label, name in (("with dia_id metadata", "locomo-meta.db"), ("no per-turn metadata", "locomo-plain.db")):
        t0 = time.perf_counter()
        if name == "locomo-meta.db":
            ids = locomo.open_store(keep / name, convs, Tally())
        else:
            ids = _ingest_locomo_plain(keep / name, convs)
        print(f"locomo ({label}): store ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        _copy_store(keep / name, tmp / name)
        out[label] = before_after(tmp / name, scopes, ids, search, gold)
    return out


def run_beam(data: Path, keep: Path, tmp: Path) -> dict[str, Any]:
    chat_dirs = beam.chats(data)
    scopes = [f"beam-{d.name}" for d in chat_dirs]

    def search(work: Path, ids: Any, label: str) -> dict[str, Any]:
        tally = beam.run(work, chat_dirs, ids, None, label)
        summary: dict[str, Any] = tally.summary(label)
        summary["updates_first"] = f"{tally.updates[0]}/{tally.updates[1]}"
        return summary

    def gold(ids: Any) -> list[list[str]]:
        out = []
        for d in chat_dirs:
            for _, _, g, _ in beam.load_questions(d):
                if all(m in ids[f"beam-{d.name}"] for m in g):
                    out.append([ids[f"beam-{d.name}"][m] for m in g])
        return out

    t0 = time.perf_counter()
    ids = beam.open_store(keep / "beam.db", chat_dirs, Tally())
    print(f"beam: store ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    _copy_store(keep / "beam.db", tmp / "beam.db")
    return {"as bench/beam.py stores it": before_after(tmp / "beam.db", scopes, ids, search, gold)}


# -- the labelled near-duplicate set -----------------------------------------------------------


def run_labelled(path: Path, tmp: Path) -> dict[str, Any]:
    """Each pair in its own scope, one pass over the store; which pairs merged, against the labels."""
    pairs: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["pairs"]
    pair_of: dict[str, int] = {}
    merged: set[int] = set()
    with Memory(path=tmp / "labelled.db") as mem:
        for i, p in enumerate(pairs):
            first = mem.add(p["a"], user_id=f"pair-{i:03d}", infer=False)["results"][0]["id"]
            second = mem.add(p["b"], user_id=f"pair-{i:03d}", infer=False)["results"][0]["id"]
            if second == first:
                merged.add(i)  # the same text once whitespace is collapsed: add itself kept one
            pair_of[first] = pair_of[second] = i
        load0, t0 = load(), time.perf_counter()
        report = mem.consolidate()
        seconds = time.perf_counter() - t0
    merged |= {pair_of[m["into"]] for m in report["merged"]}
    return {**score_pairs(pairs, merged), "seconds": round(seconds, 2), "load": [load0, load()]}


def score_pairs(pairs: list[dict[str, Any]], merged: set[int]) -> dict[str, Any]:
    """Precision, recall (all positives and without paraphrases), wrong merges and misses by kind."""
    pos = {i for i, p in enumerate(pairs) if p["duplicate"]}
    exact = {i for i in pos if pairs[i]["kind"] != "paraphrase"}
    wrong = sorted(merged - pos)
    missed = sorted(exact - merged)
    by_kind: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        got = by_kind.setdefault(f"{'+' if p['duplicate'] else '-'} {p['kind']}", [0, 0])
        got[0] += i in merged
        got[1] += 1
    return {
        "pairs": len(pairs),
        "positives": len(pos),
        "non_paraphrase_positives": len(exact),
        "negatives": len(pairs) - len(pos),
        "merged": len(merged),
        "false_merges": len(wrong),
        "precision": round(len(merged & pos) / max(len(merged), 1), 3),
        "recall": round(len(merged & pos) / max(len(pos), 1), 3),
        "recall_without_paraphrases": round(len(merged & exact) / max(len(exact), 1), 3),
        "merged_by_kind": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_kind.items())},
        "wrong": [[pairs[i]["a"], pairs[i]["b"], pairs[i]["kind"]] for i in wrong],
        "missed": [[pairs[i]["a"], pairs[i]["b"], pairs[i]["kind"]] for i in missed],
    }


# -- timing: 10k memories with ~10 % near-exact duplicates -------------------------------------

_NAMES = """Maya Tomas Priya Jonas Amara Felix Ingrid Kofi Lena Rafael Sofia Arjun Nadia Oskar Yuki Elena
Marco Hana Diego Ines Lukas Zara Mateo Freya Ravi Clara Emil Noor Anton Lucia""".split()
_FACTS = [
    "keeps a vegetable garden", "teaches evening pottery classes", "runs a small bakery", "repairs old bicycles",
    "volunteers at the animal shelter", "plays cello in an amateur orchestra", "writes code for a bank",
    "rents a flat near the station", "coaches a youth football team", "studies marine biology",
    "translates technical manuals", "organises a monthly book club", "rides a motorbike to work",
    "grows tomatoes on the balcony", "works night shifts at the hospital", "sells handmade jewellery",
    "restores antique furniture", "manages a climbing gym", "photographs street markets", "brews cider at home",
]  # fmt: skip
_PLACES = """Lisbon Oslo Nairobi Kyoto Porto Lyon Krakow Austin Quito Tallinn Hobart Accra Leeds Turin Bergen
Cusco Ghent Perth Dakar Malmo""".split()
_WHEN = ["since 2019", "on weekends", "every Tuesday", "in the summer", "with two friends", ""]
_FILLERS = ["Oh, ", "Haha ", "Well, ", "Hey, ", "Um, "]


def _variant(text: str, rng: random.Random) -> str:
    """A near-exact duplicate: the same words in the same order, written differently."""
    out = text
    for change in rng.sample(["case", "filler", "punct", "emoji", "space", "really"], k=2):
        if change == "case":
            out = out.lower() if rng.random() < 0.5 else out.upper()
        elif change == "filler":
            out = rng.choice(_FILLERS) + out[0].lower() + out[1:]
        elif change == "punct":
            out = out.rstrip(".") + rng.choice(["!", "!!", "...", " ."])
        elif change == "emoji":
            out = out + rng.choice([" 🙂", " 😀", " 👍"])
        elif change == "space":
            out = out.replace(" ", "  ", 1)
        else:
            words = out.split(" ")
            words.insert(1, "really")
            out = " ".join(words)
    return out


def synthetic(n: int, share: float, seed: int) -> tuple[list[str], int]:
    """``n`` short memories, ``share`` of them variants of earlier ones; returns them and that count."""
    rng = random.Random(seed)
    base: dict[tuple[str, ...], str] = {}
    while len(base) < round(n * (1 - share)):
        when = rng.choice(_WHEN)
        text = f"{rng.choice(_NAMES)} {rng.choice(_FACTS)} in {rng.choice(_PLACES)}{' ' + when if when else ''}."
        base.setdefault(near_exact_key(text), text)
    texts = list(base.values())
    dups = [_variant(rng.choice(texts), rng) for _ in range(n - len(texts))]
    out = texts + dups
    rng.shuffle(out)
    return out, len(dups)


def _fill(mem: Memory, scope: str, texts: list[str]) -> None:
    for start in range(0, len(texts), 100):
        batch: list[Mapping[str, Any]] = [{"role": "user", "content": t} for t in texts[start : start + 100]]
        mem.add(batch, user_id=scope, infer=False)


def _timed(mem: Memory, dry_run: bool) -> dict[str, Any]:
    load0, t0 = load(), time.perf_counter()
    report = mem.consolidate(dry_run=dry_run)
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        "examined": report["examined"],
        "merged": sum(len(m["ids"]) for m in report["merged"]),
        "load": [load0, load()],
    }


def run_timing(tmp: Path) -> dict[str, Any]:
    """10k memories in one scope, then 10 scopes of 1k; dry run and real pass of the whole store."""
    out: dict[str, Any] = {}
    for label, scopes, per_scope in (("1 scope x 10,000", 1, 10_000), ("10 scopes x 1,000", 10, 1_000)):
        injected = 0
        with Memory(path=tmp / f"timing-{scopes}.db") as mem:
            t0 = time.perf_counter()
            for s in range(scopes):
                texts, dups = synthetic(per_scope, 0.1, seed=s)
                injected += dups
                _fill(mem, f"t-{s}", texts)
            print(f"timing ({label}): stored in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            out[label] = {"injected": injected, "dry_run": _timed(mem, True), "real": _timed(mem, False)}
    return out


# -- output --------------------------------------------------------------------------------------


def _row(label: str, r: dict[str, Any]) -> str:
    ra = r["recall_all"]
    line = f"  {label:<8}{ra[1]:>8}{ra[5]:>6}{ra[10]:>6}{ra[20]:>6}{r['recall_any'][10]:>9}{r['mrr']:>7}"
    return line + (f"{r['updates_first']:>9}" if "updates_first" in r else "")


def print_retrieval(name: str, results: dict[str, Any]) -> None:
    for label, r in results.items():
        p = r["pass"]
        print(f"\n{name} ({label}): {p['before']} memories -> {p['after']} after the pass")
        print(
            f"  merged {p['merged']} memories into {p['groups']} survivors; pass {p['seconds']} s "
            f"({p['seconds_per_10k']} s per 10k), dry run {p['dry_seconds']} s ({p['dry_seconds_per_10k']} s per 10k), "
            f"load {p['load'][0]} -> {p['load'][1]}"
        )
        print(
            f"  gold evidence memories merged (their survivor stands for them after): {r['gold_memories_merged']}, "
            f"in {r['questions_touched']} questions"
        )
        extra = f"{'upd 1st':>9}" if "updates_first" in r["before"] else ""
        print(f"  {'':<8}{'R_all@1':>8}{'@5':>6}{'@10':>6}{'@20':>6}{'R_any@10':>9}{'MRR':>7}{extra}")
        print(_row("before", r["before"]))
        print(_row("after", r["after"]))
        fell = [f"R_all@{k}" for k in (1, 5, 10, 20) if r["after"]["recall_all"][k] < r["before"]["recall_all"][k]]
        fell += ["MRR"] if r["after"]["mrr"] < r["before"]["mrr"] else []
        print(f"  recall after the pass: {'FELL (' + ', '.join(fell) + ')' if fell else 'not lower on any figure'}")
        for m in p["merges"][:10]:
            print(f"  kept {m['memory'][:70]!r}, merged " + ", ".join(repr(t[:70]) for t in m["merged"]))


def print_labelled(r: dict[str, Any]) -> None:
    print(
        f"\nlabelled near-duplicates: {r['pairs']} pairs ({r['positives']} duplicates, "
        f"{r['non_paraphrase_positives']} of them not paraphrases; {r['negatives']} hard negatives)"
    )
    print(
        f"  merged {r['merged']}; false merges {r['false_merges']}; precision {r['precision']}; recall {r['recall']}"
        f" (without paraphrases {r['recall_without_paraphrases']}); pass {r['seconds']} s, load {r['load']}"
    )
    for kind, got in r["merged_by_kind"].items():
        print(f"  {kind:<28}merged {got}")
    for a, b, kind in r["wrong"]:
        print(f"  WRONG MERGE ({kind}): {a!r} / {b!r}")
    for a, b, kind in r["missed"]:
        print(f"  missed ({kind}): {a!r} / {b!r}")


def print_timing(r: dict[str, Any]) -> None:
    print(f"\n{'timing (default embedder, no LLM)':<36}{'memories':>9}{'injected':>9}{'merged':>8}{'s':>8}{'load':>12}")
    for label, t in r.items():
        for mode in ("dry_run", "real"):
            x = t[mode]
            print(
                f"  {label + ', ' + mode.replace('_', ' '):<34}{x['examined']:>9}{t['injected']:>9}{x['merged']:>8}"
                f"{x['seconds']:>8}{str(x['load'][0]) + '->' + str(x['load'][1]):>12}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["locomo", "beam", "labelled", "timing"], action="append")
    parser.add_argument("--locomo", type=Path, default=locomo.DEFAULT_DATA, help="LoCoMo conversation folder")
    parser.add_argument("--beam", type=Path, default=beam.DEFAULT_DATA, help="BEAM chats folder")
    parser.add_argument("--labelled", type=Path, default=LABELLED, help="the labelled near-duplicate pairs")
    parser.add_argument("--db", type=Path, default=None, help="keep the ingested stores in this folder, reuse them")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    parts = args.only or ["labelled", "timing", "locomo", "beam"]
    results: dict[str, Any] = {"load_at_start": list(os.getloadavg()), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keep = args.db or tmp
        keep.mkdir(parents=True, exist_ok=True)
        if "labelled" in parts:
            results["labelled"] = run_labelled(args.labelled, tmp)
            print_labelled(results["labelled"])
        if "timing" in parts:
            results["timing"] = run_timing(tmp)
            print_timing(results["timing"])
        if "locomo" in parts:
            results["locomo"] = run_locomo(args.locomo, keep, tmp)
            print_retrieval("LoCoMo dev", results["locomo"])
        if "beam" in parts:
            results["beam"] = run_beam(args.beam, keep, tmp)
            print_retrieval("BEAM dev", results["beam"])
    print(f"\nload average at the end: {os.getloadavg()} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
