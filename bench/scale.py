"""Scale benchmark: ingest, single add and search latency at 10k / 100k memories.

Uses the real default embedder (all-MiniLM-L6-v2, int8 ONNX) on synthetic, varied sentences
(templates x vocabulary). Measures:

- bulk ingest: ``add()`` with 100 messages per call, model included (memories/s);
- single add: one short message per ``add()``, model included, p50/p95 ms, for
  ``durability="full"`` (fsync per commit) and ``"normal"``;
- search p50/p95 ms, query embedding included, with every memory in one scope and with the
  memories spread over 1,000 users (searching one user's scope); a scope of 20,000 memories or
  more is searched through an approximate (HNSW) index built in the background on the first
  search: the first search, the time until the index is ready and the searches meanwhile (exact)
  are reported apart;
- recall of that approximate path against exact search (the same store opened with
  ``AnnSettings(min_rows=None)``): the dense candidates' recall@10 and @100, and the overlap of
  the ten results ``Memory.search`` returns; the exact search's p50 for comparison.

To make 100k feasible the corpus is embedded once in batches and the stores are filled through
``add()`` with those vectors (the store work is still measured and reported separately).

    python bench/scale.py                          # sizes 10000,100000
    python bench/scale.py --sizes 10000 --queries 100 --out results.json
    python bench/scale.py --vectors /tmp/corpus.npy   # embed the corpus once, reuse it next run

Everything is written to a temporary directory that is removed at the end (unless ``--out``).

``--backend postgres`` (or ``both``) measures the PostgreSQL + pgvector store instead, on a
throwaway local server, at 100k and 1M memories by default: see ``bench/scale_postgres.py`` for
what it measures and how the 1M memories are synthesized.

    python bench/scale.py --backend postgres --sizes 100000,1000000 --out /tmp/scale_pg.json
    python bench/scale.py --backend postgres --sizes 2000            # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from memlane import Memory
from memlane.protocols import EmbedKind, Vectors
from memlane.providers.onnx_embedder import MiniLMOnnxEmbedder
from memlane.stores.ann_index import AnnSettings
from memlane.stores.sqlite import SQLiteStore
from memlane.types import Scope

TARGETS = {"search_p50_ms_100k_one_scope": 15.0, "single_add_p50_ms": 5.0, "bulk_ingest_per_s": 200.0}
USERS = 1000
PER_CALL = 100


def _words(text: str) -> list[str]:
    return text.split()


NAMES = _words("""Caroline Melanie Jon Gina Evan Sam Priya Tomasz Aiko Lena Omar Rosa Dmitri Chloe
Mateo Ingrid Kwame Hana Luis Freya Ravi Sofia Noah Yara Felix Amara Hugo Nadia Leo Elif Marcus Zoe Ivan
Maya Tariq Ana Oskar Leila Diego Saanvi Henrik Nia Pablo Mei Arjun Clara Emeka Vera Jonas Ayla""")
PLACES = _words("""Paris Lisbon Berlin Kyoto Nairobi Toronto Lima Oslo Seoul Cairo Dublin Austin Denver Porto
Krakow Hanoi Quito Perth Boston Vienna Prague Madrid Milan Athens Zurich Bergen Tallinn Riga Seville
Glasgow Leeds Bristol Nantes Lyon Turin Gdansk Split Malaga Cork Galway""")
FOODS = _words("""ramen tacos sushi lasagna pho curry paella dumplings falafel risotto pancakes kimchi
burritos gnocchi shakshuka pierogi ceviche biryani brownies croissants tiramisu hummus goulash
empanadas bibimbap tagine moussaka noodles waffles cheesecake""")
ACTIVITIES = _words("""hiking painting pottery climbing swimming running cycling knitting chess surfing
gardening baking kayaking photography yoga boxing skiing dancing birdwatching fishing journaling
camping sailing fencing archery woodworking calligraphy skating volunteering singing""")
THINGS = _words("""guitar bicycle laptop camera telescope piano kayak tent violin drone sketchbook
typewriter microscope skateboard keyboard ukulele easel treadmill sewing-machine record-player""")
RELATIONS = _words("sister brother mother father cousin friend neighbour colleague daughter son partner aunt")
DAYS = _words("Monday Tuesday Wednesday Thursday Friday Saturday Sunday yesterday last-week last-month")
COLORS = _words("red blue green yellow purple orange black white silver teal")
ANIMALS = _words("dog cat parrot rabbit hamster turtle horse goldfish lizard ferret")
JOBS = _words("""nurse teacher engineer chef designer pilot lawyer plumber architect pharmacist
librarian journalist electrician dentist baker""")
ADJS = _words("wonderful exhausting relaxing stressful amazing boring surprising lovely chaotic peaceful")

TEMPLATES = [
    "{name} went {activity} in {place} with their {rel} on {day}.",
    "I had the best {food} of my life in {place} last {day}.",
    "{name} is learning to play the {thing} and practises every {day}.",
    "My {rel} {name} works as a {job} in {place}.",
    "{name} adopted a {color} {animal} and named it after a {food} dish.",
    "We should try {activity} together when you visit {place}.",
    "{name} said the trip to {place} was {adj} because of the weather.",
    "I bought a {color} {thing} for {activity} on {day}.",
    "{name} cooked {food} for the whole family on {day}.",
    "Remember that {name} is allergic to {food}.",
    "The {activity} class in {place} starts at {num} o'clock on {day}.",
    "{name} has been a {job} for {num} years and loves it.",
    "My {animal} knocked my {thing} off the table on {day}, it was {adj}.",
    "{name} wants to move to {place} next year to work as a {job}.",
    "I finished {num} kilometres of {activity} this week, feeling {adj}.",
    "{name} and their {rel} are planning a {activity} trip to {place}.",
    "Our {rel} recommended a {food} place near the station in {place}.",
    "{name} lost their {color} {thing} somewhere in {place}.",
    "I started {activity} after my {rel} gave me a {thing} for my birthday.",
    "{name} thinks {food} is overrated but loves {activity}.",
    "The meeting with {name} about the {job} position is on {day}.",
    "{name} volunteers at the {animal} shelter in {place} every {day}.",
    "It was {adj} to see {name} again after {num} years in {place}.",
    "My favourite memory of {place} is eating {food} with {name}.",
    "{name} paints {color} landscapes of {place} in their spare time.",
    "I keep forgetting to return the {thing} I borrowed from {name}.",
    "{name} ran a {activity} workshop for {num} kids in {place}.",
    "Next {day} I'm taking my {rel} to a {food} cooking class.",
    "{name} prefers {activity} over {activity2} on weekends.",
    "The {color} {animal} in the park reminded {name} of home in {place}.",
]
QUESTIONS = [
    "Where did {name} go {activity}?",
    "What food did I enjoy in {place}?",
    "Which instrument is {name} learning?",
    "What does my {rel} do for work?",
    "What pet did {name} adopt?",
    "What is {name} allergic to?",
    "When does the {activity} class start?",
    "Who wants to move to {place}?",
    "What did I buy for {activity}?",
    "How long has {name} been a {job}?",
    "what did {name} cook for the family",
    "{name} {activity} {place}",
]


def _fill(rng: random.Random, template: str) -> str:
    act = rng.choice(ACTIVITIES)
    return template.format(
        name=rng.choice(NAMES),
        place=rng.choice(PLACES),
        food=rng.choice(FOODS),
        activity=act,
        activity2=rng.choice([a for a in ACTIVITIES if a != act]),
        thing=rng.choice(THINGS),
        rel=rng.choice(RELATIONS),
        day=rng.choice(DAYS),
        color=rng.choice(COLORS),
        animal=rng.choice(ANIMALS),
        job=rng.choice(JOBS),
        adj=rng.choice(ADJS),
        num=rng.randint(2, 99),
    )


def corpus(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct synthetic chat memories."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        text = _fill(rng, rng.choice(TEMPLATES))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def questions(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [_fill(rng, rng.choice(QUESTIONS)) for _ in range(n)]


class PreEmbedded:
    """The real embedder, with document vectors computed ahead in batches; queries always run
    the model (so search latency includes embedding the query)."""

    def __init__(self, real: MiniLMOnnxEmbedder) -> None:
        self.real = real
        self.cache: dict[str, np.ndarray] = {}
        self.model_id, self.dimension = real.model_id, real.dimension

    def preload(self, texts: Sequence[str], batch: int = 512) -> float:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        start = time.perf_counter()
        for i in range(0, len(todo), batch):
            chunk = todo[i : i + batch]
            self.cache.update(zip(chunk, self.real.embed(chunk), strict=True))
        return time.perf_counter() - start

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        if kind == "query" or not texts:
            return self.real.embed(texts, kind=kind)
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:  # computed now (and timed as part of the caller), kept for later phases
            self.cache.update(zip(missing, self.real.embed(missing), strict=True))
        return np.stack([self.cache[t] for t in texts])


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1000


def memory(path: Path, embedder: Any, durability: str = "full", approximate: AnnSettings | None = None) -> Memory:
    return Memory(store=SQLiteStore(path, durability=durability, approximate=approximate), embedder=embedder)


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def add_all(mem: Memory, texts: Sequence[str], users: int | None) -> float:
    """Add ``texts`` 100 per call (per user when spread); returns memories/s."""
    start = time.perf_counter()
    if users is None:
        for i in range(0, len(texts), PER_CALL):
            mem.add([{"role": "user", "content": t} for t in texts[i : i + PER_CALL]], user_id="everyone")
    else:
        per_user: dict[int, list[str]] = {}
        for i, text in enumerate(texts):
            per_user.setdefault(i % users, []).append(text)
        for user, mine in per_user.items():
            for i in range(0, len(mine), PER_CALL):
                mem.add([{"role": "user", "content": t} for t in mine[i : i + PER_CALL]], user_id=f"user{user}")
    return len(texts) / (time.perf_counter() - start)


def _scope(users: int | None, i: int) -> dict[str, str]:
    return {"user_id": "everyone"} if users is None else {"user_id": f"user{i % users}"}


def bench_search(mem: Memory, queries: Sequence[str], users: int | None) -> dict[str, Any]:
    """Latency from a fresh open: the first search, searches while an index builds, then steady state."""
    store = mem.store
    assert isinstance(store, SQLiteStore)
    rss = rss_mb()
    start = time.perf_counter()
    cold = timed(mem.search, queries[0], limit=10, **_scope(users, 0))
    during = []  # exact searches while a background build runs (it shares the two cores)
    while not store.wait_for_indexes(0) and len(during) < len(queries):
        during.append(timed(mem.search, queries[len(during)], limit=10, **_scope(users, len(during))))
    store.wait_for_indexes()
    ready = time.perf_counter() - start
    times, cpu = [], []  # wall ms, and CPU ms of all the process's threads (less sensitive to other jobs)
    for i, q in enumerate(queries):
        before = time.process_time()
        times.append(timed(mem.search, q, limit=10, **_scope(users, i)))
        cpu.append((time.process_time() - before) * 1000)
    stats = store.index_stats()
    graphs = stats["row_graphs"] + stats["passage_graphs"]
    out: dict[str, Any] = {
        "search_p50_ms": pct(times, 0.5),
        "search_p95_ms": pct(times, 0.95),
        "search_cpu_p50_ms": pct(cpu, 0.5),
        "first_search_ms": round(cold, 1),
        "load_1min": round(os.getloadavg()[0], 2),
        "vectors_mb": round(stats["vector_bytes"] / 1e6, 1),
        "rss_growth_mb": round(rss_mb() - rss, 1),
    }
    if graphs:
        out["index_ready_s"] = round(ready, 2)
        out["index_build_s"] = round(sum(g["build_seconds"] for g in graphs), 2)
        out["index_mb"] = round(sum(g["bytes"] for g in graphs) / 1e6, 1)
        out["searches_while_building"] = len(during)
        if during:
            out["search_p50_ms_while_building"] = pct(during, 0.5)
    return out


def bench_recall(db: Path, emb: Any, queries: Sequence[str], users: int | None) -> dict[str, float]:
    """The approximate path against exact search on the same file: dense recall@10/@100, result overlap."""
    fast, exact = memory(db, emb), memory(db, emb, approximate=AnnSettings(min_rows=None))
    with fast, exact:
        for mem in (fast, exact):  # open, load the cache and (fast) build the index before comparing
            mem.search(queries[0], limit=10, **_scope(users, 0))
            assert isinstance(mem.store, SQLiteStore)
            mem.store.wait_for_indexes()
        qvecs = emb.real.embed(list(queries), kind="query")
        now = datetime.now(UTC)
        dense10: list[float] = []
        dense100: list[float] = []
        results: list[float] = []
        exact_times: list[float] = []
        for i, (q, vec) in enumerate(zip(queries, qvecs, strict=True)):
            scope = Scope(**_scope(users, i))
            got = [r for r, _ in fast.store.dense(scope, None, vec, 100, now)]
            want = [r for r, _ in exact.store.dense(scope, None, vec, 100, now)]
            dense10.append(len(set(got[:10]) & set(want[:10])) / max(1, min(10, len(want))))
            dense100.append(len(set(got) & set(want)) / max(1, len(want)))
            fast_ids = [h["id"] for h in fast.search(q, limit=10, **_scope(users, i))["results"]]
            start = time.perf_counter()
            exact_ids = [h["id"] for h in exact.search(q, limit=10, **_scope(users, i))["results"]]
            exact_times.append((time.perf_counter() - start) * 1000)
            results.append(len(set(fast_ids) & set(exact_ids)) / max(1, len(exact_ids)))
    return {
        "dense_recall_at_10": round(float(np.mean(dense10)), 4),
        "dense_recall_at_100": round(float(np.mean(dense100)), 4),
        "results_recall_at_10": round(float(np.mean(results)), 4),
        "exact_search_p50_ms": pct(exact_times, 0.5),
    }


def bench_single_add(db: Path, embedder: Any, n: int, durability: str) -> dict[str, float]:
    rng = random.Random(durability)
    with memory(db, embedder, durability) as mem:
        mem.get_all(user_id="everyone", limit=1)  # open outside the timing
        texts = [f"note {rng.randint(0, 10**9)}: {rng.choice(NAMES)} likes {rng.choice(FOODS)}" for _ in range(n)]
        times = [timed(mem.add, t, user_id="everyone") for t in texts]
    return {
        f"single_add_p50_ms_{durability}": pct(times, 0.5),
        f"single_add_p95_ms_{durability}": pct(times, 0.95),
    }


def preload(emb: PreEmbedded, texts: Sequence[str], saved: Path | None) -> float | None:
    """Embed the corpus (sentences/s), or load its vectors from ``saved`` (None) when a run saved them."""
    if saved is not None and saved.exists():
        vecs = np.load(saved)
        if vecs.shape == (len(texts), emb.dimension):
            emb.cache.update(zip(texts, vecs, strict=True))
            return None
    secs = emb.preload(texts)
    if saved is not None:
        np.save(saved, np.stack([emb.cache[t] for t in texts]))
    return round(len(texts) / secs, 1)


def run(
    sizes: list[int], n_queries: int, n_adds: int, ingest_n: int, work: Path, saved: Path | None = None
) -> dict[str, Any]:
    real = MiniLMOnnxEmbedder()
    real.embed(["warm up"])
    emb = PreEmbedded(real)
    texts = corpus(max(sizes))
    qs = questions(n_queries + 1)
    summary: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "embedder": real.model_id,
        "sizes": sizes,
        "queries": n_queries,
    }
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    qtimes = [timed(real.embed, [q], kind="query") for q in qs]
    summary["query_embed_p50_ms"] = pct(qtimes, 0.5)

    log(f"bulk ingest with the model: {ingest_n} memories, {PER_CALL} per add()")
    with memory(work / "ingest.db", emb) as mem:
        start = time.perf_counter()
        for i in range(0, ingest_n, PER_CALL):
            batch = texts[i : i + PER_CALL]
            mem.add([{"role": "user", "content": t} for t in batch], user_id="everyone")
        summary["bulk_ingest_per_s"] = round(ingest_n / (time.perf_counter() - start), 1)
    (work / "ingest.db").unlink()

    log(f"embedding the corpus: {len(texts)} sentences")
    summary["embed_sentences_per_s"] = preload(emb, texts, saved)

    rows = []
    for size in sizes:
        for layout, users in (("one scope", None), (f"{USERS} users", USERS)):
            db = work / f"s{size}-{'one' if users is None else 'spread'}.db"
            log(f"building {size} memories, {layout}")
            with memory(db, emb) as mem:
                store_rate = add_all(mem, texts[:size], users)
            log(f"searching {size}, {layout}")
            with memory(db, emb) as mem:
                row: dict[str, Any] = {
                    "size": size,
                    "layout": layout,
                    "store_ingest_per_s": round(store_rate, 1),
                }
                row.update(bench_search(mem, qs[1:], users))
            log(f"recall against exact search, {size}, {layout}")
            row.update(bench_recall(db, emb, qs[1:], users))
            if users is None and size == max(sizes):
                log("single adds")
                for durability in ("full", "normal"):
                    summary.update(bench_single_add(db, emb, n_adds, durability))
            if users is not None and size == max(sizes):
                with memory(db, emb) as mem:
                    mem.get_all(user_id="user1", limit=1)
                    summary["purge_one_user_ms"] = round(timed(mem.delete_all, user_id="user1", purge=True), 1)
            summary["db_mb_" + str(size)] = round(sum(p.stat().st_size for p in work.glob(db.name + "*")) / 1e6, 1)
            rows.append(row)
            for path in work.glob(db.name + "*"):
                path.unlink()
    summary["search"] = rows
    big_one = next((r for r in rows if r["size"] == 100_000 and r["layout"] == "one scope"), None)
    summary["targets"] = {
        "search_p50_ms_100k_one_scope": {
            "target": TARGETS["search_p50_ms_100k_one_scope"],
            "measured": big_one["search_p50_ms"] if big_one else None,
        },
        "single_add_p50_ms": {
            "target": TARGETS["single_add_p50_ms"],
            "measured": summary.get("single_add_p50_ms_full"),
        },
        "bulk_ingest_per_s": {
            "target": TARGETS["bulk_ingest_per_s"],
            "measured": summary["bulk_ingest_per_s"],
        },
    }
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"embedder {summary['embedder']}, {summary['machine']['cpus']} CPUs, {summary['queries']} queries per row",
        "",
        f"{'memories':>9}  {'layout':<11} {'search p50':>10} {'p95':>7} {'cpu p50':>7} {'exact p50':>9} {'first':>8} "
        f"{'index ready':>11} {'recall@10 dense/results':>23} {'load':>5} {'store ingest':>13}",
    ]
    for r in summary["search"]:
        ready = f"{r['index_ready_s']:>10.1f}s" if "index_ready_s" in r else f"{'exact':>11}"
        lines.append(
            f"{r['size']:>9,}  {r['layout']:<11} {r['search_p50_ms']:>8.1f}ms {r['search_p95_ms']:>5.1f}ms "
            f"{r['search_cpu_p50_ms']:>5.1f}ms {r['exact_search_p50_ms']:>7.1f}ms "
            f"{r['first_search_ms']:>6.0f}ms {ready} "
            f"{r['dense_recall_at_10']:>14.3f} / {r['results_recall_at_10']:.3f} {r['load_1min']:>5.1f} "
            f"{r['store_ingest_per_s']:>9,.0f}/s"
        )
    lines += [
        "",
        f"bulk ingest, model included ({PER_CALL}/add): {summary['bulk_ingest_per_s']:,.0f} memories/s",
        f"embedding alone (batched):              {summary['embed_sentences_per_s'] or 0:,.0f} sentences/s",
        f"query embedding alone p50:              {summary['query_embed_p50_ms']:.1f} ms",
    ]
    for d in ("full", "normal"):
        if f"single_add_p50_ms_{d}" in summary:
            lines.append(
                f"single add p50/p95, durability={d:<7}   {summary[f'single_add_p50_ms_{d}']:.1f} / "
                f"{summary[f'single_add_p95_ms_{d}']:.1f} ms"
            )
    if "purge_one_user_ms" in summary:
        lines.append(f"delete_all(purge=True) of one user:     {summary['purge_one_user_ms']:.0f} ms")
    lines.append("")
    for name, t in summary["targets"].items():
        m = t["measured"]
        ok = "n/a" if m is None else ("ok" if (m >= t["target"] if "per_s" in name else m <= t["target"]) else "MISSED")
        lines.append(f"target {name}: {t['target']} -> {m} {ok}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite", help="store(s) to bench")
    parser.add_argument("--sizes", help="comma-separated store sizes (sqlite 10000,100000; postgres 100000,1000000)")
    parser.add_argument("--queries", type=int, default=200, help="timed searches per size and layout")
    parser.add_argument("--adds", type=int, default=200, help="timed single adds per durability")
    parser.add_argument("--ingest", type=int, default=3000, help="memories for the bulk-ingest measurement")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    parser.add_argument("--vectors", type=Path, help="corpus vectors (.npy): loaded if present, else saved there")
    pg = parser.add_argument_group("postgres (see bench/scale_postgres.py)")
    pg.add_argument("--writers", type=int, default=4, help="writer processes for the multi-writer ingest")
    pg.add_argument("--pool", type=int, default=50_000, help="sentences embedded by the model; the rest derived")
    pg.add_argument("--add-rows", type=int, default=100_000, help="memories written through Memory.add; then COPY")
    pg.add_argument("--ef-search", default="40,80,100,200,400", help="hnsw.ef_search values for the recall sweep")
    pg.add_argument("--layouts", default="one,users", help="one (one scope) and/or users (10,000 users)")
    args = parser.parse_args(argv)
    args.ef_search = [int(x) for x in args.ef_search.split(",") if x]
    args.layouts = [x for x in args.layouts.split(",") if x]
    if not set(args.layouts) <= {"one", "users"}:
        parser.error("--layouts takes one and/or users")
    summaries: dict[str, Any] = {}
    if args.backend in ("sqlite", "both"):
        sizes = sorted(int(s) for s in (args.sizes or "10000,100000").split(","))
        work = Path(tempfile.mkdtemp(prefix="memlane-scale-"))
        try:
            summaries["sqlite"] = run(sizes, args.queries, args.adds, args.ingest, work, args.vectors)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(table(summaries["sqlite"]))
    if args.backend in ("postgres", "both"):
        import scale_postgres  # imported here: it needs psycopg, pgvector and a PostgreSQL build

        sizes = sorted(int(s) for s in (args.sizes or "100000,1000000").split(","))
        summaries["postgres"] = scale_postgres.run_postgres(sizes, args)
        print(scale_postgres.table(summaries["postgres"]))
    summary = summaries if args.backend == "both" else next(iter(summaries.values()))
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
