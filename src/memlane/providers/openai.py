"""OpenAI and every OpenAI-compatible endpoint: an LLM and an embedder, both named ``"openai"``.

Point ``base_url`` at any server that speaks the chat-completions and embeddings API: OpenAI,
vLLM, LM Studio, llama.cpp's servers, Ollama's ``/v1``, Groq, Together, OpenRouter, DeepSeek.
Servers on other hosts than ``api.openai.com`` get a placeholder key when none is set (local
servers need none).

How a JSON schema reaches the model depends on ``structured_output``:

- ``"json_schema"`` (default): ``response_format={"type": "json_schema", "json_schema": {"name", "schema",
  "strict"}}``. ``strict`` is true only when the schema meets OpenAI's strict rules (every object has
  ``additionalProperties: false`` and lists all its properties as required); otherwise the schema is
  sent as guidance with ``strict: false``. OpenAI, vLLM, LM Studio, Ollama ``/v1``, llama.cpp's C++
  ``llama-server`` and most hosted servers constrain output with it.
- ``"json_object_schema"``: ``response_format={"type": "json_object", "schema": schema}`` plus the schema
  in the prompt. This is the form **llama-cpp-python's server** (``python -m llama_cpp.server``,
  checked with 0.3.36) honours: it compiles the schema into a grammar. Its request model allows
  ``response_format.type`` "text" or "json_object" only, so ``json_schema`` fails validation there,
  reported as HTTP 500 (a ``literal_error``), which memlane retries like any 5xx before giving up.
  Together's and Anyscale's JSON mode take the same shape.
- ``"json_object"``: ``response_format={"type": "json_object"}`` (valid JSON, any shape) plus the schema
  in the prompt; for servers that know JSON mode but not schemas.
- ``"none"``: no ``response_format``; the schema goes in the prompt only.

The answer's length limit is sent as ``max_completion_tokens`` to api.openai.com (its reasoning
models refuse ``max_tokens``) and as ``max_tokens`` elsewhere (what compatible servers read).
OpenAI's reasoning models (``o1``/``o3``/``o4``/``gpt-5`` families) take no sampling parameters,
so ``temperature`` and ``top_p`` are left out for them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from memlane.errors import ConfigError, LLMOutputError, ProviderError
from memlane.protocols import Completion, PromptMessage
from memlane.providers._calls import (
    BatchedEmbedder,
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

__all__ = [
    "OpenAIEmbedder",
    "OpenAIEmbedderOptions",
    "OpenAILLM",
    "OpenAILLMOptions",
    "register",
    "schema_instruction",
    "strict_compatible",
]

PROVIDER = "openai"
StructuredOutput = Literal["json_schema", "json_object_schema", "json_object", "none"]
_BASE_URL = AliasChoices("base_url", "openai_base_url")
_PLACEHOLDER_KEY = "not-needed"  # the SDK refuses an empty key; local servers ignore it
_KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
_REASONING = re.compile(r"^(o\d|gpt-5)")


class _Connection(BaseModel):
    """Options both the LLM and the embedder take."""

    model_config = ConfigDict(extra="forbid")

    api_key: str | None = None
    base_url: str | None = Field(None, validation_alias=_BASE_URL)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0)


class OpenAILLMOptions(_Connection):
    """The ``openai`` LLM's options (keys of its config dict)."""

    model: str = "gpt-4.1-mini"
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    structured_output: StructuredOutput = "json_schema"


class OpenAIEmbedderOptions(_Connection):
    """The ``openai`` embedder's options (keys of its config dict)."""

    model: str = "text-embedding-3-small"
    embedding_dims: int | None = Field(None, gt=0)
    batch_size: int = Field(256, gt=0, le=2048)


def _client(opts: _Connection, what: str) -> tuple[Any, str]:
    """An ``openai.OpenAI`` client with the SDK's retries off, and the base URL it talks to."""
    try:
        import openai
    except ImportError as exc:
        raise ConfigError(f"{what} needs the openai SDK: pip install 'memlane[openai]'") from exc
    base_url = opts.base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = opts.api_key or os.environ.get("OPENAI_API_KEY") or None
    if api_key is None:
        if _is_openai(base_url):
            raise ConfigError(
                f"{what} needs an API key: set OPENAI_API_KEY or pass 'api_key' in its config "
                "(or set 'base_url' to a local OpenAI-compatible server, which needs none)"
            )
        api_key = _PLACEHOLDER_KEY
    client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=opts.timeout, max_retries=0)
    return client, str(client.base_url)


def _is_openai(base_url: str | None) -> bool:
    return base_url is None or (urlparse(base_url).hostname or "").endswith("api.openai.com")


def _classifier(where: str, timeout: float) -> Callable[[BaseException], Failure | None]:
    import openai

    def classify(exc: BaseException) -> Failure | None:
        if isinstance(exc, openai.APITimeoutError):
            return timeout_failure(PROVIDER, timeout)
        if isinstance(exc, openai.APIConnectionError):
            return connection_failure(PROVIDER, where, exc)
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(PROVIDER, exc.status_code, _detail(exc), exc.response.headers)
        if isinstance(exc, openai.OpenAIError):
            return Failure(ProviderError(f"{PROVIDER}: {exc}", provider=PROVIDER), retryable=False)
        return None

    return classify


def _detail(exc: Any) -> str:
    """The server's own error message when the body carries one, else the SDK's message."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return str(exc.message)


def strict_compatible(schema: Any) -> bool:
    """Whether ``schema`` meets OpenAI's strict structured-output rules.

    Every object must set ``additionalProperties: false`` and require all of its properties;
    nested schemas (properties, items, ``anyOf``, ``$defs`` …) are checked too.
    """
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False or set(schema.get("required", [])) != set(properties):
            return False
    children: list[Any] = []
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        children.extend((schema.get(key) or {}).values())
    for key in ("items", "additionalProperties", "not", "contains"):
        children.append(schema.get(key))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        children.extend(schema.get(key) or [])
    return all(strict_compatible(child) for child in children)


def schema_instruction(schema: Mapping[str, Any]) -> str:
    """The prompt text that asks for JSON following ``schema`` (for backends that cannot enforce it)."""
    return "Answer with one JSON object and nothing else. It must follow this JSON schema:\n" + json.dumps(
        schema, ensure_ascii=False
    )


def _with_instruction(messages: Sequence[PromptMessage], schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """``messages`` with the schema instruction appended to the first system message (or added as one)."""
    out = [{"role": m["role"], "content": m["content"]} for m in messages]
    instruction = schema_instruction(schema)
    for message in out:
        if message["role"] == "system":
            message["content"] = f"{message['content']}\n\n{instruction}"
            return out
    return [{"role": "system", "content": instruction}, *out]


class OpenAILLM:
    """A chat model behind the OpenAI chat-completions API (see the module docstring for servers).

    Args:
        **options: the keys of :class:`OpenAILLMOptions`: ``model`` (default ``"gpt-4.1-mini"``),
            ``api_key`` (default: env ``OPENAI_API_KEY``), ``base_url`` / ``openai_base_url``
            (default: env ``OPENAI_BASE_URL``, else api.openai.com), ``timeout`` (seconds per attempt,
            60), ``max_retries`` (2), ``temperature`` / ``top_p`` (override the call's), ``max_tokens``
            (caps the call's), ``structured_output`` (``"json_schema"``, ``"json_object_schema"``,
            ``"json_object"`` or ``"none"``).
    Raises:
        ConfigError: unknown or invalid options, no API key for api.openai.com, or no openai SDK.
    """

    def __init__(self, **options: Any) -> None:
        self._opts = parse_options(OpenAILLMOptions, options, "the openai LLM")
        self._client, self._where = _client(self._opts, "the openai LLM")
        self._classify = _classifier(self._where, self._opts.timeout)
        self._policy = RetryPolicy(max_retries=self._opts.max_retries)
        self._token_key = "max_completion_tokens" if _is_openai(self._where) else "max_tokens"

    @property
    def model_id(self) -> str:
        """``openai/<model>``."""
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
        """Answer ``messages``, constrained to ``schema`` as ``structured_output`` says.

        Args:
            messages: the prompt (system first).
            schema: the JSON schema the answer must follow, if any.
            schema_name: the schema's name (``json_schema.name``).
            max_tokens: the answer's length limit (capped by the ``max_tokens`` option).
            temperature: sampling temperature (the ``temperature`` option wins).
        Returns:
            The answer text, its token usage and whether it stopped at the length limit.
        Raises:
            ProviderAuthError: the key was refused (401/403); not retried.
            ProviderTimeout: no answer within ``timeout`` on every attempt.
            ProviderUnavailable: 429/5xx or unreachable on every attempt.
            LLMOutputError: the model refused to answer.
            ProviderError: any other error status (e.g. 400, 404).
        """
        request = self._request(messages, schema, schema_name, max_tokens, temperature)
        response = with_retries(lambda: self._client.chat.completions.create(**request), self._classify, self._policy)
        if not response.choices:
            raise ProviderError(f"{PROVIDER}: the answer has no choices", provider=PROVIDER)
        choice = response.choices[0]
        refusal = getattr(choice.message, "refusal", None)
        if refusal:
            raise LLMOutputError(f"{self.model_id} refused to answer: {refusal}", provider=PROVIDER, raw=refusal)
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            truncated=choice.finish_reason == "length",
        )

    def _request(
        self,
        messages: Sequence[PromptMessage],
        schema: Mapping[str, Any] | None,
        schema_name: str,
        max_tokens: int,
        temperature: float,
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create``."""
        opts = self._opts
        mode = opts.structured_output
        request: dict[str, Any] = {"model": opts.model}
        limit = min(max_tokens, opts.max_tokens) if opts.max_tokens else max_tokens
        request[self._token_key] = limit
        if not _REASONING.match(opts.model.rsplit("/", 1)[-1]):
            request["temperature"] = opts.temperature if opts.temperature is not None else temperature
            if opts.top_p is not None:
                request["top_p"] = opts.top_p
        if schema is None or mode == "json_schema":
            request["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
        else:
            request["messages"] = _with_instruction(messages, schema)
        if schema is not None and mode == "json_schema":
            spec = {"name": schema_name, "schema": dict(schema), "strict": strict_compatible(schema)}
            request["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif schema is not None and mode == "json_object_schema":
            request["response_format"] = {"type": "json_object", "schema": dict(schema)}
        elif schema is not None and mode == "json_object":
            request["response_format"] = {"type": "json_object"}
        return request


class OpenAIEmbedder(BatchedEmbedder):
    """Embeddings from an OpenAI-compatible ``/embeddings`` endpoint, L2-normalised.

    Args:
        **options: the keys of :class:`OpenAIEmbedderOptions`: ``model`` (default
            ``"text-embedding-3-small"``), ``embedding_dims`` (the dimension: known for OpenAI's models,
            else asked of the server once, on first use; for ``text-embedding-3-*`` it is also sent as
            ``dimensions`` to shorten the vectors), ``batch_size`` (inputs per request, 256), and the
            connection keys of the LLM (``api_key``, ``base_url`` / ``openai_base_url``, ``timeout``,
            ``max_retries``).
    Raises:
        ConfigError: unknown or invalid options, no API key for api.openai.com, or no openai SDK.
    """

    provider = PROVIDER

    def __init__(self, **options: Any) -> None:
        self._opts = parse_options(OpenAIEmbedderOptions, options, "the openai embedder")
        self._client, self._where = _client(self._opts, "the openai embedder")
        self._classify = _classifier(self._where, self._opts.timeout)
        self._policy = RetryPolicy(max_retries=self._opts.max_retries)
        self._send_dims = self._opts.embedding_dims is not None and self._opts.model.startswith("text-embedding-3")
        super().__init__(self._opts.batch_size, self._opts.embedding_dims or _KNOWN_DIMS.get(self._opts.model))

    @property
    def model_id(self) -> str:
        """``openai/<model>``."""
        return f"{PROVIDER}/{self._opts.model}"

    def _request(self, batch: list[str]) -> Sequence[Sequence[float]]:
        extra: dict[str, Any] = {"dimensions": self._opts.embedding_dims} if self._send_dims else {}
        texts = [t or " " for t in batch]  # the API refuses empty input

        def call() -> Any:
            return self._client.embeddings.create(model=self._opts.model, input=texts, encoding_format="float", **extra)

        response = with_retries(call, self._classify, self._policy)
        return [item.embedding for item in sorted(response.data, key=lambda item: item.index)]


def register(registry: ProviderRegistry) -> None:
    """Entry-point hook: the ``openai`` LLM and embedder."""
    registry.add_llm(PROVIDER, lambda config: OpenAILLM(**config))
    registry.add_embedder(PROVIDER, lambda config: OpenAIEmbedder(**config))
