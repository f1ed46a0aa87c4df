"""Claude through Anthropic's Messages API: the LLM named ``"anthropic"``.

System messages go to the ``system`` parameter. A JSON schema is enforced with a forced tool call:
the schema is the ``input_schema`` of one tool named after it, ``tool_choice`` names that tool, and
the tool's ``input`` comes back as :attr:`memlane.protocols.Completion.data` (and, dumped, as
``text``). The schema must therefore describe an object, as memlane's schemas do.

Sampling parameters: the SDK (2.x) no longer has ``temperature`` or ``top_p`` and Claude models from
Opus 4.7 on answer them with HTTP 400, so this provider sends them only when the config sets them
(as extra body fields); the ``temperature`` argument of :meth:`AnthropicLLM.complete` is not sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from memlane.errors import ConfigError, LLMOutputError, ProviderError
from memlane.protocols import Completion, PromptMessage
from memlane.providers._calls import (
    Failure,
    RetryPolicy,
    connection_failure,
    error_for_status,
    parse_options,
    timeout_failure,
    with_retries,
)

if TYPE_CHECKING:
    from memlane.providers import ProviderRegistry

__all__ = ["AnthropicLLM", "AnthropicLLMOptions", "register"]

PROVIDER = "anthropic"
_TOOL_DESCRIPTION = "Record your answer. The input must follow the schema exactly."


class AnthropicLLMOptions(BaseModel):
    """The ``anthropic`` LLM's options (keys of its config dict)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "claude-haiku-4-5"
    api_key: str | None = None
    base_url: str | None = Field(None, validation_alias=AliasChoices("base_url", "anthropic_base_url"))
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0)
    temperature: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)


def _classifier(where: str, timeout: float) -> Callable[[BaseException], Failure | None]:
    import anthropic

    def classify(exc: BaseException) -> Failure | None:
        if isinstance(exc, anthropic.APITimeoutError):
            return timeout_failure(PROVIDER, timeout)
        if isinstance(exc, anthropic.APIConnectionError):
            return connection_failure(PROVIDER, where, exc)
        if isinstance(exc, anthropic.APIStatusError):
            detail = exc.api_message or exc.message
            return error_for_status(PROVIDER, exc.status_code, detail, exc.response.headers)
        if isinstance(exc, anthropic.AnthropicError):
            return Failure(ProviderError(f"{PROVIDER}: {exc}", provider=PROVIDER), retryable=False)
        return None

    return classify


class AnthropicLLM:
    """A Claude model behind the Messages API.

    Args:
        **options: the keys of :class:`AnthropicLLMOptions`: ``model`` (default ``"claude-haiku-4-5"``),
            ``api_key`` (default: env ``ANTHROPIC_API_KEY``), ``base_url`` / ``anthropic_base_url``
            (default: env ``ANTHROPIC_BASE_URL``, else api.anthropic.com), ``timeout`` (seconds per
            attempt, 60), ``max_retries`` (2), ``max_tokens`` (caps the call's), ``temperature`` and
            ``top_p`` (sent only when set; see the module docstring).
    Raises:
        ConfigError: unknown or invalid options, no API key, or no anthropic SDK.
    """

    def __init__(self, **options: Any) -> None:
        self._opts = parse_options(AnthropicLLMOptions, options, "the anthropic LLM")
        try:
            import anthropic
        except ImportError as exc:
            raise ConfigError("the anthropic LLM needs the anthropic SDK: pip install 'memlane[anthropic]'") from exc
        api_key = self._opts.api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not api_key:
            raise ConfigError(
                "the anthropic LLM needs an API key: set ANTHROPIC_API_KEY or pass 'api_key' in its config"
            )
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=self._opts.base_url, timeout=self._opts.timeout, max_retries=0
        )
        self._classify = _classifier(str(self._client.base_url), self._opts.timeout)
        self._policy = RetryPolicy(max_retries=self._opts.max_retries)

    @property
    def model_id(self) -> str:
        """``anthropic/<model>``."""
        return f"{PROVIDER}/{self._opts.model}"

    def complete(
        self,
        messages: Sequence[PromptMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str = "result",
        max_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> Completion:
        """Answer ``messages``; with a ``schema``, through a forced call of a tool that takes it as input.

        Args:
            messages: the prompt; system messages become the ``system`` parameter.
            schema: a JSON schema of an object the answer must follow, if any.
            schema_name: the tool's name (letters, digits, ``_`` and ``-``).
            max_tokens: the answer's length limit (capped by the ``max_tokens`` option).
            temperature: not sent (see the module docstring); the ``temperature`` option is.
        Returns:
            The answer (``data`` holds the tool input when the model called the tool), its token usage
            (prompt tokens include cache reads and writes) and whether it stopped at ``max_tokens``.
        Raises:
            ProviderAuthError: the key was refused (401/403); not retried.
            ProviderTimeout: no answer within ``timeout`` on every attempt.
            ProviderUnavailable: 429/5xx/529 or unreachable on every attempt.
            LLMOutputError: the model refused to answer.
            ProviderError: any other error status (e.g. 400, 404).
        """
        request = self._request(messages, schema, schema_name, max_tokens)
        response = with_retries(lambda: self._client.messages.create(**request), self._classify, self._policy)
        usage = response.usage
        prompt_tokens = usage.input_tokens + (usage.cache_creation_input_tokens or 0)
        prompt_tokens += usage.cache_read_input_tokens or 0
        truncated = response.stop_reason == "max_tokens"
        text = "".join(block.text for block in response.content if block.type == "text")
        if response.stop_reason == "refusal":
            raise LLMOutputError(f"{self.model_id} refused to answer: {text}", provider=PROVIDER, raw=text)
        data: Any = None
        if schema is not None:
            calls = [b for b in response.content if b.type == "tool_use" and b.name == schema_name]
            if calls:  # else the text goes back as is: memlane's parser and repair prompt take over
                data = calls[0].input
                text = json.dumps(data, ensure_ascii=False)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=usage.output_tokens,
            truncated=truncated,
            data=data,
        )

    def _request(
        self, messages: Sequence[PromptMessage], schema: Mapping[str, Any] | None, schema_name: str, max_tokens: int
    ) -> dict[str, Any]:
        """The keyword arguments of ``messages.create``."""
        opts = self._opts
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        request: dict[str, Any] = {
            "model": opts.model,
            "max_tokens": min(max_tokens, opts.max_tokens) if opts.max_tokens else max_tokens,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"],
        }
        if system:
            request["system"] = system
        if schema is not None:
            tool = {"name": schema_name, "description": _TOOL_DESCRIPTION, "input_schema": dict(schema)}
            request["tools"] = [tool]
            request["tool_choice"] = {"type": "tool", "name": schema_name}
        sampling = {k: v for k, v in (("temperature", opts.temperature), ("top_p", opts.top_p)) if v is not None}
        if sampling:
            request["extra_body"] = sampling
        return request


def register(registry: ProviderRegistry) -> None:
    """Entry-point hook: the ``anthropic`` LLM."""
    registry.add_llm(PROVIDER, lambda config: AnthropicLLM(**config))
