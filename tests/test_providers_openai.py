"""The ``openai`` LLM and embedder, through the real openai SDK, against a scripted server on 127.0.0.1."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
from wire_server import Recorded, Reply, WireServer, closed_port

from memlane.errors import (
    ConfigError,
    LLMOutputError,
    ProviderAuthError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from memlane.protocols import LLM, Embedder
from memlane.providers import registry
from memlane.providers.openai import OpenAIEmbedder, OpenAILLM, strict_compatible

STRICT = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
    "additionalProperties": False,
}
LOOSE = {"type": "object", "properties": {"facts": {"type": "array", "items": {"type": "string"}}}}
PROMPT: list[Any] = [{"role": "system", "content": "Extract facts."}, {"role": "user", "content": "I live in Oslo."}]


def chat(content: str | None = '{"facts": ["lives in Oslo"]}', finish: str = "stop", usage: bool = True) -> Reply:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
    return Reply(body=body)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body={"error": {"message": message, "type": "x"}}, headers=headers or {})


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as srv:
        yield srv


def llm(server: WireServer, **options: Any) -> OpenAILLM:
    return OpenAILLM(base_url=f"{server.url}/v1", api_key="sk-test", **options)


# --- requests on the wire -------------------------------------------------------------------------


def test_registry_builds_the_llm_and_the_request_carries_a_strict_json_schema(server: WireServer) -> None:
    model = registry.llm("openai", {"model": "my-model", "base_url": f"{server.url}/v1", "api_key": "sk-test"})
    assert isinstance(model, LLM)
    assert model.model_id == "openai/my-model"
    server.reply(chat())
    out = model.complete(PROMPT, schema=STRICT, schema_name="facts", max_tokens=300)
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.body == {
        "model": "my-model",
        "messages": PROMPT,
        "max_tokens": 300,
        "temperature": 0.0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "facts", "schema": STRICT, "strict": True}},
    }
    assert out.text == '{"facts": ["lives in Oslo"]}'
    assert (out.prompt_tokens, out.completion_tokens, out.truncated, out.data) == (21, 9, False, None)


def test_a_schema_openai_cannot_enforce_strictly_is_sent_with_strict_false(server: WireServer) -> None:
    server.reply(chat())
    llm(server).complete(PROMPT, schema=LOOSE)
    assert server.requests[0].body["response_format"]["json_schema"] == {
        "name": "result",
        "schema": LOOSE,
        "strict": False,
    }


@pytest.mark.parametrize(
    ("schema", "strict"),
    [
        (STRICT, True),
        (LOOSE, False),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, False),
        ({"type": "object", "additionalProperties": {"type": "string"}}, False),
        (
            {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/x"}}},
                "required": ["items"],
                "additionalProperties": False,
                "$defs": {"x": {"type": "object", "properties": {"y": {"type": "string"}}}},
            },
            False,
        ),
        ({"anyOf": [STRICT, {"type": "null"}]}, True),
    ],
)
def test_strict_compatibility(schema: dict[str, Any], strict: bool) -> None:
    assert strict_compatible(schema) is strict


@pytest.mark.parametrize(
    ("mode", "response_format"),
    [
        ("json_object", {"type": "json_object"}),
        ("json_object_schema", {"type": "json_object", "schema": STRICT}),
        ("none", None),
    ],
)
def test_modes_without_json_schema_put_the_schema_in_the_system_prompt(
    server: WireServer, mode: str, response_format: dict[str, Any] | None
) -> None:
    server.reply(chat())
    llm(server, structured_output=mode).complete(PROMPT, schema=STRICT)
    body = server.requests[0].body
    assert body.get("response_format") == response_format
    system, user = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("Extract facts.\n\n")
    assert "JSON" in system["content"] and '"additionalProperties": false' in system["content"]
    assert user == PROMPT[1]


def test_the_schema_instruction_becomes_a_system_message_when_there_is_none(server: WireServer) -> None:
    server.reply(chat())
    llm(server, structured_output="json_object").complete(PROMPT[1:], schema=STRICT)
    roles = [m["role"] for m in server.requests[0].body["messages"]]
    assert roles == ["system", "user"]


def test_without_a_schema_nothing_about_json_is_sent(server: WireServer) -> None:
    server.reply(chat("Hello."))
    out = llm(server, structured_output="json_object").complete(PROMPT)
    body = server.requests[0].body
    assert "response_format" not in body and body["messages"] == PROMPT
    assert out.text == "Hello."


def test_config_overrides_temperature_top_p_and_caps_max_tokens(server: WireServer) -> None:
    server.reply(chat(), chat())
    model = llm(server, temperature=0.7, top_p=0.9, max_tokens=100)
    model.complete(PROMPT, max_tokens=500, temperature=0.0)
    model.complete(PROMPT, max_tokens=50)
    first, second = (r.body for r in server.requests)
    assert (first["temperature"], first["top_p"], first["max_tokens"]) == (0.7, 0.9, 100)
    assert second["max_tokens"] == 50


def test_api_openai_com_gets_max_completion_tokens_and_reasoning_models_no_sampling() -> None:
    # Building a request sends nothing: the OpenAI-host rules are checked without the network.
    chat_model = OpenAILLM(api_key="sk-test")
    request = chat_model._request(PROMPT, None, "result", 200, 0.0)
    assert request["max_completion_tokens"] == 200 and "max_tokens" not in request
    assert request["temperature"] == 0.0
    reasoning = OpenAILLM(api_key="sk-test", model="gpt-5-mini", temperature=0.5, top_p=0.5)
    request = reasoning._request(PROMPT, None, "result", 200, 0.0)
    assert "temperature" not in request and "top_p" not in request


# --- answers --------------------------------------------------------------------------------------


def test_length_finish_reason_is_truncation_and_missing_usage_is_zero(server: WireServer) -> None:
    server.reply(chat('{"facts": ["lives in', finish="length", usage=False))
    out = llm(server).complete(PROMPT, schema=STRICT)
    assert out.truncated and (out.prompt_tokens, out.completion_tokens) == (0, 0)


def test_a_refusal_is_an_output_error(server: WireServer) -> None:
    body = chat(None).body
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    server.reply(Reply(body=body))
    with pytest.raises(LLMOutputError, match="refused"):
        llm(server).complete(PROMPT, schema=STRICT)


# --- failures -------------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says_then_succeeds(server: WireServer) -> None:
    # 0.8 s is above the largest first backoff (0.5 s): only Retry-After explains the wait.
    server.reply(error(429, "slow down", {"retry-after": "0.8"}), chat())
    out = llm(server).complete(PROMPT, schema=STRICT)
    assert out.text.startswith("{")
    first, second = server.requests
    assert 0.8 <= second.at - first.at < 3
    assert second.headers["x-stainless-retry-count"] == "0"  # memlane retried, not the SDK


def test_5xx_on_every_attempt_is_unavailable_with_the_status(server: WireServer) -> None:
    server.reply(error(503, "overloaded"), error(503, "overloaded"))
    with pytest.raises(ProviderUnavailable) as info:
        llm(server, max_retries=1).complete(PROMPT)
    assert info.value.status == 503 and info.value.provider == "openai"
    assert "overloaded" in str(info.value)
    assert isinstance(info.value.__cause__, openai.InternalServerError)
    assert len(server.requests) == 2


def test_401_is_an_auth_error_and_is_not_retried(server: WireServer) -> None:
    server.reply(error(401, "Incorrect API key provided"))
    with pytest.raises(ProviderAuthError) as info:
        llm(server).complete(PROMPT)
    assert info.value.status == 401 and "Incorrect API key" in str(info.value)
    assert isinstance(info.value.__cause__, openai.AuthenticationError)
    assert len(server.requests) == 1


def test_404_is_a_provider_error_with_a_hint_and_is_not_retried(server: WireServer) -> None:
    server.reply(error(404, "The model `nope` does not exist"))
    with pytest.raises(ProviderError, match="model name") as info:
        llm(server, model="nope").complete(PROMPT)
    assert type(info.value) is ProviderError and info.value.status == 404
    assert len(server.requests) == 1


def test_a_server_slower_than_the_timeout_is_a_timeout(server: WireServer) -> None:
    server.reply(Reply(body=chat().body, delay=2.0))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"0\.3s") as info:
        llm(server, timeout=0.3, max_retries=0).complete(PROMPT)
    assert time.monotonic() - started < 1.5
    assert isinstance(info.value.__cause__, openai.APITimeoutError)


def test_connection_refused_is_unavailable() -> None:
    model = OpenAILLM(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0)
    with pytest.raises(ProviderUnavailable, match="cannot reach openai") as info:
        model.complete(PROMPT)
    assert isinstance(info.value.__cause__, openai.APIConnectionError)


# --- configuration --------------------------------------------------------------------------------


def test_no_key_for_openai_itself_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        registry.llm("openai", {})
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        registry.embedder("openai", {"base_url": "https://api.openai.com/v1"})


def test_a_local_server_needs_no_key_and_the_env_supplies_url_and_key(
    server: WireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.reply(chat(), chat())
    OpenAILLM(base_url=f"{server.url}/v1").complete(PROMPT)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    OpenAILLM().complete(PROMPT)
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer not-needed", "Bearer sk-from-env"]


def test_mem0_alias_is_accepted(server: WireServer) -> None:
    server.reply(chat())
    registry.llm("openai", {"openai_base_url": f"{server.url}/v1", "api_key": "k"}).complete(PROMPT)
    assert server.requests[0].path == "/v1/chat/completions"


def test_unknown_and_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"'temprature'.*accepted:.*'temperature'"):
        registry.llm("openai", {"temprature": 0.1, "base_url": "http://127.0.0.1:1/v1"})
    with pytest.raises(ConfigError, match="same setting"):
        OpenAILLM(base_url="http://127.0.0.1:1/v1", openai_base_url="http://127.0.0.1:2/v1")
    with pytest.raises(ConfigError, match="structured_output"):
        OpenAILLM(base_url="http://127.0.0.1:1/v1", structured_output="xml")
    with pytest.raises(ConfigError, match="timeout"):
        OpenAIEmbedder(base_url="http://127.0.0.1:1/v1", timeout=0)


def test_a_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ConfigError, match=r"memlane\[openai\]"):
        OpenAILLM(base_url="http://127.0.0.1:1/v1")


# --- embedder -------------------------------------------------------------------------------------


def embeddings(request: Recorded) -> Reply:
    """One vector per input, ``[len(text), 1, 0, 0]``, listed in reverse index order."""
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0, 0.0, 0.0]}
        for i, text in enumerate(request.body["input"])
    ]
    return Reply(body={"object": "list", "data": data[::-1], "model": "m", "usage": {"prompt_tokens": 1}})


def test_embedder_batches_orders_and_normalises(server: WireServer) -> None:
    server.reply(*[embeddings] * 3)
    embedder = registry.embedder(
        "openai", {"base_url": f"{server.url}/v1", "api_key": "k", "model": "local-embed", "batch_size": 2}
    )
    texts = ["a", "bbb", "cc", "", "eeeee"]
    vectors = embedder.embed(texts, kind="query")
    assert isinstance(embedder, Embedder)  # after embed: on 3.11 isinstance reads .dimension (a probe)
    assert [r.body["input"] for r in server.requests] == [["a", "bbb"], ["cc", " "], ["eeeee"]]
    assert all(r.path == "/v1/embeddings" and r.body["encoding_format"] == "float" for r in server.requests)
    assert all("dimensions" not in r.body and r.body["model"] == "local-embed" for r in server.requests)
    assert vectors.dtype == np.float32 and vectors.shape == (5, 4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    expected = np.array([[max(len(t), 1), 1, 0, 0] for t in texts], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)
    assert embedder.model_id == "openai/local-embed" and embedder.dimension == 4


def test_embedder_dimension_is_known_for_openai_models_and_probed_once_for_others(server: WireServer) -> None:
    assert OpenAIEmbedder(api_key="k").dimension == 1536
    assert OpenAIEmbedder(api_key="k", model="text-embedding-3-large").dimension == 3072
    server.reply(embeddings)
    probed = OpenAIEmbedder(base_url=f"{server.url}/v1", model="local-embed")
    assert probed.dimension == 4 and probed.dimension == 4
    assert len(server.requests) == 1
    assert probed.embed([]).shape == (0, 4)


def test_embedding_dims_is_sent_to_text_embedding_3_and_checked(server: WireServer) -> None:
    server.reply(embeddings, embeddings)
    shortened = OpenAIEmbedder(base_url=f"{server.url}/v1", model="text-embedding-3-small", embedding_dims=4)
    assert shortened.embed(["x"]).shape == (1, 4)
    assert server.requests[0].body["dimensions"] == 4
    wrong = OpenAIEmbedder(base_url=f"{server.url}/v1", model="local-embed", embedding_dims=8)
    with pytest.raises(ProviderError, match="4-dimensional embeddings, expected 8"):
        wrong.embed(["x"])
    assert "dimensions" not in server.requests[1].body


def test_embedder_errors_are_translated(server: WireServer) -> None:
    server.reply(error(401, "bad key"))
    with pytest.raises(ProviderAuthError):
        OpenAIEmbedder(base_url=f"{server.url}/v1", model="local-embed").embed(["x"])
