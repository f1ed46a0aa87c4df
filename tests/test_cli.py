"""The ``memlane`` command line, end to end: CliRunner in process, plus a few real subprocesses.

In-process runs use the shipped ``HashEmbedder`` registered as a provider (the way a plugin would
register one), so the CLI builds it from a plain JSON config file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result
from wire_server import closed_port

import memlane
from memlane.cli import EXIT_CODES, cli, exit_code
from memlane.providers import registry
from memlane.server.keys import KeyStore, parse_token
from memlane.testing import HashEmbedder

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "cli.md"
HASH = "cli-test-hash"
BROKEN = "cli-test-broken"
CLEAN_ENV: Mapping[str, str | None] = {
    "MEMLANE_HOME": None, "MEMLANE_CONFIG": None, "MEMLANE_URL": None, "MEMLANE_API_KEY": None,
    "MEMLANE_JSON": None, "MEMLANE_DEBUG": None, "MEMLANE_DATABASE_URL": None, "COLUMNS": "200",
}  # fmt: skip


class BrokenEmbedder:
    """An embedder whose every ``embed`` raises the error its config names (a fake, not a mock)."""

    dimension = 8
    model_id = "broken-embedder"

    def __init__(self, config: Mapping[str, Any]) -> None:
        name = str(config.get("raise", "RuntimeError"))
        self.error: type[Exception] = getattr(memlane, name, RuntimeError)

    def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        raise self.error(f"{self.error.__name__} raised by the test embedder")


@pytest.fixture(scope="module", autouse=True)
def _providers() -> None:
    registry.add_embedder(HASH, lambda config: HashEmbedder())
    registry.add_embedder(BROKEN, BrokenEmbedder)


class Cli:
    """Runs ``memlane --home <home> --config <config> ...`` in process and checks the exit code."""

    def __init__(self, home: Path, config: Path) -> None:
        self.home, self.config = home, config

    def __call__(self, *args: str, expect: int = 0, input: str | None = None, json_out: bool = False) -> Result:
        argv = ["--home", str(self.home), "--config", str(self.config), *(["--json"] if json_out else []), *args]
        result = CliRunner().invoke(cli, argv, input=input, env=dict(CLEAN_ENV), catch_exceptions=False)
        assert result.exit_code == expect, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        return result

    def json(self, *args: str, expect: int = 0, input: str | None = None) -> Any:
        return json.loads(self(*args, expect=expect, input=input, json_out=True).stdout)


def _config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def run(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", _config(tmp_path / "config.json", {"embedder": {"provider": HASH}}))


def _broken(tmp_path: Path, error: str) -> Cli:
    config = _config(tmp_path / "broken.json", {"embedder": {"provider": BROKEN, "config": {"raise": error}}})
    return Cli(tmp_path / "broken-home", config)


def _add(run: Cli, *texts: str, scope: Sequence[str] = ("-u", "alice")) -> list[str]:
    return [r["id"] for r in run.json("add", *scope, *texts)["results"]]


# -- memories -------------------------------------------------------------------------------
def test_add_list_get_update_delete_history(run: Cli) -> None:
    added = run.json("add", "-u", "alice", "I'm vegetarian", "I live in Berlin", "--metadata", '{"topic": "food"}')
    assert added["mode"] == "verbatim" and [r["event"] for r in added["results"]] == ["ADD", "ADD"]
    first, second = (r["id"] for r in added["results"])
    listed = run.json("list", "-u", "alice")
    assert {m["id"] for m in listed["results"]} == {first, second} and listed["next_cursor"] is None
    item = run.json("get", first, "--sources")
    assert item["memory"] == "I'm vegetarian" and item["metadata"] == {"topic": "food"}
    assert item["sources"][0]["content"] == "I'm vegetarian"
    updated = run.json("update", second, "I live in Lisbon", "--metadata", '{"topic": "home"}')
    assert (updated["memory"], updated["metadata"]) == ("I live in Lisbon", {"topic": "home"})
    assert run.json("delete", first) == {"message": f"memory {first} deleted"}
    assert [e["event"] for e in run.json("history", second)] == ["ADD", "UPDATE"]
    assert [e["event"] for e in run.json("history", first)] == ["ADD", "DELETE"]
    table = run("list", "-u", "alice").stdout
    assert "I live in Lisbon" in table and second in table and "u=alice" in table
    assert "UPDATE" in run("history", second).stdout


def test_add_messages_from_file_and_stdin(run: Cli, tmp_path: Path) -> None:
    messages = [
        {"role": "user", "content": "I moved to Lisbon", "name": "Al"},
        {"role": "assistant", "content": "Nice!"},
    ]
    path = tmp_path / "messages.json"
    path.write_text(json.dumps(messages), encoding="utf-8")
    assert len(run.json("add", "-u", "al", "--messages", str(path))["results"]) == 2
    result = run.json("add", "-u", "bo", "--messages", "-", input=json.dumps(messages[:1]))
    assert run.json("get", result["results"][0]["id"])["actor_id"] == "Al"
    run("add", "-u", "al", "text", "--messages", str(path), expect=2)
    run("add", "-u", "al", expect=2)
    run("add", "-u", "al", "--messages", "-", input='{"role": "user"}', expect=2)
    run("add", "-u", "al", "--messages", "-", input="[{}]", expect=2)  # InvalidRequest: no content


def test_add_timestamp_ttl_and_human_output(run: Cli) -> None:
    out = run("add", "-u", "alice", "Dinner at eight", "--timestamp", "2026-05-04T09:30:00Z", "--ttl", "3600")
    assert "ADD" in out.stdout and "Dinner at eight" in out.stdout and "mode: verbatim" in out.stdout
    item = run.json("list", "-u", "alice")["results"][0]
    assert item["timestamp"].startswith("2026-05-04T09:30:00") and item["expires_at"] is not None
    run("add", "-u", "alice", "x", "--timestamp", "yesterday", expect=2)
    run("add", "-u", "alice", "x", "--infer", expect=2)  # LLMRequired: no LLM configured
    assert run.json("add", "-u", "alice", "stored as said", "--no-infer")["mode"] == "verbatim"


def test_search_options(run: Cli) -> None:
    _add(run, "I love spicy curry", scope=("-u", "alice", "-r", "s1"))
    run.json("add", "-u", "alice", "My sister lives in Paris", "--metadata", '{"topic": "family"}')
    hits = run.json("search", "curry", "-u", "alice", "--explain", "--limit", "5")["results"]
    assert hits[0]["memory"] == "I love spicy curry" and 0 <= hits[0]["score"] <= 1 and "explain" in hits[0]
    filtered = run.json("search", "curry", "-u", "alice", "--filters", '{"topic": "family"}')["results"]
    assert [h["memory"] for h in filtered] == ["My sister lives in Paris"]
    assert run.json("search", "curry", "-u", "alice", "--threshold", "0.99")["results"] == []
    assert run.json("search", "curry", "-u", "alice", "--as-of", "2000-01-01T00:00:00Z")["results"] == []
    assert run.json("search", "curry", "-r", "s1")["results"][0]["run_id"] == "s1"
    table = run("search", "curry", "-u", "alice", "--explain").stdout
    assert "I love spicy curry" in table and "dense" in table
    run("search", "curry", "-u", "alice", "--filters", '{"topic": {"$bogus": 1}}', expect=2)


def test_list_pages_and_all(run: Cli) -> None:
    ids = _add(run, *(f"fact number {i}" for i in range(5)))
    page = run.json("list", "-u", "alice", "--limit", "2")
    assert len(page["results"]) == 2 and page["next_cursor"]
    rest = run.json("list", "-u", "alice", "--limit", "2", "--cursor", page["next_cursor"])
    assert not {m["id"] for m in rest["results"]} & {m["id"] for m in page["results"]}
    every = run.json("list", "-u", "alice", "--limit", "2", "--all")
    assert sorted(m["id"] for m in every["results"]) == sorted(ids) and every["next_cursor"] is None
    assert "more: --cursor" in run("list", "-u", "alice", "--limit", "2").stdout


def test_delete_all_and_reset_ask_first(run: Cli) -> None:
    _add(run, "alice fact")
    bob = _add(run, "bob fact", scope=("-u", "bob"))[0]
    assert "ScopeRequired" in run("delete-all", "--yes", expect=2).stderr
    run("delete-all", "-u", "alice", input="n\n", expect=2)
    run("delete-all", "-u", "alice", expect=2)  # no answer (end of input): nothing deleted
    assert len(run.json("list", "-u", "alice")["results"]) == 1
    assert run.json("delete-all", "-u", "alice", "--purge", input="y\n")["deleted"] == 1
    assert run.json("list", "-u", "alice")["results"] == []
    run("reset", input="n\n", expect=2)
    assert run.json("get", bob)["memory"] == "bob fact"
    assert run.json("reset", "--yes") is None
    run("get", bob, expect=3)


def test_purged_history_is_redacted(run: Cli) -> None:
    memory_id = _add(run, "secret diagnosis")[0]
    run("delete", memory_id, "--purge")
    assert all(e["redacted"] for e in run.json("history", memory_id))
    out = run("history", memory_id).stdout
    assert "[redacted]" in out and "secret diagnosis" not in out


# -- errors and exit codes --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "code"),
    [
        (memlane.MemoryConflict("x"), 6), (memlane.ScopeRequired("x"), 2), (memlane.InvalidFilter("x"), 2),
        (memlane.RequestTooLarge("x"), 2), (memlane.ConfigError("x"), 2), (memlane.LLMRequired("x"), 2),
        (memlane.EmbedderMismatch("x"), 2), (memlane.MemoryNotFound("x"), 3), (memlane.AuthenticationError("x"), 4),
        (memlane.PermissionDenied("x"), 4), (memlane.ProviderAuthError("x"), 4), (memlane.ServiceUnavailable("x"), 5),
        (memlane.RequestTimeout("x"), 5), (memlane.RateLimited("x"), 5), (memlane.StoreBusy("x"), 5),
        (memlane.ProviderUnavailable("x"), 5), (memlane.LLMOutputError("x"), 5), (memlane.MemlaneError("x"), 1),
        (RuntimeError("x"), 1),
    ],
)  # fmt: skip
def test_exit_code_table(error: BaseException, code: int) -> None:
    assert exit_code(error) == code


def test_error_output(run: Cli) -> None:
    result = run("get", "no-such-id", expect=3)
    assert result.stderr.strip() == "error: MemoryNotFound: no memory with id 'no-such-id'" and result.stdout == ""
    body = run.json("get", "no-such-id", expect=3)
    assert body == {"error": {"type": "MemoryNotFound", "message": "no memory with id 'no-such-id'"}}
    run("update", "no-such-id", "text", expect=3)
    run("delete", "no-such-id", expect=3)
    assert "ScopeRequired" in run("list", expect=2).stderr
    run("search", "query", expect=2)
    run("add", "text", expect=2)
    bad = run("add", "-u", "alice", "text", "--metadata", "{not json", expect=2)
    assert "--metadata" in bad.stderr and "Traceback" not in bad.stderr
    assert run.json("add", "-u", "a", "t", "--metadata", "[1]", expect=2)["error"]["type"] == "BadParameter"
    run("list", "-u", "alice", "--limit", "many", expect=2)
    assert "no-such-command" in run.json("no-such-command", expect=2)["error"]["message"]


@pytest.mark.parametrize(("error", "code"), [("ProviderUnavailable", 5), ("ProviderAuthError", 4), ("RuntimeError", 1)])
def test_provider_failures_map_to_exit_codes(tmp_path: Path, error: str, code: int) -> None:
    result = _broken(tmp_path, error)("add", "-u", "alice", "text", expect=code)
    assert result.stderr.startswith(f"error: {error}: {error} raised by the test embedder")
    assert "Traceback" not in result.stderr


def test_unreachable_server_exits_5(run: Cli) -> None:
    body = run.json("--url", f"http://127.0.0.1:{closed_port()}", "list", "-u", "alice", expect=5)
    assert body["error"]["type"] == "ServiceUnavailable"
    assert not run.home.exists()


def test_reads_create_nothing_on_disk(run: Cli) -> None:
    for args in (("list", "-u", "a"), ("search", "q", "-u", "a"), ("history", "x"), ("export",), ("info",),
                 ("config",), ("keys", "list"), ("reset", "--yes"), ("delete-all", "-u", "a", "--yes")):  # fmt: skip
        run(*args)
    run("get", "x", expect=3)
    run("delete", "x", expect=3)
    assert not run.home.exists()


def test_env_vars_set_the_global_options(run: Cli) -> None:
    env = {**CLEAN_ENV, "MEMLANE_HOME": str(run.home), "MEMLANE_CONFIG": str(run.config), "MEMLANE_JSON": "1"}
    result = CliRunner().invoke(cli, ["add", "-u", "alice", "from env"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["results"][0]["memory"] == "from env"
    assert (run.home / "memlane.db").is_file()


# -- export / import --------------------------------------------------------------------------
def _filled(run: Cli) -> None:
    kept = _add(run, "I'm vegetarian", "I live in Berlin")
    _add(run, "Prefers window seats", scope=("-u", "bob", "-a", "travel"))
    run("update", kept[1], "I live in Lisbon", "--metadata", '{"moved": true}')
    run("delete", kept[0])


def _without_export_time(lines: list[str]) -> list[Any]:
    records = [json.loads(line) for line in lines]
    assert records[0]["type"] == "memlane-export"
    del records[0]["exported_at"]
    return records


def test_export_import_round_trip(run: Cli, tmp_path: Path) -> None:
    _filled(run)
    first = tmp_path / "first.jsonl"
    assert run.json("export", str(first)) == {"file": str(first), "memories": 2, "history": 3}
    assert run("export").stdout.splitlines()[1:] == first.read_text(encoding="utf-8").splitlines()[1:]
    other = Cli(tmp_path / "other", run.config)
    assert other.json("import", str(first)) == {"imported": 2, "skipped": 0, "history": 5}
    again = other("export").stdout.splitlines()
    assert _without_export_time(again) == _without_export_time(first.read_text(encoding="utf-8").splitlines())
    assert other.json("import", str(first), expect=6)["error"]["type"] == "MemoryConflict"
    skipped = other.json("import", "-", "--on-conflict", "skip", input=first.read_text(encoding="utf-8"))
    # skipped: the two memories, plus the deleted one whose history alone was exported
    assert (skipped["imported"], skipped["skipped"], skipped["history"]) == (0, 3, 0)
    assert "imported 0 memories, skipped 3" in other("import", str(first), "--on-conflict", "skip").stdout


def test_export_scope_progress_and_bad_input(run: Cli, tmp_path: Path) -> None:
    _filled(run)
    bob = [json.loads(line) for line in run("export", "-u", "bob").stdout.splitlines()]
    assert [r["user_id"] for r in bob if r["type"] == "memory"] == ["bob"]
    with_bar = run("export", str(tmp_path / "x.jsonl"), "--progress")
    assert "export" in with_bar.stderr and "exported 2 memory records" in with_bar.stdout
    assert run("import", "-", input="not json\n", expect=2).stderr.startswith("error: InvalidRequest: line 1")
    run("import", str(tmp_path / "missing.jsonl"), expect=2)
    run("export", str(tmp_path / "no-dir" / "x.jsonl"), expect=2)
    assert not (tmp_path / "no-dir").exists()


# -- keys, config, info, serve ----------------------------------------------------------------
def test_keys_create_list_revoke(run: Cli) -> None:
    created = run("keys", "create", "--name", "ops", "--admin")
    token = re.search(r"mlk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", created.stdout)
    assert token and "not shown again" in created.stderr
    store = KeyStore(run.home / "keys.db")
    assert store.authenticate(token.group()) is not None
    tenant = run.json("keys", "create", "--name", "acme-prod", "--namespace", "acme", "--rate-limit", "5")
    assert tenant["key"]["role"] == "tenant" and tenant["key"]["rate_limit"] == 5.0
    assert tenant["token"].startswith(f"mlk_{tenant['key']['id']}_")
    listing = run("keys", "list").stdout + json.dumps(run.json("keys", "list"))
    assert "ops" in listing and "acme-prod" in listing
    for whole in (token.group(), tenant["token"]):
        parsed = parse_token(whole)
        assert parsed is not None
        # The whole token and its 43-character secret never appear; the key id is public.
        assert whole not in listing and parsed[1] not in listing and parsed[0] in listing
    assert run.json("keys", "revoke", "acme-prod")["revoked_at"] is not None
    assert [k["name"] for k in run.json("keys", "list")] == ["ops"]
    assert [k["name"] for k in run.json("keys", "list", "--all")] == ["ops", "acme-prod"]
    run("keys", "revoke", "acme-prod", expect=3)
    assert store.authenticate(tenant["token"]) is None


def test_keys_validation_and_local_only(run: Cli) -> None:
    assert "InvalidRequest" in run("keys", "create", "--name", "x", "--namespace", "ac:me", expect=2).stderr
    run("keys", "create", "--name", "x", "--admin", "--namespace", "acme", expect=2)
    run("keys", "create", "--name", "x", expect=2)
    run("keys", "create", "--admin", expect=2)  # --name is required
    run("keys", "create", "--name", "x", "--admin", "--rate-limit", "0", expect=2)
    assert "--url" in run("--url", "http://127.0.0.1:1", "keys", "list", expect=2).stderr
    assert not run.home.exists()


def test_config_masks_secrets(run: Cli, tmp_path: Path) -> None:
    secret_config = {
        "embedder": {"provider": HASH, "config": {"api_key": "emb-secret-1", "batch_size": 8}},
        "llm": {"provider": "openai", "config": {"api_key": "sk-live-2", "model": "gpt-4o-mini", "max_tokens": 99,
                                                 "auth": {"password": "pw-3", "access_token": "tok-4"}}},
    }  # fmt: skip
    masked = Cli(run.home, _config(tmp_path / "secret.json", secret_config))
    out = masked("config").stdout
    for secret in ("emb-secret-1", "sk-live-2", "pw-3", "tok-4"):
        assert secret not in out
    data = json.loads(out)
    assert data["llm"]["config"]["model"] == "gpt-4o-mini" and data["llm"]["config"]["max_tokens"] == 99
    assert data["embedder"]["config"]["batch_size"] == 8 and data["home"] == str(run.home)
    info = masked.json("info")
    assert info["llm"] == {"provider": "openai", "model": "gpt-4o-mini"} and "sk-live-2" not in json.dumps(info)


def test_info(run: Cli) -> None:
    fresh = run.json("info")
    assert fresh["home"] == str(run.home) and fresh["version"] == memlane.__version__
    assert fresh["database"] == {"path": str(run.home / "memlane.db"), "size_bytes": None}
    assert fresh["keys"]["path"] == str(run.home / "keys.db") and fresh["audit_log"]["path"].endswith("audit.log")
    assert fresh["embedder"]["provider"] == HASH and fresh["embedder"]["stored"] is None
    assert fresh["llm"] == "none: messages stored verbatim"
    _add(run, "something")
    filled = run.json("info")
    assert filled["database"]["size_bytes"] > 0
    assert filled["embedder"]["stored"] == {"model_id": "hash-embedder-v1", "dimension": 64}
    assert filled["embedder"]["model_id"] == "hash-embedder-v1" and filled["embedder"]["dimension"] == 64
    assert "hash-embedder-v1" in run("info").stdout


def test_serve_help_and_no_auth_refusal(run: Cli, tmp_path: Path) -> None:
    help_text = run("serve", "--help").stdout
    for option in ("--host", "--port", "--workers", "--no-auth", "--rate-limit", "--max-body-bytes",
                   "--max-text-chars", "--request-timeout", "--log-level"):  # fmt: skip
        assert option in help_text
    command = [sys.executable, "-m", "memlane", "--home", str(tmp_path / "h"), "--json", "serve", "--no-auth"]
    command += ["--host", "0.0.0.0", "--port", str(closed_port())]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_subprocess_env())
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["error"]["type"] == "InvalidRequest"
    assert proc.stderr.startswith("error: InvalidRequest: --no-auth")
    command = [sys.executable, "-m", "memlane", "--home", str(tmp_path / "h"), "serve", "--no-auth"]
    command += ["--port", str(closed_port()), "--max-text-chars", "0"]  # reaches the server's settings
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_subprocess_env())
    assert proc.returncode == 2 and "max_text_chars must be a positive integer" in proc.stderr, proc.stderr


# -- as a program -----------------------------------------------------------------------------
def _subprocess_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}


def test_python_dash_m_help_and_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "memlane", "--help"], capture_output=True, text=True, timeout=60,
                          env=_subprocess_env())  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: memlane")
    for name in cli.list_commands(click.Context(cli)):
        assert name in proc.stdout
    assert CliRunner().invoke(cli, ["--version"]).stdout.strip().endswith(memlane.__version__)


def test_subprocess_with_the_default_embedder(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "memlane", "--home", str(tmp_path), "--json"]

    def call(*args: str) -> Any:
        proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, env=_subprocess_env())
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    call("add", "-u", "alice", "I'm vegetarian", "I have a dog named Rex")
    hits = call("search", "what pet does she have?", "-u", "alice")["results"]
    assert hits[0]["memory"] == "I have a dog named Rex"
    assert call("info")["embedder"]["stored"]["model_id"] == "all-MiniLM-L6-v2-onnx-int8"


# -- docs -------------------------------------------------------------------------------------
def _command_paths(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out += _command_paths(command, f"{path} ")
        else:
            out.append((path, command))
    return out


def _sections() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    parts = re.split(r"^### `memlane ([a-z0-9 -]+)`$", text, flags=re.M)
    return {parts[i]: re.split(r"^##? ", parts[i + 1], flags=re.M)[0] for i in range(1, len(parts), 2)}


SCOPE_OPTIONS = {"--user", "--agent", "--run"}  # documented once, as "[scope]" in each synopsis


@pytest.mark.parametrize(("path", "command"), _command_paths(cli), ids=[p for p, _ in _command_paths(cli)])
def test_every_command_and_option_is_documented(path: str, command: click.Command) -> None:
    sections = _sections()
    assert path in sections, f"`memlane {path}` has no section in docs/cli.md"
    section = sections[path]
    for param in command.params:
        for opt in (o for o in getattr(param, "opts", []) if o.startswith("--")):
            documented = opt in section or (opt in SCOPE_OPTIONS and "scope" in section)
            assert documented, f"{opt} of `memlane {path}` is not in its docs section"


def test_global_options_and_exit_codes_are_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for param in cli.params:
        for opt in (o for o in getattr(param, "opts", []) if o.startswith("--")):
            assert f"`{opt}" in text, f"global option {opt} is not in docs/cli.md"
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\| (\d) \|.*$", text, flags=re.M)}
    for cls, code in EXIT_CODES:
        assert cls.__name__ in rows[code], f"{cls.__name__} is not in the docs' row for exit code {code}"
