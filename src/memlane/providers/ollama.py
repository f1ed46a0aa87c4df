"""Ollama's native API (``/api/chat``, ``/api/embed``): an LLM and an embedder named ``"ollama"``.

A JSON schema goes in the chat request's ``format`` field, which Ollama compiles into a grammar, so
the answer follows it token by token. The ``ollama`` SDK drops the HTTP response when it raises, so
an httpx response hook keeps its headers (per thread) for ``Retry-After`` (Ollama's cloud and proxies
in front of a server send 429s).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from memlane.errors import ConfigError, ProviderError
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

__all__ = ["OllamaEmbedder", "OllamaEmbedderOptions", "OllamaLLM", "OllamaLLMOptions", "register"]

PROVIDER = "ollama"
DEFAULT_HOST = "http://localhost:11434"


class _Connection(BaseModel):
    """Options both the LLM and the embedder take."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, validation_alias=AliasChoices("base_url", "ollama_base_url", "host"))
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0)
    keep_alive: float | str | None = None


class OllamaLLMOptions(_Connection):
    """The ``ollama`` LLM's options (keys of its config dict)."""

    model: str = "llama3.1"
    temperature: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, gt=0)


class OllamaEmbedderOptions(_Connection):
    """The ``ollama`` embedder's options (keys of its config dict)."""

    model: str = "nomic-embed-text"
    embedding_dims: int | None = Field(None, gt=0)
    batch_size: int = Field(256, gt=0)


class _Session:
    """An ``ollama.Client`` with retries, error translation and the last response's headers."""

    def __init__(self, opts: _Connection, what: str) -> None:
        try:
            import ollama
        except ImportError as exc:
            raise ConfigError(f"{what} needs the ollama SDK: pip install 'memlane[ollama]'") from exc
        self.host = opts.base_url or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        self._seen = threading.local()
        self.client = ollama.Client(
            host=self.host, timeout=opts.timeout, event_hooks={"response": [self._remember_headers]}
        )
        self._timeout = opts.timeout
        self._policy = RetryPolicy(max_retries=opts.max_retries)

    def _remember_headers(self, response: Any) -> None:
        self._seen.headers = dict(response.headers)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run one SDK call under the retry policy; failures end as memlane errors."""

        def attempt() -> Any:
            self._seen.headers = {}
            return fn()

        return with_retries(attempt, self._classify, self._policy)

    def _classify(self, exc: BaseException) -> Failure | None:
        import httpx  # the ollama SDK's transport
        import ollama

        if isinstance(exc, ollama.ResponseError):
            if exc.status_code < 0:  # an error inside a 200 answer
                return Failure(ProviderError(f"{PROVIDER}: {exc.error}", provider=PROVIDER), retryable=False)
            return error_for_status(PROVIDER, exc.status_code, str(exc.error), getattr(self._seen, "headers", {}))
        if isinstance(exc, httpx.TimeoutException):
            return timeout_failure(PROVIDER, self._timeout)
        if isinstance(exc, (ConnectionError, httpx.TransportError)):
            return connection_failure(PROVIDER, self.host, exc)
        if isinstance(exc, ollama.RequestError):
            return Failure(ProviderError(f"{PROVIDER}: {exc.error}", provider=PROVIDER), retryable=False)
        return None


class OllamaLLM:
    """A chat model served by Ollama.

    Args:
        **options: the keys of :class:`OllamaLLMOptions`: ``model`` (default ``"llama3.1"``), ``base_url`` /
            ``ollama_base_url`` / ``host`` (default: env ``OLLAMA_HOST``, else ``http://localhost:11434``),
            ``timeout`` (seconds per attempt, 60), ``max_retries`` (2), ``temperature`` (overrides the
            call's), ``max_tokens`` (caps the call's; sent as ``num_predict``), ``keep_alive`` (how long
            Ollama keeps the model loaded, e.g. ``"5m"``).
    Raises:
        ConfigError: unknown or invalid options, or no ollama SDK.
    """

    def __init__(self, **options: Any) -> None:
        self._opts = parse_options(OllamaLLMOptions, options, "the ollama LLM")
        self._session = _Session(self._opts, "the ollama LLM")

    @property
    def model_id(self) -> str:
        """``ollama/<model>``."""
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
        """Answer ``messages``, grammar-constrained to ``schema`` (sent as ``format``).

        Args:
            messages: the prompt (system first).
            schema: the JSON schema the answer must follow, if any.
            schema_name: unused (Ollama's ``format`` takes the schema alone).
            max_tokens: the answer's length limit (capped by the ``max_tokens`` option).
            temperature: sampling temperature (the ``temperature`` option wins).
        Returns:
            The answer text, its token usage and whether it stopped at the length limit.
        Raises:
            ProviderTimeout: no answer within ``timeout`` on every attempt.
            ProviderUnavailable: 429/5xx or the server unreachable on every attempt.
            ProviderError: any other error status (404: the model is not pulled).
        """
        opts = self._opts
        options = {
            "temperature": opts.temperature if opts.temperature is not None else temperature,
            "num_predict": min(max_tokens, opts.max_tokens) if opts.max_tokens else max_tokens,
        }
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages]
        response = self._session.call(
            lambda: self._session.client.chat(
                model=opts.model,
                messages=prompt,
                format=dict(schema) if schema is not None else None,
                options=options,
                keep_alive=opts.keep_alive,
                stream=False,
            )
        )
        return Completion(
            text=response.message.content or "",
            prompt_tokens=response.prompt_eval_count or 0,
            completion_tokens=response.eval_count or 0,
            truncated=response.done_reason == "length",
        )


class OllamaEmbedder(BatchedEmbedder):
    """Embeddings from Ollama's ``/api/embed``, L2-normalised.

    Args:
        **options: the keys of :class:`OllamaEmbedderOptions`: ``model`` (default ``"nomic-embed-text"``),
            ``embedding_dims`` (the dimension; without it, the first use of :attr:`dimension` asks the
            server once), ``batch_size`` (inputs per request, 256), and the LLM's connection keys
            (``base_url`` / ``ollama_base_url`` / ``host``, ``timeout``, ``max_retries``, ``keep_alive``).
    Raises:
        ConfigError: unknown or invalid options, or no ollama SDK.
    """

    provider = PROVIDER

    def __init__(self, **options: Any) -> None:
        self._opts = parse_options(OllamaEmbedderOptions, options, "the ollama embedder")
        self._session = _Session(self._opts, "the ollama embedder")
        super().__init__(self._opts.batch_size, self._opts.embedding_dims)

    @property
    def model_id(self) -> str:
        """``ollama/<model>``."""
        return f"{PROVIDER}/{self._opts.model}"

    def _request(self, batch: list[str]) -> Sequence[Sequence[float]]:
        opts = self._opts
        response = self._session.call(
            lambda: self._session.client.embed(model=opts.model, input=batch, keep_alive=opts.keep_alive)
        )
        return list(response.embeddings)


def register(registry: ProviderRegistry) -> None:
    """Entry-point hook: the ``ollama`` LLM and embedder."""
    registry.add_llm(PROVIDER, lambda config: OllamaLLM(**config))
    registry.add_embedder(PROVIDER, lambda config: OllamaEmbedder(**config))
