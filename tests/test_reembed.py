"""``Memory.reembed`` and ``memlane reembed``: every vector renewed, resumable, the store usable throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from memlane import EmbedderMismatch, Memory
from memlane.cli import cli
from memlane.core.text import index_text
from memlane.errors import ConfigError, ProviderError
from memlane.protocols import EmbedKind, Vectors
from memlane.providers import registry
from memlane.stores.postgres import PostgresStore
from memlane.testing import FakeLLM, FrozenClock, HashEmbedder

OLD = ("hash-old", 64)
NEW = ("hash-new", 96)


def old() -> HashEmbedder:
    return HashEmbedder(OLD[1], OLD[0])


def new() -> HashEmbedder:
    return HashEmbedder(NEW[1], NEW[0])


class Failing(HashEmbedder):
    """The new embedder, failing at its call number ``fail_at`` (a crash mid-way)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(NEW[1], NEW[0])
        self.fail_at = fail_at
        self.texts = 0

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        if self.calls + 1 == self.fail_at:
            self.calls += 1
            raise ProviderError("the embedder went away", provider="failing")
        self.texts += len(texts)
        return super().embed(texts, kind=kind)


@pytest.fixture(params=["sqlite", "postgres"])
def open_memory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Memory]:
    """``open_memory(embedder, **kwargs)``: a Memory on the test's store (a file, or a PostgreSQL database)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None

    def make(embedder: Any, **kwargs: Any) -> Memory:
        if url is None:
            return Memory(tmp_path / "m.db", embedder=embedder, **kwargs)
        return Memory(store=PostgresStore(url, max_size=4, timeout=10.0), embedder=embedder, **kwargs)

    return make


def fill(memory: Memory, clock: FrozenClock, llm: FakeLLM, n: int = 40) -> None:
    """Verbatim messages in two scopes, with speakers, and a fact with a past version."""
    for i in range(n):
        memory.add(
            {"role": "user", "content": f"note {i}: the garden needs {i} tomatoes", "name": "Ann" if i % 3 else None},
            user_id="u" if i % 2 else "v",
            infer=False,
        )
    llm.queue(FakeLLM.facts("The user lives in Berlin."))
    memory.add("I live in Berlin", user_id="w", infer=True, timestamp="2025-11-02T10:00:00Z")
    clock.advance(days=30)
    llm.queue(
        FakeLLM.facts("The user moved to Amsterdam in May 2026."),
        FakeLLM.decisions(("f1", "UPDATE", "m1", "The user moved from Berlin to Amsterdam in May 2026.")),
    )
    memory.add("We moved to Amsterdam this month!", user_id="w", infer=True, timestamp="2026-05-20T08:00:00Z")


def stored(memory: Memory) -> dict[str, np.ndarray]:
    """Every row's vector (past versions included), by its embedded text."""
    memory.get_all(user_id="u", limit=1)  # opens the store
    rows = memory.store._read("SELECT memory, actor_id, embedding FROM memories")  # type: ignore[attr-defined]
    out = {}
    for text, actor, vector in rows:
        out[index_text(text, actor or None)] = stored_vector(vector)
    return out


def stored_vector(value: Any) -> np.ndarray:
    """A vector as read from SQLite (bytes) or PostgreSQL (pgvector's type)."""
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype="<f4").astype(np.float32)
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def assert_all_new(memory: Memory) -> None:
    vectors = stored(memory)
    texts = sorted(vectors)
    expected = new().embed(texts)
    np.testing.assert_allclose(np.stack([vectors[t] for t in texts]), expected, atol=1e-6)


def check_switched(open_memory: Callable[..., Memory]) -> None:
    with open_memory(new()) as memory:
        assert_all_new(memory)
        hits = memory.search("garden tomatoes note 7", user_id="u", limit=3)["results"]
        assert "note 7:" in hits[0]["memory"]
        then = memory.search("Berlin", user_id="w", as_of="2026-01-01T00:00:00Z")["results"]
        assert then[0]["memory"] == "The user lives in Berlin."
    with pytest.raises(EmbedderMismatch), open_memory(old()) as stale:
        stale.search("garden", user_id="u")


def test_reembed_renews_every_vector_and_switches(open_memory: Callable[..., Memory]) -> None:
    clock, llm = FrozenClock(), FakeLLM()
    seen: list[tuple[int, int]] = []
    with open_memory(old(), clock=clock, llm=llm) as memory:
        fill(memory, clock, llm)
        result = memory.reembed(new(), batch_size=7, progress=lambda done, total: seen.append((done, total)))
        assert result["switched"] and (result["previous"], result["previous_dimension"]) == OLD
        assert (result["embedder"], result["dimension"]) == NEW
        assert result["vectors"] == result["embedded"] == 42 and result["resumed"] == 0
        # The same Memory goes on with the new embedder.
        assert memory.embedder.model_id == NEW[0]
        assert memory.search("Amsterdam", user_id="w")["results"]
    assert seen[-1] == (42, 42) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    check_switched(open_memory)


def test_same_embedder_is_nothing_to_do(open_memory: Callable[..., Memory]) -> None:
    with open_memory(old()) as memory:
        memory.add("hello there", user_id="u")
        result = memory.reembed(old())
        assert not result["switched"] and result["embedded"] == 0 and result["previous"] == OLD[0]
        assert memory.search("hello", user_id="u")["results"]


def test_unknown_provider_is_a_config_error(tmp_path: Path) -> None:
    with Memory(tmp_path / "m.db", embedder=old()) as memory, pytest.raises(ConfigError, match="no-such"):
        memory.reembed({"provider": "no-such-embedder"})


def test_crash_then_resume_gives_the_uninterrupted_result(open_memory: Callable[..., Memory]) -> None:
    clock, llm = FrozenClock(), FakeLLM()
    with open_memory(old(), clock=clock, llm=llm) as memory:
        fill(memory, clock, llm)
        failing = Failing(fail_at=4)
        with pytest.raises(ProviderError):
            memory.reembed(failing, batch_size=5)
        assert failing.texts == 15  # three batches staged before the failure
    # The store still works with the old embedder, adds and updates included.
    with open_memory(old(), clock=clock) as memory:
        memory.add("a new note while half re-embedded", user_id="u")
        first = memory.get_all(user_id="v", limit=100)["results"][-1]  # the oldest: its vector is staged
        memory.update(first["id"], "note 0: the garden needs new seeds")
        assert memory.search("half re-embedded", user_id="u")["results"]
    with open_memory(old()) as memory:
        resumed = Failing(fail_at=0)
        result = memory.reembed(resumed, batch_size=5)
        assert result["switched"] and result["resumed"] == 14  # 15 staged, minus the row updated since
        assert result["embedded"] == resumed.texts == 43 - 14  # finished batches were not embedded again
    check_switched(open_memory)


def test_adds_during_a_running_reembed_are_covered(open_memory: Callable[..., Memory]) -> None:
    with open_memory(old()) as memory:
        for i in range(30):
            memory.add(f"note {i}: the garden needs {i} tomatoes", user_id="u")
    other = open_memory(old())
    added: list[str] = []

    def meanwhile(done: int, total: int) -> None:
        if 0 < done < 30 and len(added) < 3:  # another process writes with the old embedder
            added.append(other.add(f"added during the run {len(added)}", user_id="u")["results"][0]["id"])

    with open_memory(old()) as memory:
        result = memory.reembed(new(), batch_size=4, progress=meanwhile)
    other.close()
    assert result["switched"] and result["vectors"] == 33 and len(added) == 3
    with open_memory(new()) as memory:
        assert_all_new(memory)
        assert memory.search("added during the run 2", user_id="u")["results"][0]["id"] == added[2]


def test_another_target_discards_staged_vectors(tmp_path: Path) -> None:
    with Memory(tmp_path / "m.db", embedder=old()) as memory:
        for i in range(12):
            memory.add(f"note {i}", user_id="u")
        with pytest.raises(ProviderError):
            memory.reembed(Failing(fail_at=2), batch_size=5)
        result = memory.reembed(HashEmbedder(32, "hash-third"), batch_size=5)
        assert result["discarded"] == 5 and result["resumed"] == 0 and result["embedded"] == 12


_KILLED_RUN = """
import sys, time
from memlane import Memory
from memlane.testing import HashEmbedder

class Slow(HashEmbedder):
    def embed(self, texts, *, kind="document"):
        out = super().embed(texts, kind=kind)
        print("batch", flush=True)
        time.sleep(0.2)
        return out

Memory(sys.argv[1], embedder=HashEmbedder(64, "hash-old")).reembed(Slow(96, "hash-new"), batch_size=5)
"""


@pytest.mark.slow
def test_sigkill_mid_way_then_rerun(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves a working store; the rerun finishes it as if never interrupted."""
    path = tmp_path / "m.db"
    with Memory(path, embedder=old()) as memory:
        for i in range(40):
            memory.add(f"note {i}: the garden needs {i} tomatoes", user_id="u")
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN))
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(4):
        assert proc.stdout.readline().strip() == "batch"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    with Memory(path, embedder=old()) as memory:  # still the old embedder's store
        assert memory.search("garden", user_id="u")["results"]
        memory.add("written after the crash", user_id="u")
        counter = Failing(fail_at=0)
        result = memory.reembed(counter, batch_size=5)
    assert 10 <= result["resumed"] <= 20 and result["embedded"] == counter.texts == 41 - result["resumed"]
    with Memory(path, embedder=new()) as memory:
        assert_all_new(memory)


def test_cli_reembed(tmp_path: Path) -> None:
    registry.add_embedder("hash-test", lambda cfg: HashEmbedder(int(cfg.get("dimension", 64)), cfg.get("id", "x")))
    home = tmp_path / "home"
    with Memory(home / "memlane.db", embedder=old()) as memory:
        for i in range(9):
            memory.add(f"note {i}: the garden", user_id="u")
    runner = CliRunner()
    args = ["--home", str(home), "reembed", "--embedder", "hash-test", "--batch-size", "4"]
    config = json.dumps({"dimension": NEW[1], "id": NEW[0]})
    done = runner.invoke(cli, [*args, "--embedder-config", config])
    assert done.exit_code == 0, done.output
    assert "re-embedded 9 vectors" in done.output and '"provider": "hash-test"' in done.output
    again = runner.invoke(cli, ["--json", *args, "--embedder-config", config])
    assert again.exit_code == 0 and json.loads(again.output)["switched"] is False
    again = runner.invoke(cli, [*args, "--embedder-config", config])
    assert "nothing to do" in again.output
    unknown = runner.invoke(cli, ["--home", str(home), "reembed", "--embedder", "nope"])
    assert unknown.exit_code == 2 and "unknown embedder provider 'nope'" in unknown.output
    missing = runner.invoke(cli, ["--home", str(tmp_path / "none"), "reembed", "--embedder", "hash-test"])
    assert missing.exit_code == 2 and "no store" in missing.output
    with Memory(home / "memlane.db", embedder=new()) as memory:
        assert_all_new(memory)


def test_cli_reembed_progress_bar(tmp_path: Path) -> None:
    registry.add_embedder("hash-test", lambda cfg: HashEmbedder(int(cfg.get("dimension", 64)), cfg.get("id", "x")))
    with Memory(tmp_path / "memlane.db", embedder=old()) as memory:
        memory.add("one note", user_id="u")
    started = time.monotonic()
    done = CliRunner().invoke(
        cli,
        ["--home", str(tmp_path), "reembed", "--embedder", "hash-test", "--progress", "--embedder-config", "{}"],
    )
    assert done.exit_code == 0, done.output
    assert "reembed" in done.output and "1/1" in done.output and time.monotonic() - started < 30


def test_passages_of_long_memories_are_reembedded(open_memory: Callable[..., Memory]) -> None:
    """A long memory's passages get new vectors too, and its own vector stays its first passage's."""
    config = {"passages": {"max_chars": 200, "split_above": 200, "overlap": 0.1}}
    words = "the garden behind the house has tomatoes beans and a very old apple tree".split()
    long_text = " ".join(words[i % len(words)] for i in range(300)) + " the hidden key is under the blue flowerpot"
    with open_memory(old(), config=config) as memory:
        memory.add(long_text, user_id="u")
        memory.add("a short note about bicycles", user_id="u")
        result = memory.reembed(new(), batch_size=4)
    rows = result["vectors"]
    assert result["switched"] and rows > 10  # the two memories and the long one's passages
    with open_memory(new(), config=config) as memory:
        hits = memory.search("where is the hidden key? blue flowerpot", user_id="u")["results"]
        assert hits[0]["memory"] == long_text
        memory.get_all(user_id="u", limit=1)
        store: Any = memory.store
        passages = store._read(
            "SELECT m.memory, m.actor_id, p.char_start, p.char_end, p.seq, p.embedding "
            "FROM passages p JOIN memories m ON m.rid = p.rid"
        )
        row = store._read("SELECT embedding FROM memories WHERE memory = ?", (long_text,))[0][0]
    assert len(passages) == rows - 2
    as_array = stored_vector
    for text, actor, start, end, seq, vector in passages:
        expected = new().embed([index_text(text[start:end], actor or None)])[0]
        np.testing.assert_allclose(as_array(vector), expected, atol=1e-6)
        if seq == 0:
            np.testing.assert_allclose(as_array(row), expected, atol=1e-6)


def test_cli_reembed_postgres(postgres_url: str, tmp_path: Path) -> None:
    registry.add_embedder("hash-test", lambda cfg: HashEmbedder(int(cfg.get("dimension", 64)), cfg.get("id", "x")))
    with Memory(store=PostgresStore(postgres_url), embedder=old()) as memory:
        for i in range(6):
            memory.add(f"note {i}: the garden", user_id="u")
    config = json.dumps({"dimension": NEW[1], "id": NEW[0]})
    args = ["--home", str(tmp_path), "--database-url", postgres_url, "--json", "reembed", "--embedder", "hash-test"]
    done = CliRunner().invoke(cli, [*args, "--embedder-config", config])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    assert result["switched"] and result["vectors"] == 6 and "schema memlane" in result["store"]
    with Memory(store=PostgresStore(postgres_url), embedder=new()) as memory:
        assert_all_new(memory)
