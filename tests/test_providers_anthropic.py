"""The ``anthropic`` LLM, through the real anthropic SDK, against a scripted server on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from wire_server import Reply, WireServer, closed_port

from memlane.errors import (
    ConfigError,
    LLMOutputError,
    ProviderAuthError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from memlane.protocols import LLM
from memlane.providers import registry
from memlane.providers.anthropic import AnthropicLLM

SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
}
PROMPT: list[Any] = [
    {"role": "system", "content": "Extract facts."},
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "I live in Oslo."},
]


def message(*content: dict[str, Any], stop: str = "tool_use", usage: dict[str, int] | None = None) -> Reply:
    return Reply(
        body={
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": list(content),
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage or {"input_tokens": 40, "output_tokens": 12},
        }
    )


def tool_use(data: dict[str, Any], name: str = "facts") -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_01", "name": name, "input": data}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def error(status: int, kind: str, msg: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": msg}}
    return Reply(status=status, body=body, headers=headers or {})


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as srv:
        yield srv


def llm(server: WireServer, **options: Any) -> AnthropicLLM:
    return AnthropicLLM(base_url=server.url, api_key="sk-ant-test", **options)


def test_registry_builds_the_llm_and_a_schema_becomes_a_forced_tool_call(server: WireServer) -> None:
    model = registry.llm("anthropic", {"base_url": server.url, "api_key": "sk-ant-test", "model": "claude-x"})
    assert isinstance(model, LLM) and model.model_id == "anthropic/claude-x"
    server.reply(message(tool_use({"facts": ["lives in Oslo"]})))
    out = model.complete(PROMPT, schema=SCHEMA, schema_name="facts", max_tokens=300, temperature=0.0)
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/v1/messages")
    # SDK 2.x sends the API key as a bearer token (1.x used x-api-key).
    assert req.headers["authorization"] == "Bearer sk-ant-test" and "anthropic-version" in req.headers
    tools = req.body.pop("tools")
    assert req.body == {
        "model": "claude-x",
        "max_tokens": 300,
        "system": "Extract facts.\n\nBe brief.",
        "messages": [{"role": "user", "content": "I live in Oslo."}],
        "tool_choice": {"type": "tool", "name": "facts"},
    }
    assert [(t["name"], t["input_schema"]) for t in tools] == [("facts", SCHEMA)] and tools[0]["description"]
    assert out.data == {"facts": ["lives in Oslo"]} and json.loads(out.text) == out.data
    assert (out.prompt_tokens, out.completion_tokens, out.truncated) == (40, 12, False)


def test_plain_text_answers_and_cache_tokens_count_as_prompt(server: WireServer) -> None:
    usage = {"input_tokens": 5, "output_tokens": 3, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7}
    server.reply(message(text("Hello "), text("there."), stop="end_turn", usage=usage))
    out = llm(server).complete(PROMPT[2:])
    body = server.requests[0].body
    assert "tools" not in body and "system" not in body
    assert (out.text, out.data, out.prompt_tokens, out.completion_tokens) == ("Hello there.", None, 112, 3)


def test_sampling_is_sent_only_when_configured_and_max_tokens_is_capped(server: WireServer) -> None:
    server.reply(message(text("a"), stop="end_turn"), message(text("b"), stop="end_turn"))
    llm(server).complete(PROMPT, temperature=0.0)
    llm(server, temperature=0.2, top_p=0.9, max_tokens=64).complete(PROMPT, max_tokens=500)
    first, second = (r.body for r in server.requests)
    assert "temperature" not in first and "top_p" not in first
    assert (second["temperature"], second["top_p"], second["max_tokens"]) == (0.2, 0.9, 64)


def test_max_tokens_stop_is_truncation(server: WireServer) -> None:
    server.reply(message(tool_use({"facts": ["lives"]}), stop="max_tokens"), message(text("{"), stop="max_tokens"))
    assert llm(server).complete(PROMPT, schema=SCHEMA, schema_name="facts").truncated
    cut = llm(server).complete(PROMPT, schema=SCHEMA, schema_name="facts")
    assert cut.truncated and cut.data is None and cut.text == "{"


def test_text_instead_of_a_tool_call_is_returned_for_the_parser_and_a_refusal_is_an_error(server: WireServer) -> None:
    server.reply(message(text('Sure: {"facts": []}'), stop="end_turn"), message(text("No."), stop="refusal"))
    out = llm(server).complete(PROMPT, schema=SCHEMA, schema_name="facts")
    assert (out.text, out.data, out.truncated) == ('Sure: {"facts": []}', None, False)
    with pytest.raises(LLMOutputError, match="refused"):
        llm(server).complete(PROMPT, schema=SCHEMA, schema_name="facts")


def test_429_waits_as_long_as_retry_after_says_then_succeeds(server: WireServer) -> None:
    server.reply(error(429, "rate_limit_error", "slow down", {"retry-after": "0.8"}), message(tool_use({"facts": []})))
    assert llm(server).complete(PROMPT, schema=SCHEMA, schema_name="facts").data == {"facts": []}
    first, second = server.requests
    assert 0.8 <= second.at - first.at < 3


def test_overloaded_on_every_attempt_is_unavailable_with_the_status(server: WireServer) -> None:
    server.reply(error(529, "overloaded_error", "Overloaded"), error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(ProviderUnavailable, match="Overloaded") as info:
        llm(server, max_retries=1).complete(PROMPT)
    assert info.value.status == 529 and info.value.provider == "anthropic"
    assert isinstance(info.value.__cause__, anthropic.APIStatusError)
    assert len(server.requests) == 2


def test_401_is_an_auth_error_and_is_not_retried(server: WireServer) -> None:
    server.reply(error(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(ProviderAuthError, match="invalid x-api-key") as info:
        llm(server).complete(PROMPT)
    assert info.value.status == 401 and isinstance(info.value.__cause__, anthropic.AuthenticationError)
    assert len(server.requests) == 1


def test_400_is_a_plain_provider_error(server: WireServer) -> None:
    server.reply(error(400, "invalid_request_error", "`temperature` is deprecated for this model."))
    with pytest.raises(ProviderError, match="deprecated") as info:
        llm(server, temperature=0.5).complete(PROMPT)
    assert type(info.value) is ProviderError and info.value.status == 400 and len(server.requests) == 1


def test_a_server_slower_than_the_timeout_is_a_timeout(server: WireServer) -> None:
    server.reply(Reply(body=message(text("late")).body, delay=2.0))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        llm(server, timeout=0.3, max_retries=0).complete(PROMPT)
    assert time.monotonic() - started < 1.5
    assert isinstance(info.value.__cause__, anthropic.APITimeoutError)


def test_connection_refused_is_unavailable() -> None:
    model = AnthropicLLM(base_url=f"http://127.0.0.1:{closed_port()}", api_key="k", max_retries=0)
    with pytest.raises(ProviderUnavailable, match="cannot reach anthropic") as info:
        model.complete(PROMPT)
    assert isinstance(info.value.__cause__, anthropic.APIConnectionError)


def test_the_key_comes_from_the_env_and_its_absence_names_the_variable(
    server: WireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        registry.llm("anthropic", {"base_url": server.url})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    server.reply(message(text("ok"), stop="end_turn"))
    AnthropicLLM(base_url=server.url).complete(PROMPT)
    assert server.requests[0].headers["authorization"] == "Bearer sk-ant-env"


def test_mem0_alias_is_accepted_and_unknown_keys_are_rejected(server: WireServer) -> None:
    server.reply(message(text("ok"), stop="end_turn"))
    registry.llm("anthropic", {"anthropic_base_url": server.url, "api_key": "k"}).complete(PROMPT)
    assert server.requests[0].path == "/v1/messages"
    with pytest.raises(ConfigError, match=r"'top_k'.*accepted:.*'anthropic_base_url'"):
        registry.llm("anthropic", {"api_key": "k", "top_k": 5})


def test_a_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ConfigError, match=r"memlane\[anthropic\]"):
        AnthropicLLM(api_key="k")
