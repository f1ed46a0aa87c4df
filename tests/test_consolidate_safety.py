"""Consolidation is safe by construction: a pass SIGKILLed at any point leaves a consistent store
that a later pass completes to the same end as an uninterrupted one, and adds racing a pass lose
nothing, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import store_for
from test_store_durability import check_consistent

from memlane import Memory
from memlane.core.consolidate import near_exact_key
from memlane.testing import HashEmbedder

SCOPES = 6
PER_SCOPE = 240
# A cap below what stays after merging: every pass archives too.
CONFIG: dict[str, Any] = {"consolidation": {"max_memories": 120, "merge_cosine": 0.5}}

FILL = textwrap.dedent(
    """
    import sys
    from memlane import Memory
    from memlane.testing import HashEmbedder

    m = Memory(sys.argv[1], embedder=HashEmbedder())
    for s in range(int(sys.argv[2])):
        texts = []
        for k in range(int(sys.argv[3])):
            base = f"Note {k % 160} of scope {s} about topic{k % 7} and Priya"
            texts.append(base if k < 160 else base.lower() + "!")  # a third are near-exact variants
        for start in range(0, len(texts), 40):
            m.add([{"role": "user", "content": t} for t in texts[start:start + 40]], user_id=f"u{s}", infer=False)
    m.close()
    """
)

PASS = textwrap.dedent(
    """
    import json, sys
    from memlane import Memory
    from memlane.testing import HashEmbedder

    m = Memory(sys.argv[1], embedder=HashEmbedder(), config=json.loads(sys.argv[2]))
    m.get_all(user_id="u0", limit=1)  # opened
    print("ready", flush=True)
    report = m.consolidate(progress=lambda done, total: print("scope", done, total, flush=True))
    print("done", len(report["merged"]), len(report["archived"]), report["seconds"], flush=True)
    """
)


def _fill(tmp_path: Path, db: Path) -> None:
    script = tmp_path / "fill.py"
    script.write_text(FILL)
    subprocess.run([sys.executable, str(script), str(db), str(SCOPES), str(PER_SCOPE)], check=True, timeout=300)


def _run_pass(script: Path, db: Path, kill_after: float | None) -> list[str]:
    """Run one consolidation pass in a subprocess; SIGKILL it ``kill_after`` seconds after it is ready."""
    import json

    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), json.dumps(CONFIG)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    first = proc.stdout.readline()
    assert first.strip() == "ready", proc.stderr.read() if proc.stderr else first
    if kill_after is None:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        return out.split("\n")
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines += proc.stdout.read().split("\n")
    return lines


def check_states(db: Path, every_id: set[str]) -> dict[str, tuple[str | None, str | None, str]]:
    """Every memory ever stored is still there; merged and archived ones are whole and linked
    right; returns id -> (state, merged_into, text) of the current rows."""
    conn = check_consistent(db)
    rows = {
        r[0]: (r[1], r[2], r[3], (r[4], r[5], r[6]))
        for r in conn.execute(
            "SELECT id, state, merged_into, memory, user_id, agent_id, run_id FROM memories WHERE version_of IS NULL"
        )
    }
    assert every_id <= set(rows), "a memory was lost"
    for mid, (state, into, _, scope) in rows.items():
        events = [e for (e,) in conn.execute("SELECT event FROM history WHERE memory_id = ? ORDER BY id", (mid,))]
        if state == "merged":
            assert into in rows and rows[into][0] != "merged" and rows[into][3] == scope, (mid, into)
            assert events[-1] == "MERGE", events
        elif state == "archived":
            assert into is None and events[-1] == "ARCHIVE", events
        else:
            assert state is None and into is None and events[-1] == "ADD", events
    accessed = {m for (m,) in conn.execute("SELECT memory_id FROM memory_access")}
    assert accessed <= set(rows)
    conn.close()
    return {m: (v[0], v[1], v[2]) for m, v in rows.items()}


def test_a_pass_killed_anywhere_leaves_a_consistent_store_that_the_next_pass_completes(tmp_path: Path) -> None:
    filled, clean = tmp_path / "filled.db", tmp_path / "clean.db"
    _fill(tmp_path, filled)
    shutil.copy(filled, clean)
    with sqlite3.connect(filled) as conn:
        every_id = {m for (m,) in conn.execute("SELECT id FROM memories")}
    assert len(every_id) == SCOPES * PER_SCOPE
    script = tmp_path / "pass.py"
    script.write_text(PASS)
    (done,) = [line for line in _run_pass(script, clean, None) if line.startswith("done")]
    seconds = float(done.split()[-1])
    expected = check_states(clean, every_id)
    # Kill passes at spread points of their run, each on a fresh copy of the filled store, and
    # twice more on the same store (a pass killed after a killed pass).
    killed_mid_pass = 0
    for i, share in enumerate((0.02, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9)):
        db = tmp_path / f"killed{i}.db"
        shutil.copy(filled, db)
        for again in range(1 if i % 3 else 3):
            lines = _run_pass(script, db, seconds * share * (again + 1) / 2 if again else seconds * share)
            killed_mid_pass += not any(line.startswith("done") for line in lines)
            check_states(db, every_id)
        _run_pass(script, db, None)
        assert check_states(db, every_id) == expected  # the same end as a pass nobody interrupted
    assert killed_mid_pass >= 4, f"only {killed_mid_pass} kills landed inside a pass ({seconds} s)"
    assert any(line.startswith("done 0 0") for line in _run_pass(script, clean, None))  # nothing left to do


@pytest.fixture(params=["embedded", "postgres"])
def shared(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[], dict[str, Any]]]:
    """``shared()``: Memory keyword arguments for another handle on one store."""
    yield lambda: store_for(request.param, request, tmp_path / "m.db")


def test_adds_racing_passes_lose_nothing(shared: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    writer = Memory(**shared(), embedder=HashEmbedder(), config={"consolidation": {"merge_cosine": 0.5}})
    seed = [f"Seed fact {k} about topic{k % 5}" for k in range(60)]
    for start in range(0, 60, 20):
        writer.add([{"role": "user", "content": t} for t in seed[start : start + 20]], user_id="u", infer=False)
    passes: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def consolidate() -> None:
        try:
            with Memory(**shared(), embedder=HashEmbedder(), config={"consolidation": {"merge_cosine": 0.5}}) as m:
                while not stop.is_set():
                    passes.append(dict(m.consolidate(user_id="u")))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=consolidate)
    thread.start()
    added: dict[str, str] = {}
    try:
        k = 0
        while (k < 120 or len(passes) < 3) and k < 3000 and not errors:  # adds go on across 3 passes at least
            text = seed[k % 60].lower() + "!" if k % 2 else f"New fact {k} about topic{k % 5}"
            result = writer.add(text, user_id="u", infer=False)["results"][0]
            added[result["id"]] = text
            k += 1
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not errors, errors
    assert len(passes) >= 3
    final = writer.consolidate(user_id="u")
    everything = writer.get_all(user_id="u", limit=1000, include_merged=True, include_archived=True)["results"]
    by_id = {r["id"]: r for r in everything}
    active_keys = {near_exact_key(r["memory"]) for r in everything if "state" not in r}
    for mid, text in added.items():
        assert mid in by_id, f"the add of {text!r} was lost"
        assert near_exact_key(text) in active_keys, f"{text!r} is nowhere active"
    keys = [near_exact_key(r["memory"]) for r in everything if "state" not in r]
    assert len(keys) == len(set(keys)), "near-exact duplicates left after a full pass"
    assert final["scopes"] == 1
    writer.close()
