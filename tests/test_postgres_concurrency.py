"""Many processes on one PostgreSQL database: racing adds of one fact, racing first opens.

Workers are real subprocesses, each with its own ``PostgresStore`` (its own connection pool), lined
up on a file-system barrier so their writes overlap. The guarantee under test is the issue's:
concurrent adds of the same fact in the same scope end as exactly one memory, by the per-scope
advisory lock and the unique index, not by luck.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memlane.stores import postgres_schema

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from memlane import Memory
    from memlane.stores.postgres import PostgresStore
    from memlane.testing import FakeLLM, HashEmbedder

    mode, url, wid, rounds, sync, parties = sys.argv[1:7]
    rounds, parties, sync = int(rounds), int(parties), Path(sync)

    def barrier(name):
        (sync / f"{name}.{wid}").touch()
        deadline = time.monotonic() + 60
        while len(list(sync.glob(f"{name}.*"))) < parties:
            if time.monotonic() > deadline:
                raise SystemExit(f"barrier {name} timed out")
            time.sleep(0.0005)

    out = []
    if mode == "verbatim":
        m = Memory(store=PostgresStore(url, max_size=2), embedder=HashEmbedder())
        m.get_all(user_id="warm-up")  # opens the pool before the race
        for rnd in range(rounds):
            barrier(f"round{rnd}")
            result = m.add(f"everyone says the same thing in round {rnd}", user_id="shared", infer=False)
            out.append(result["results"][0])
    elif mode == "extracted":
        fact = "The user is allergic to peanuts."
        llm = FakeLLM(default=FakeLLM.facts(fact))
        m = Memory(store=PostgresStore(url, max_size=2), embedder=HashEmbedder(), llm=llm)
        m.get_all(user_id="warm-up")
        for rnd in range(rounds):
            barrier(f"round{rnd}")
            result = m.add("I can't eat peanuts, I'm allergic", user_id=f"patient-{rnd}", infer=True)
            out.append([(r["id"], r["event"]) for r in result["results"]])
    elif mode == "first-open":
        barrier("open")
        with Memory(store=PostgresStore(url, max_size=2), embedder=HashEmbedder()) as m:
            out.append(m.add(f"{wid} was here", user_id="shared", infer=False)["results"][0]["event"])
    print(json.dumps(out))
    """
)


def run_workers(tmp_path: Path, mode: str, url: str, workers: int, rounds: int) -> list[Any]:
    script, sync = tmp_path / "worker.py", tmp_path / f"sync-{mode}"
    script.write_text(WORKER)
    sync.mkdir()
    argv = [sys.executable, str(script), mode, url]
    procs = [
        subprocess.Popen(
            [*argv, f"w{i}", str(rounds), str(sync), str(workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    done = [proc.communicate(timeout=120) for proc in procs]
    errors = "\n".join(err for _, err in done)
    assert [proc.returncode for proc in procs] == [0] * workers, errors
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in done]


def rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with psycopg.connect(url) as conn:
        conn.execute("SET search_path TO memlane, public")
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def test_racing_verbatim_adds_of_one_text_store_it_once(tmp_path: Path, postgres_url: str) -> None:
    workers, rounds = 6, 5
    outs = run_workers(tmp_path, "verbatim", postgres_url, workers, rounds)
    for rnd in range(rounds):
        got = [out[rnd] for out in outs]
        assert len({e["id"] for e in got}) == 1, got
        assert sorted(e["event"] for e in got) == ["ADD"] + ["NONE"] * (workers - 1), got
        text = f"everyone says the same thing in round {rnd}"
        assert rows(postgres_url, "SELECT id FROM memories WHERE memory = %s", (text,)) == [(got[0]["id"],)]
    assert rows(postgres_url, "SELECT count(*) FROM memories") == [(rounds,)]
    assert rows(postgres_url, "SELECT event, count(*) FROM history GROUP BY event") == [("ADD", rounds)]


def test_racing_extractions_of_one_fact_end_as_one_memory(tmp_path: Path, postgres_url: str) -> None:
    # Every worker's model extracts the same fact for the same patient at the same moment: the
    # reconciliation each one planned before the race is re-checked under the scope's lock.
    workers, rounds = 6, 4
    outs = run_workers(tmp_path, "extracted", postgres_url, workers, rounds)
    for rnd in range(rounds):
        got = [out[rnd] for out in outs]
        assert all(len(g) == 1 for g in got), got
        assert len({g[0][0] for g in got}) == 1, got
        assert sorted(g[0][1] for g in got) == ["ADD"] + ["NONE"] * (workers - 1), got
        found = rows(postgres_url, "SELECT id, memory FROM memories WHERE user_id = %s", (f"patient-{rnd}",))
        assert found == [(got[0][0][0], "The user is allergic to peanuts.")]
    # Every worker's exchange is kept as provenance of the one memory.
    linked = rows(postgres_url, "SELECT memory_id, count(*) FROM memory_sources GROUP BY memory_id")
    assert sorted(n for _, n in linked) == [workers] * rounds


def test_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path: Path, postgres_url: str) -> None:
    workers = 6
    outs = run_workers(tmp_path, "first-open", postgres_url, workers, 1)
    assert outs == [["ADD"]] * workers
    assert rows(postgres_url, "SELECT version FROM schema_migrations") == [
        (v,) for v, _, _ in postgres_schema.MIGRATIONS
    ]
    assert rows(postgres_url, "SELECT count(*) FROM meta WHERE key LIKE 'embedder%%'") == [(2,)]
    assert rows(postgres_url, "SELECT count(*) FROM memories") == [(workers,)]
    indexes = {name for (name,) in rows(postgres_url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'memlane'")}
    assert {"memories_hnsw", "memories_terms", "memories_dedupe"} <= indexes


def test_the_unique_index_refuses_a_second_current_copy(postgres_url: str) -> None:
    # The backstop behind the lock: even SQL that bypasses memlane cannot store a fact twice.
    from memlane import Memory
    from memlane.stores.postgres import PostgresStore
    from memlane.testing import HashEmbedder

    with Memory(store=PostgresStore(postgres_url), embedder=HashEmbedder()) as memory:
        memory.add("I live in Porto", user_id="alice", infer=False)
    copy = (
        "INSERT INTO memories (id, user_id, agent_id, run_id, actor_id, role, memory, search_text, n_terms, hash, "
        "metadata, created_at, updated_at, timestamp, embedding) SELECT 'copy', user_id, agent_id, run_id, actor_id, "
        "role, memory, search_text, n_terms, hash, metadata, created_at, updated_at, timestamp, embedding FROM memories"
    )
    with pytest.raises(psycopg.errors.UniqueViolation), psycopg.connect(postgres_url) as conn:
        conn.execute("SET search_path TO memlane, public")
        conn.execute(copy)


def test_writes_from_a_session_with_another_search_path_keep_the_counters(postgres_url: str) -> None:
    # The statistics triggers must not depend on the writer's search_path (psql, pg_restore).
    from memlane import Memory
    from memlane.stores.postgres import PostgresStore
    from memlane.testing import HashEmbedder

    with Memory(store=PostgresStore(postgres_url), embedder=HashEmbedder()) as memory:
        memory.add("I live in Porto", user_id="alice", infer=False)
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SET search_path TO public")
        conn.execute("DELETE FROM memlane.memories")
    assert rows(postgres_url, "SELECT COALESCE(sum(docs), 0) FROM doc_stats") == [(0,)]
