"""Real mem0 stores for the import tests: mem0ai 2.2.1 itself writes them, in a subprocess.

mem0 runs against a fake OpenAI API on 127.0.0.1 (:func:`fake_openai`, served by ``WireServer``):

- ``POST /embeddings``: one deterministic vector per input (hashed words, 16 dimensions);
- ``POST /chat/completions``: mem0's additive extraction answer, ``{"memory": [{"text": ...,
  "attributed_to": "user"}]}``, one fact per ``[[...]]`` found in the prompt's "New Messages"
  section (mem0 2.x extraction only adds; UPDATE and DELETE come from ``update`` / ``delete``).

:func:`write_mem0` runs this file as a script (``python mem0_fixture.py SCENARIO RESULT``) with
``MEM0_TELEMETRY=False`` and ``HOME`` / ``MEM0_DIR`` inside the test's tmp_path: mem0 creates its
directory at import, so it is imported only in that process, never in the test process.

A scenario is mem0's config plus a list of operations (``add``, ``update``, ``delete``, ``raw``: an
entry written through mem0's own vector store object, as releases that allowed no scope left them,
``entities``: make mem0 create its entity collection). The result maps each memory text to its id
and holds mem0's own ``get`` / ``history`` of every id, to compare with what memlane imported.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from wire_server import Recorded, Reply

DIMS = 16
_FACT = re.compile(r"\[\[(.+?)\]\]")


def vector(text: str) -> list[float]:
    """A deterministic unit vector for ``text`` (hashed words)."""
    out = [0.0] * DIMS
    for word in re.findall(r"\w+", text.lower()) or ["<empty>"]:
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        out[digest[0] % DIMS] += 1.0 if digest[1] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in out)) or 1.0
    return [v / norm if norm else 1.0 for v in out] if any(out) else [1.0] + [0.0] * (DIMS - 1)


def fake_openai(request: Recorded) -> Reply:
    """The OpenAI API as mem0 uses it: embeddings, and chat completions answering its extraction prompt."""
    body = request.body if isinstance(request.body, dict) else {}
    if request.path.endswith("/embeddings"):
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(texts)]
        return Reply(body={"object": "list", "data": data, "model": body.get("model", "fake"),
                           "usage": {"prompt_tokens": 1, "total_tokens": 1}})  # fmt: skip
    if request.path.endswith("/chat/completions"):
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        new = prompt.split("## New Messages", 1)[-1].split("## Observation Date", 1)[0]
        facts = [{"text": f.strip(), "attributed_to": "user"} for f in _FACT.findall(new)]
        message = {"role": "assistant", "content": json.dumps({"memory": facts})}
        return Reply(body={"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake",
                           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})  # fmt: skip
    return Reply(status=404, body={"error": {"message": f"fake OpenAI: no route {request.path}"}})


def mem0_config(api_url: str, tmp: Path, vector_store: dict[str, Any]) -> dict[str, Any]:
    """mem0's config: the given vector store, LLM and embedder on the fake API, history in ``tmp``."""
    return {
        "vector_store": vector_store,
        "llm": {"provider": "openai", "config": {"model": "gpt-4.1-nano", "api_key": "sk-test",
                                                   "openai_base_url": api_url}},
        "embedder": {"provider": "openai", "config": {"model": "text-embedding-3-small", "api_key": "sk-test",
                                                        "openai_base_url": api_url, "embedding_dims": DIMS}},
        "history_db_path": str(tmp / "history.db"),
    }  # fmt: skip


def write_mem0(tmp: Path, config: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the scenario through real mem0 in a subprocess; returns its result (see the module docstring)."""
    home = tmp / "mem0-home"
    home.mkdir(exist_ok=True)
    scenario, result = tmp / "scenario.json", tmp / "result.json"
    scenario.write_text(json.dumps({"config": config, "ops": ops}), encoding="utf-8")
    env = {**os.environ, "MEM0_TELEMETRY": "False", "HOME": str(home), "MEM0_DIR": str(home / ".mem0"),
           "OPENAI_API_KEY": "sk-test", "ANONYMIZED_TELEMETRY": "False"}  # fmt: skip
    for key in ("OPENAI_BASE_URL", "OPENROUTER_API_KEY"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, __file__, str(scenario), str(result)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    return data


# -- the subprocess ---------------------------------------------------------------------------
def _run(scenario: dict[str, Any]) -> dict[str, Any]:
    from mem0 import Memory  # here only: mem0 creates MEM0_DIR when imported

    m = Memory.from_config(scenario["config"])
    ids: dict[str, str] = {}
    for op in scenario["ops"]:
        kind = op.pop("op")
        if kind == "add":
            for r in m.add(op.pop("messages"), **op)["results"]:
                ids[r["memory"]] = r["id"]
        elif kind == "update":
            m.update(ids[op["memory"]], text=op.get("text"), metadata=op.get("metadata"))
            if op.get("text"):
                ids[op["text"]] = ids[op["memory"]]
        elif kind == "delete":
            m.delete(ids[op["memory"]])
        elif kind == "raw":
            text = op["text"]
            payload = {"data": text, "hash": hashlib.md5(text.encode()).hexdigest(), **op.get("payload", {})}
            m.vector_store.insert(vectors=[vector(text)], ids=[op["id"]], payloads=[payload])
            ids[text] = op["id"]
        elif kind == "entities":
            entity = {"data": "Lisbon", "entity_type": "LOCATION", "linked_memory_ids": []}
            m.entity_store.insert(vectors=[vector("Lisbon")], ids=[op["id"]], payloads=[entity])
        else:
            raise ValueError(f"unknown op {kind!r}")
    return {"ids": ids, "get": {i: m.get(i) for i in set(ids.values())},
            "history": {i: m.history(i) for i in set(ids.values())}}  # fmt: skip


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = _run(spec)
    Path(sys.argv[2]).write_text(json.dumps(out, default=str), encoding="utf-8")
