"""``memlane entities / entity / relations / neighbours / path`` and ``search --graph``, through
CliRunner, on the embedded store and with ``--url`` against a real server on 127.0.0.1.

The graph is written with ``Memory.add`` and a scripted ``FakeLLM`` into the home's database; the
CLI then reads it with the ``HashEmbedder`` registered as a provider (as ``tests/test_cli.py`` does).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from server_harness import serving, settings_for

from memlane import Memory
from memlane.cli import cli
from memlane.providers import registry
from memlane.server import KeyStore, create_app
from memlane.testing import FakeLLM, HashEmbedder

HASH = "cli-graph-hash"
CONFIG: dict[str, Any] = {"extraction": {"related": 0}}
CLEAN_ENV = {
    "MEMLANE_HOME": None, "MEMLANE_CONFIG": None, "MEMLANE_URL": None, "MEMLANE_API_KEY": None,
    "MEMLANE_JSON": None, "MEMLANE_DEBUG": None, "MEMLANE_DATABASE_URL": None, "COLUMNS": "200",
}  # fmt: skip


def fact(text: str, *names: str, relations: tuple[tuple[str, str, str], ...] = ()) -> dict[str, Any]:
    return {
        "text": text,
        "from": [1],
        "entities": [{"name": n, "type": "project" if n.startswith("Project") else "person"} for n in names],
        "relations": [{"subject": s, "predicate": p, "object": o, "exclusive": p == "reports_to"}
                      for s, p, o in relations],
    }  # fmt: skip


def build(memory: Memory, llm: FakeLLM) -> None:
    """Bob and Carol report to Alice; Dan to Bob; Bob moves under Carol in May; Alice leads Project X."""
    for timestamp, facts in (
        ("2026-01-10T09:00:00Z", [
            fact("Bob reports to Alice.", "Bob", "Alice", relations=(("Bob", "reports_to", "Alice"),)),
            fact("Carol reports to Alice.", "Carol", "Alice", relations=(("Carol", "reports_to", "Alice"),)),
            fact("Dan reports to Bob.", "Dan", "Bob", relations=(("Dan", "reports_to", "Bob"),)),
            fact("Alice leads Project X.", "Alice", "Project X", relations=(("Alice", "leads", "Project X"),)),
        ]),
        ("2026-05-01T09:00:00Z", [
            fact("Bob reports to Carol now.", "Bob", "Carol", relations=(("Bob", "reports_to", "Carol"),)),
        ]),
        ("2026-05-02T09:00:00Z", [fact("Bob is training for a marathon.", "Bob")]),
        ("2026-05-02T09:00:00Z", [fact("Zoe is training for a marathon.", "Zoe")]),
    ):  # fmt: skip
        llm.queue({"facts": facts})
        memory.add(" ".join(f["text"] for f in facts), user_id="alice", timestamp=timestamp)


@dataclass
class Cli:
    home: Path
    config: Path
    remote: tuple[str, ...] = ()

    def __call__(self, *args: str, expect: int = 0, json_out: bool = False) -> Result:
        argv = ["--home", str(self.home), "--config", str(self.config), *self.remote,
                *(["--json"] if json_out else []), *args]  # fmt: skip
        result = CliRunner().invoke(cli, argv, env=dict(CLEAN_ENV), catch_exceptions=False)
        assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self(*args, expect=expect, json_out=True).stdout)


@pytest.fixture(scope="module")
def graph_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Memory]]:
    registry.add_embedder(HASH, lambda config: HashEmbedder())
    root = tmp_path_factory.mktemp("cli-graph")
    config = root / "config.json"
    config.write_text(json.dumps({"embedder": {"provider": HASH}}), encoding="utf-8")
    llm = FakeLLM()
    with Memory(path=root / "home" / "memlane.db", embedder=HashEmbedder(), llm=llm, config=CONFIG) as memory:
        build(memory, llm)
        yield root / "home", config, memory


@pytest.fixture(scope="module", params=["embedded", "url"])
def run(request: pytest.FixtureRequest, graph_home: tuple[Path, Path, Memory]) -> Iterator[Cli]:
    home, config, memory = graph_home
    if request.param == "embedded":
        yield Cli(home, config)
        return
    settings = settings_for(home.parent / "server")
    _, token = KeyStore(settings.keys_path).create("cli", admin=True)
    with serving(create_app(memory, settings)) as url:
        # --home elsewhere: with --url nothing may be read from (or written to) the local home
        yield Cli(home.parent / "client-home", config, ("--url", url, "--api-key", token))


@pytest.fixture
def memory(graph_home: tuple[Path, Path, Memory]) -> Memory:
    return graph_home[2]


def test_json_output_is_the_api_value(run: Cli, memory: Memory) -> None:
    assert run.json("entities", "-u", "alice") == memory.entities(user_id="alice")
    bob = next(e["id"] for e in memory.entities(user_id="alice")["results"] if e["name"] == "Bob")
    assert run.json("entity", bob) == memory.entity(bob)
    assert run.json("relations", "Bob", "-u", "alice") == memory.relations("Bob", user_id="alice")
    assert run.json("relations", "bob", "-u", "alice", "--predicate", "reports to", "--direction", "out",
                    "--as-of", "2026-03-01T00:00:00Z") == memory.relations(
        "Bob", user_id="alice", predicate="reports_to", direction="out", as_of="2026-03-01T00:00:00Z"
    )  # fmt: skip
    assert run.json("neighbours", "Alice", "-u", "alice", "--depth", "2") == memory.neighbours(
        "Alice", user_id="alice", depth=2
    )
    assert run.json("neighbours", "Carol", "-u", "alice", "--as-of", "2026-03-01") == memory.neighbours(
        "Carol", user_id="alice", as_of="2026-03-01"
    )
    assert run.json("path", "Dan", "Carol", "-u", "alice") == memory.path("Dan", "Carol", user_id="alice")
    assert run.json("path", "Zoe", "Alice", "-u", "alice") == {"found": False, "results": []}
    query = "Is anyone on Carol's team training?"
    found = run.json("search", query, "-u", "alice", "--graph", "--explain")
    assert found == memory.search(query, user_id="alice", graph=True, explain=True, limit=10)
    assert found["results"][0]["memory"] == "Bob is training for a marathon."
    assert not (run.remote and run.home.exists())  # with --url the local home stays untouched


def test_tables_for_people(run: Cli) -> None:
    listed = run("entities", "-u", "alice").stdout
    assert "Project X" in listed and "project" in listed and "u=alice" in listed
    assert "Bob reports_to Carol" in run("relations", "Bob", "-u", "alice", "--direction", "out").stdout
    then = run("relations", "Bob", "-u", "alice", "--direction", "out", "--as-of", "2026-03-01").stdout
    assert "Bob reports_to Alice" in then and "2026-05-01" in then  # closed when Bob moved
    near = run("neighbours", "Alice", "-u", "alice", "--depth", "2").stdout
    assert "Project X" in near and "Bob" in near and "Dan" not in near  # Dan is three away now
    chain = run("path", "Dan", "Alice", "-u", "alice").stdout
    assert chain.index("Dan reports_to Bob") < chain.index("Bob reports_to Carol") < chain.index("Carol reports_to")
    assert "no chain of relations joins Zoe and Alice" in run("path", "Zoe", "Alice", "-u", "alice").stdout
    assert "same entity" in run("path", "Bob", "bob", "-u", "alice").stdout
    assert "no relations" in run("relations", "Zoe", "-u", "alice").stdout
    explained = run("search", "Is anyone on Carol's team training?", "-u", "alice", "--graph", "--explain").stdout
    assert "graph 0.50 (Bob, via Carol reports_to)" in explained


def test_errors_exit_as_documented(run: Cli) -> None:
    assert "EntityNotFound" in run("entity", "no-such-entity", expect=3).stderr
    assert run.json("relations", "Nobody", "-u", "alice", expect=3)["error"]["type"] == "EntityNotFound"
    assert "ScopeRequired" in run("entities", expect=2).stderr
    assert "depth" in run("neighbours", "Bob", "-u", "alice", "--depth", "9", expect=2).stderr
    run("relations", "Bob", "-u", "alice", "--direction", "sideways", expect=2)  # click refuses the choice
    assert "as_of" in run("path", "Bob", "Dan", "-u", "alice", "--as-of", "last spring", expect=2).stderr
