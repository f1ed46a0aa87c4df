"""What every network provider shares: bounded retries with backoff, and error translation.

Vendor SDKs retry on their own, each differently; memlane turns their retries off
(``max_retries=0``) and retries here, so every provider honours the same policy: at most
``max_retries`` more attempts, exponential backoff with jitter, ``Retry-After`` honoured (capped),
and only for failures worth retrying (timeouts, connection errors, 408/409/429/5xx). The last
failure is raised as a :class:`memlane.errors.ProviderError` subclass chained to the SDK's exception.

Every provider also validates its options the same way (:func:`parse_options`: a pydantic model with
``extra="forbid"``, unknown keys named in a :class:`memlane.errors.ConfigError`) and hands embeddings
back as unit rows (:func:`unit_rows`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import numpy as np
from pydantic import AliasChoices, BaseModel, ValidationError

from memlane.errors import ConfigError, ProviderAuthError, ProviderError, ProviderTimeout, ProviderUnavailable
from memlane.protocols import EmbedKind, Vectors

__all__ = [
    "BatchedEmbedder",
    "Failure",
    "RetryPolicy",
    "connection_failure",
    "error_for_status",
    "parse_options",
    "parse_retry_after",
    "timeout_failure",
    "unit_rows",
    "with_retries",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a provider call."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 20.0


@dataclass(frozen=True)
class Failure:
    """A classified provider failure: the memlane error to raise, and whether to retry first."""

    error: ProviderError
    retryable: bool
    retry_after: float | None = None


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_for_status(provider: str, status: int, detail: str, headers: Mapping[str, str] | None = None) -> Failure:
    """The memlane error (and retry decision) for an HTTP error status from ``provider``."""
    detail = detail.strip()[:500]
    if status in (401, 403):
        hint = "check the API key (argument or environment variable) and its permissions"
        error = ProviderAuthError(f"{provider}: HTTP {status}: {detail}; {hint}", provider=provider, status=status)
        return Failure(error, retryable=False)
    if status in RETRYABLE_STATUS:
        what = "rate limited" if status == 429 else "unavailable"
        return Failure(
            ProviderUnavailable(f"{provider} {what}: HTTP {status}: {detail}", provider=provider, status=status),
            retryable=True,
            retry_after=parse_retry_after(headers),
        )
    if status == 404:
        detail += " (is the model name right, and is it available on this endpoint?)"
    return Failure(ProviderError(f"{provider}: HTTP {status}: {detail}", provider=provider, status=status), False)


def timeout_failure(provider: str, timeout: float) -> Failure:
    """The failure for a call that got no answer within ``timeout`` seconds."""
    return Failure(
        ProviderTimeout(
            f"{provider} did not answer within {timeout:g}s; raise 'timeout' in its config", provider=provider
        ),
        retryable=True,
    )


def connection_failure(provider: str, where: str, exc: BaseException) -> Failure:
    """The failure for a call that could not reach the provider at all."""
    return Failure(
        ProviderUnavailable(f"cannot reach {provider} at {where}: {exc}; is the server running?", provider=provider),
        retryable=True,
    )


def with_retries(
    call: Callable[[], T],
    classify: Callable[[BaseException], Failure | None],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """Run ``call``, retrying what ``classify`` calls retryable; raise its memlane error at the end.

    ``classify`` returns ``None`` for exceptions that are not provider failures (bugs): those
    propagate unchanged.
    """
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.retryable or attempt >= policy.max_retries:
                raise failure.error from exc
            delay = min(policy.max_delay, policy.base_delay * (2**attempt)) * (0.5 + random.random() / 2)
            if failure.retry_after is not None:
                delay = min(policy.max_delay, max(delay, failure.retry_after))
            attempt += 1
            sleep(delay)


def _keys_of(model: type[BaseModel]) -> dict[str, str]:
    """Every accepted option key (field names and their aliases) mapped to its field name."""
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        keys[name] = name
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            keys.update({choice: name for choice in alias.choices if isinstance(choice, str)})
        elif isinstance(alias, str):
            keys[alias] = name
    return keys


def parse_options(model: type[M], options: Mapping[str, Any], what: str) -> M:
    """Validate a provider's options against its pydantic ``model`` (which forbids extra keys).

    Args:
        model: the options model; aliases (e.g. mem0's ``openai_base_url``) are ``AliasChoices``.
        options: the config dict as the user wrote it.
        what: the provider, for messages (e.g. ``"the openai LLM"``).
    Returns:
        The validated options.
    Raises:
        ConfigError: an unknown key (the message lists the accepted ones), two keys naming the same
            setting, or a value of the wrong type or range.
    """
    keys = _keys_of(model)
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise ConfigError(f"unknown option(s) for {what}: {unknown}; accepted: {sorted(keys)}")
    given: dict[str, list[str]] = {}
    for key in options:
        given.setdefault(keys[key], []).append(key)
    twice = [sorted(names) for names in given.values() if len(names) > 1]
    if twice:
        raise ConfigError(f"options {twice[0]} of {what} name the same setting; give only one of them")
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid option(s) for {what}: {problems}") from exc


def unit_rows(rows: Any, dimension: int | None, provider: str) -> Vectors:
    """``rows`` (one vector per text) as a float32 array with L2-normalised rows.

    Args:
        rows: a sequence of equal-length float sequences, as an embedding API returns them.
        dimension: the expected vector length, or ``None`` to accept any (consistent) length.
        provider: the provider's name, for messages.
    Returns:
        The ``(len(rows), dimension)`` array; all-zero rows stay zero.
    Raises:
        ProviderError: the rows are ragged or not ``dimension`` long.
    """
    try:
        array = np.asarray(rows, dtype=np.float32)
    except ValueError as exc:
        raise ProviderError(f"{provider} returned embeddings of different lengths", provider=provider) from exc
    if array.ndim != 2 or (dimension is not None and array.shape[1] != dimension):
        got = array.shape[1] if array.ndim == 2 else "no"
        raise ProviderError(
            f"{provider} returned {got}-dimensional embeddings, expected {dimension}; "
            "fix 'embedding_dims' (or the model) in the embedder config",
            provider=provider,
        )
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit: Vectors = (array / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


class BatchedEmbedder:
    """What remote embedders share: batching, a count check, L2 normalisation, and a dimension
    that is known from the config or found by one probe request on first use.

    Subclasses set ``provider`` and implement :meth:`_request` (one API call for one batch).
    """

    provider = ""

    def __init__(self, batch_size: int, dimension: int | None) -> None:
        self._batch_size = batch_size
        self._dimension = dimension
        self._probe_lock = threading.Lock()

    @property
    def dimension(self) -> int:
        """The vector length; unknown until configured or probed with one request."""
        if self._dimension is None:
            with self._probe_lock:
                if self._dimension is None:
                    self.embed(["dimension probe"])
        assert self._dimension is not None  # embed() sets it or raises
        return self._dimension

    def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed ``texts`` in batches; ``kind`` is unused (no prefixes are added).

        Returns:
            A ``(len(texts), dimension)`` float32 array with unit rows.
        Raises:
            ProviderError: a request failed after retries, or returned the wrong number or length of vectors.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        size = self._batch_size
        parts = [self._embed_batch(list(texts[i : i + size])) for i in range(0, len(texts), size)]
        return np.concatenate(parts, axis=0)

    def _embed_batch(self, batch: list[str]) -> Vectors:
        rows = self._request(batch)
        if len(rows) != len(batch):
            raise ProviderError(
                f"{self.provider} returned {len(rows)} embeddings for {len(batch)} inputs", provider=self.provider
            )
        vectors = unit_rows(rows, self._dimension, self.provider)
        if self._dimension is None:
            self._dimension = int(vectors.shape[1])
        return vectors

    def _request(self, batch: list[str]) -> Sequence[Sequence[float]]:
        """One API call: the raw vectors of ``batch``, in order."""
        raise NotImplementedError
