"""``memlane consolidate / profile / restore``, ``--include-merged`` / ``--include-archived`` on
``search`` and ``list``, and ``serve --consolidate-every``, through CliRunner, on the embedded store
and with ``--url`` against a real server on 127.0.0.1.

The store is written with ``Memory`` into the home's database (no LLM: near-exact duplicates merge);
the CLI reads it with the ``HashEmbedder`` registered as a provider (as ``tests/test_cli.py`` does).
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
from memlane.testing import HashEmbedder

HASH = "cli-consolidate-hash"
CLEAN_ENV = {
    "MEMLANE_HOME": None, "MEMLANE_CONFIG": None, "MEMLANE_URL": None, "MEMLANE_API_KEY": None,
    "MEMLANE_JSON": None, "MEMLANE_DEBUG": None, "MEMLANE_DATABASE_URL": None, "COLUMNS": "200",
}  # fmt: skip
DUPLICATES = ("I love sushi", "i love sushi!", "I love  Sushi.")


@dataclass
class Cli:
    home: Path
    config: Path
    url: str | None = None
    token: str | None = None

    def __call__(self, *args: str, expect: int = 0) -> Result:
        remote = ["--url", self.url, "--api-key", self.token or ""] if self.url else []
        argv = ["--home", str(self.home), "--config", str(self.config), *remote, *args]
        result = CliRunner().invoke(cli, argv, env=dict(CLEAN_ENV), catch_exceptions=False)
        assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self("--json", *args, expect=expect).stdout)


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    registry.add_embedder(HASH, lambda config: HashEmbedder())


@pytest.fixture
def run(tmp_path: Path) -> Cli:
    """The CLI on a home whose store holds three spellings of one fact for alice and for acme:bob."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"embedder": {"provider": HASH}}), encoding="utf-8")
    with Memory(path=tmp_path / "memlane.db", embedder=HashEmbedder()) as memory:
        for user in ("alice", "acme:bob"):
            for text in DUPLICATES:
                memory.add(text, user_id=user, infer=False)
            memory.add("My sister Ana visits in June", user_id=user, infer=False)
    return Cli(tmp_path, config)


def test_a_dry_run_says_what_would_change_and_changes_nothing(run: Cli) -> None:
    out = run("consolidate", "-u", "alice", "--dry-run").stdout
    assert "dry run: 1 scopes, 4 memories examined" in out and "would change: 2 merged" in out
    assert "merged" in out and "I love sushi" in out and "skipped: similar memories" in out
    assert len(run.json("list", "-u", "alice")["results"]) == 4


def test_consolidate_merges_and_the_include_flags_show_it(run: Cli) -> None:
    report = run.json("consolidate", "--user-id", "alice")
    (merge,) = report["merged"]
    assert report["scopes"] == 1 and merge["memory"] == "I love sushi" and len(merge["ids"]) == 2
    assert len(run.json("list", "-u", "alice")["results"]) == 2
    listed = run.json("list", "-u", "alice", "--include-merged")["results"]
    assert sorted(m.get("state", "active") for m in listed) == ["active", "active", "merged", "merged"]
    shown = run("list", "-u", "alice", "--include-merged", "--include-archived").stdout
    assert f"[merged into {merge['into']}]" in shown
    hits = run.json("search", "sushi", "-u", "alice", "--include-merged")["results"]
    assert {h["id"] for h in hits} >= set(merge["ids"])
    assert "[merged into" in run("search", "sushi", "-u", "alice", "--include-merged").stdout
    assert "[merged" not in run("search", "sushi", "-u", "alice").stdout
    # the command's own --json, as the global one
    again = json.loads(run("consolidate", "-u", "alice", "--json").stdout)
    assert again["merged"] == [] and again["examined"] == 2


def test_the_whole_store_with_a_progress_bar(run: Cli) -> None:
    result = run("consolidate", "--progress")
    assert "2 scopes, 8 memories examined" in result.stdout and "4 merged" in result.stdout
    assert "consolidate" in result.stderr and "2/2" in result.stderr
    assert "profiles rebuilt: alice, acme:bob" in result.stdout or "profiles rebuilt: acme:bob, alice" in result.stdout


def test_profile_prints_the_text_or_the_json(run: Cli) -> None:
    run("consolidate")
    assert run("profile", "--user-id", "alice").stdout.startswith("Preferences: I love sushi\n")
    profile = run.json("profile", "-u", "alice", "--refresh")
    assert profile["user_id"] == "alice" and profile["mode"] == "graph"
    assert profile["sections"]["preferences"][0]["text"] == "I love sushi"
    assert run("profile", "-u", "nobody").stdout.strip() == "nothing known about nobody yet"
    assert "Missing option" in run("profile", expect=2).stderr


def test_restore_and_its_exit_codes(run: Cli) -> None:
    merged = run.json("consolidate", "-u", "alice")["merged"][0]["ids"][0]
    item = run.json("restore", merged)
    assert item["id"] == merged and "state" not in item
    assert merged in run("restore", merged, expect=2).stderr  # active already: InvalidRequest
    assert "MemoryNotFound" in run("restore", "nope", expect=3).stderr
    error = json.loads(run("restore", "nope", "--json", expect=3).stdout)
    assert error["error"]["type"] == "MemoryNotFound"


def test_serve_refuses_a_bad_interval(run: Cli) -> None:
    for bad in ("5x", "0s", "-1h", "soon"):
        result = run("serve", "--consolidate-every", bad, expect=2)
        assert "--consolidate-every" in result.stderr and "30s, 15m, 1h or 1d" in result.stderr


@pytest.fixture
def remote(run: Cli) -> Iterator[tuple[Cli, Cli]]:
    """The same home behind a real server: the CLI with an admin key, and with tenant acme's key."""
    settings = settings_for(run.home / "server")
    keys = KeyStore(settings.keys_path)
    _, admin = keys.create("admin", admin=True)
    _, acme = keys.create("acme", namespace="acme")
    keys.close()
    with Memory(path=run.home / "memlane.db", embedder=HashEmbedder()) as memory, serving(
        create_app(memory, settings)
    ) as url:  # fmt: skip
        yield Cli(run.home, run.config, url, admin), Cli(run.home, run.config, url, acme)


def test_with_url_the_server_consolidates_as_the_embedded_store_does(run: Cli, remote: tuple[Cli, Cli]) -> None:
    admin, tenant = remote
    local = run.json("consolidate", "--dry-run")
    over_http = admin.json("consolidate", "--dry-run")
    assert {k: v for k, v in over_http.items() if k != "seconds"} == {k: v for k, v in local.items() if k != "seconds"}
    assert "PermissionDenied" in tenant("consolidate", expect=4).stderr  # the whole store: admin keys only
    assert "PermissionDenied" in tenant("consolidate", "-u", "alice", expect=4).stderr
    report = tenant.json("consolidate", "-u", "acme:bob")
    merged = report["merged"][0]["ids"][0]
    assert len(run.json("list", "-u", "alice")["results"]) == 4  # alice untouched
    assert "Preferences: I love sushi" in tenant("profile", "-u", "acme:bob").stdout
    assert "PermissionDenied" in tenant("profile", "-u", "alice", expect=4).stderr
    assert tenant.json("list", "-u", "acme:bob", "--include-merged")["results"][0]["user_id"] == "acme:bob"
    assert tenant.json("restore", merged)["id"] == merged
    alice_merged = admin.json("consolidate", "-u", "alice")["merged"][0]["ids"][0]
    assert "MemoryNotFound" in tenant("restore", alice_merged, expect=3).stderr
