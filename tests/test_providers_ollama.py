"""The ``ollama`` LLM and embedder, through the real ollama SDK, against a scripted server on 127.0.0.1."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import ollama
import pytest
from wire_server import Recorded, Reply, WireServer, closed_port

from memlane.errors import ConfigError, ProviderAuthError, ProviderError, ProviderTimeout, ProviderUnavailable
from memlane.protocols import LLM, Embedder
from memlane.providers import registry
from memlane.providers.ollama import OllamaEmbedder, OllamaLLM

SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
}
PROMPT: list[Any] = [{"role": "system", "content": "Extract facts."}, {"role": "user", "content": "I live in Oslo."}]


def chat(content: str = '{"facts": ["lives in Oslo"]}', reason: str = "stop", counts: bool = True) -> Reply:
    body: dict[str, Any] = {
        "model": "llama3.1",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": True,
        "done_reason": reason,
    }
    if counts:
        body.update(prompt_eval_count=33, eval_count=11)
    return Reply(body=body)


def error(status: int, msg: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body={"error": msg}, headers=headers or {})


@pytest.fixture(autouse=True)
def _no_ollama_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OLLAMA_HOST", "OLLAMA_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as srv:
        yield srv


def llm(server: WireServer, **options: Any) -> OllamaLLM:
    return OllamaLLM(base_url=server.url, **options)


def test_registry_builds_the_llm_and_the_schema_goes_in_format(server: WireServer) -> None:
    model = registry.llm("ollama", {"base_url": server.url, "model": "qwen3:4b", "keep_alive": "10m"})
    assert isinstance(model, LLM) and model.model_id == "ollama/qwen3:4b"
    server.reply(chat())
    out = model.complete(PROMPT, schema=SCHEMA, max_tokens=300, temperature=0.0)
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/api/chat")
    assert req.body.pop("tools") == []  # the SDK always sends the list
    assert req.body == {
        "model": "qwen3:4b",
        "messages": PROMPT,
        "stream": False,
        "format": SCHEMA,
        "options": {"temperature": 0.0, "num_predict": 300},
        "keep_alive": "10m",
    }
    assert out.text == '{"facts": ["lives in Oslo"]}'
    assert (out.prompt_tokens, out.completion_tokens, out.truncated) == (33, 11, False)


def test_no_schema_means_no_format_and_the_config_overrides_sampling(server: WireServer) -> None:
    server.reply(chat("Hi.", counts=False))
    out = llm(server, temperature=0.4, max_tokens=64).complete(PROMPT, max_tokens=500)
    body = server.requests[0].body
    assert "format" not in body and "keep_alive" not in body
    assert body["options"] == {"temperature": 0.4, "num_predict": 64}
    assert (out.text, out.prompt_tokens, out.completion_tokens) == ("Hi.", 0, 0)


def test_length_done_reason_is_truncation(server: WireServer) -> None:
    server.reply(chat('{"facts": ["li', reason="length"))
    assert llm(server).complete(PROMPT, schema=SCHEMA).truncated


def test_429_waits_as_long_as_retry_after_says_then_succeeds(server: WireServer) -> None:
    server.reply(error(429, "too many requests", {"Retry-After": "0.8"}), chat())
    assert llm(server).complete(PROMPT, schema=SCHEMA).text.startswith("{")
    first, second = server.requests
    assert 0.8 <= second.at - first.at < 3


def test_5xx_on_every_attempt_is_unavailable_with_the_status(server: WireServer) -> None:
    server.reply(error(500, "llama runner process has terminated"), error(500, "llama runner process has terminated"))
    with pytest.raises(ProviderUnavailable, match="runner process") as info:
        llm(server, max_retries=1).complete(PROMPT)
    assert info.value.status == 500 and info.value.provider == "ollama"
    assert isinstance(info.value.__cause__, ollama.ResponseError)
    assert len(server.requests) == 2


def test_401_is_an_auth_error_and_404_a_provider_error_neither_retried(server: WireServer) -> None:
    server.reply(error(401, "unauthorized"), error(404, 'model "nope" not found, try pulling it first'))
    with pytest.raises(ProviderAuthError, match="unauthorized"):
        llm(server).complete(PROMPT)
    with pytest.raises(ProviderError, match="try pulling it") as info:
        llm(server, model="nope").complete(PROMPT)
    assert type(info.value) is ProviderError and info.value.status == 404
    assert len(server.requests) == 2


def test_a_server_slower_than_the_timeout_is_a_timeout(server: WireServer) -> None:
    server.reply(Reply(body=chat().body, delay=2.0))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        llm(server, timeout=0.3, max_retries=0).complete(PROMPT)
    assert time.monotonic() - started < 1.5
    assert isinstance(info.value.__cause__, httpx.TimeoutException)


def test_connection_refused_is_unavailable() -> None:
    model = OllamaLLM(base_url=f"http://127.0.0.1:{closed_port()}", max_retries=0)
    with pytest.raises(ProviderUnavailable, match="cannot reach ollama") as info:
        model.complete(PROMPT)
    assert isinstance(info.value.__cause__, ConnectionError)


@pytest.mark.parametrize("key", ["base_url", "ollama_base_url", "host"])
def test_host_aliases_and_the_env(server: WireServer, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    server.reply(chat(), chat())
    registry.llm("ollama", {key: server.url}).complete(PROMPT)
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    OllamaLLM().complete(PROMPT)
    assert [r.path for r in server.requests] == ["/api/chat", "/api/chat"]


def test_unknown_keys_are_rejected_and_a_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"'api_key'.*accepted:.*'ollama_base_url'"):
        registry.llm("ollama", {"api_key": "x"})
    with pytest.raises(ConfigError, match="same setting"):
        OllamaEmbedder(host="http://127.0.0.1:1", base_url="http://127.0.0.1:2")
    monkeypatch.setitem(sys.modules, "ollama", None)
    with pytest.raises(ConfigError, match=r"memlane\[ollama\]"):
        OllamaLLM()


# --- embedder -------------------------------------------------------------------------------------


def embeddings(request: Recorded) -> Reply:
    """One vector per input, ``[len(text), 2, 0]``."""
    vectors = [[float(len(text)), 2.0, 0.0] for text in request.body["input"]]
    return Reply(body={"model": "nomic-embed-text", "embeddings": vectors, "prompt_eval_count": 3})


def test_embedder_batches_normalises_and_probes_its_dimension_once(server: WireServer) -> None:
    server.reply(*[embeddings] * 4)
    embedder = registry.embedder("ollama", {"base_url": server.url, "batch_size": 2, "keep_alive": 0})
    assert embedder.model_id == "ollama/nomic-embed-text"
    assert embedder.dimension == 3 and embedder.dimension == 3  # one probe request
    texts = ["a", "bb", "ccc", "dddd", "e"]
    vectors = embedder.embed(texts, kind="document")
    assert isinstance(embedder, Embedder)
    assert [r.body["input"] for r in server.requests] == [
        ["dimension probe"],
        ["a", "bb"],
        ["ccc", "dddd"],
        ["e"],
    ]
    assert all(r.path == "/api/embed" and r.body["model"] == "nomic-embed-text" for r in server.requests)
    assert server.requests[1].body["keep_alive"] == 0
    assert vectors.dtype == np.float32 and vectors.shape == (5, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors[1], np.array([2, 2, 0]) / np.sqrt(8), rtol=1e-6)


def test_embedder_checks_a_configured_dimension(server: WireServer) -> None:
    server.reply(embeddings)
    embedder = OllamaEmbedder(base_url=server.url, embedding_dims=768)
    assert embedder.dimension == 768 and not server.requests
    with pytest.raises(ProviderError, match="3-dimensional embeddings, expected 768"):
        embedder.embed(["x"])


def test_embedder_errors_are_translated(server: WireServer) -> None:
    server.reply(error(404, 'model "nomic-embed-text" not found'))
    with pytest.raises(ProviderError, match="not found") as info:
        OllamaEmbedder(base_url=server.url, embedding_dims=3).embed(["x"])
    assert info.value.status == 404
