"""A scripted OpenAI-compatible model on 127.0.0.1 that answers memlane's prompts (and an app's chat).

It speaks the chat-completions and embeddings wire format (through :class:`WireServer`), so a
config naming the ``openai`` provider reaches it with ``OPENAI_BASE_URL`` alone, exactly as
application code written for mem0 does:

- extraction (schema ``facts``): every user line of the conversation is one fact, in its words;
- reconciliation (schema ``decisions``): a fact whose text a stored memory already has is NONE
  for that memory, anything else ADD;
- any other chat request (the application's own call): the reply ``"Noted!"``;
- embeddings: a deterministic unit vector per text (hashed words, 1536 dimensions).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from wire_server import Recorded, Reply, WireServer

__all__ = ["DIMENSION", "ScriptedModel"]

DIMENSION = 1536
_USER_LINE = re.compile(r"^\[(\d+)\] user[^:]*\): (.*)$", re.MULTILINE)
_STORED = re.compile(r"^(m\d+): (.*) \([^)]*\)$", re.MULTILINE)
_NEW = re.compile(r"^(f\d+): (.*)$", re.MULTILINE)


def _completion(content: str) -> Reply:
    return Reply(body={
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 1_700_000_000, "model": "scripted",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
    })  # fmt: skip


def _vector(text: str) -> list[float]:
    vec = [0.0] * DIMENSION
    for word in re.findall(r"\w+", text.casefold()):
        digest = hashlib.sha256(word.encode()).digest()
        vec[int.from_bytes(digest[:4], "big") % DIMENSION] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _answer(request: Recorded) -> Reply:
    body: dict[str, Any] = request.body
    if request.path.endswith("/embeddings"):
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)]
        return Reply(body={"object": "list", "data": data, "model": body.get("model", "scripted"),
                           "usage": {"prompt_tokens": 1, "total_tokens": 1}})  # fmt: skip
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("name")
    prompt = body["messages"][-1]["content"]
    if schema == "facts":
        facts = [{"text": text.strip(), "from": [int(n)]} for n, text in _USER_LINE.findall(prompt)]
        return _completion(json.dumps({"facts": facts}))
    if schema == "decisions":
        stored = {text.casefold(): local for local, text in _STORED.findall(prompt)}
        actions = [
            {"fact": fid, "action": "NONE", "target": stored[text.casefold()], "text": ""}
            if text.casefold() in stored
            else {"fact": fid, "action": "ADD", "target": "", "text": ""}
            for fid, text in _NEW.findall(prompt)
        ]
        return _completion(json.dumps({"actions": actions}))
    return _completion("Noted!")


class ScriptedModel(WireServer):
    """A :class:`WireServer` that answers every request with :func:`_answer` (up to ``capacity``)."""

    def __init__(self, capacity: int = 500) -> None:
        super().__init__()
        self.reply(*[_answer] * capacity)

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be."""
        return f"{self.url}/v1"

    def schemas(self) -> list[str | None]:
        """The structured-output schema of every chat request so far (None: a plain chat call)."""
        return [
            (r.body.get("response_format") or {}).get("json_schema", {}).get("name")
            for r in self.requests
            if r.path.endswith("/chat/completions")
        ]
