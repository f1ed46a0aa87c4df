"""Configuration: ``MemoryConfig`` (pydantic, unknown keys rejected), from a dict, a file or env.

The shape follows mem0's so an existing config carries over::

    Memory.from_config({
        "vector_store": {"provider": "sqlite", "config": {"path": "/data/memlane.db"}},
        "embedder": {"provider": "huggingface", "config": {"model": "all-MiniLM-L6-v2"}},
    })

Environment:

- ``MEMLANE_HOME`` (default ``~/.memlane``) is where the default SQLite database lives.
- ``MEMLANE_DATABASE_URL``: when set, and the config does not name ``vector_store.provider``,
  the store is PostgreSQL at that URL (``pip install 'memlane[postgres]'``); a ``postgres``
  store configured without a ``url`` takes it too. Precedence, first match wins:
  ``Memory(store=...)``, ``Memory(path=...)`` (a SQLite file), the provider the config names,
  ``$MEMLANE_DATABASE_URL``, then ``<home>/memlane.db``. On the command line an explicit
  ``--database-url`` beats the config file (see ``docs/postgres.md``).

The ``vector_store`` section (its two providers, mem0's ``pgvector`` keys, building the store)
lives in :mod:`memlane._store_config`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memlane._store_config import (
    DATABASE_URL_ENV,
    PostgresStoreOptions,
    SQLiteStoreOptions,
    StoreConfig,
    mask_url,
    postgres_store_config,
)
from memlane.core.consolidate import ConsolidationSettings
from memlane.core.passages import DEFAULT_OVERLAP
from memlane.core.ranking import RankingParams
from memlane.errors import ConfigError

__all__ = [
    "DATABASE_URL_ENV",
    "ConsolidationConfig",
    "EmbedderConfig",
    "ExtractionConfig",
    "LLMConfig",
    "MemoryConfig",
    "PassageConfig",
    "PostgresStoreOptions",
    "RankingConfig",
    "SQLiteStoreOptions",
    "StoreConfig",
    "default_home",
    "mask_url",
]


def default_home() -> Path:
    """``$MEMLANE_HOME`` or ``~/.memlane`` (read when called, never created here)."""
    env = os.environ.get("MEMLANE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".memlane"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbedderConfig(_Strict):
    """Which embedder provider to build, and its options."""

    provider: str = "onnx-minilm"
    config: dict[str, Any] = Field(default_factory=dict)


class LLMConfig(_Strict):
    """Which LLM provider extracts facts (``openai``, ``anthropic``, ``ollama``, ``llama_cpp``, …), and its options."""

    provider: str
    config: dict[str, Any] = Field(default_factory=dict)


class ExtractionConfig(_Strict):
    """How ``add`` turns messages into facts and reconciles them (used when an LLM is configured).

    Attributes:
        instructions: project-wide rules for the extraction prompt ("only food preferences",
            "never store health data"); each ``add`` may add its own.
        includes, excludes: topics to keep to / never remember.
        related: how many similar stored memories each new fact is compared with.
        related_threshold: cosine below which a stored memory is not considered related. The
            default suits all-MiniLM-L6-v2, where a changed fact and the one it changes measure
            0.42-0.71 ("works at Google" / "started a job at Microsoft": 0.42) and unrelated facts
            of the same person mostly below 0.40; other embedders may want another value.
        duplicate_threshold: cosine at or above which a new fact with the same content words as
            a stored memory is a duplicate (event NONE without asking the model).
        max_tokens: answer length limit for each LLM call.
        graph: extract each fact's entities and relations in the same call (graph memory). False
            asks for the facts alone, a shorter prompt and answer for small local models; the names
            in each fact are then linked as in an add without an LLM (no relations).
    """

    instructions: str | None = None
    includes: list[str] = Field(default_factory=list)
    excludes: list[str] = Field(default_factory=list)
    related: int = Field(5, ge=0, le=50)
    related_threshold: float = Field(0.4, ge=-1, le=1)
    duplicate_threshold: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=64, le=32_768)
    graph: bool = True


class RankingConfig(_Strict):
    """Search ranking weights and calibration (see ``memlane.core.ranking``)."""

    dense_weight: float = Field(RankingParams.dense_weight, ge=0)
    keyword_weight: float = Field(RankingParams.keyword_weight, ge=0)
    entity_weight: float = Field(RankingParams.entity_weight, ge=0)
    context_weight: float = Field(RankingParams.context_weight, ge=0, le=1)
    context_max_terms: int = Field(RankingParams.context_max_terms, ge=0)
    dense_floor: float = Field(RankingParams.dense_floor, ge=-1, lt=1)
    dense_ceiling: float = Field(RankingParams.dense_ceiling, gt=-1, le=1)
    length_pivot: int = Field(RankingParams.length_pivot, ge=1)
    length_exponent: float = Field(RankingParams.length_exponent, ge=0, le=4)
    length_floor: float = Field(RankingParams.length_floor, ge=0, le=1)
    newer_bonus: float = Field(RankingParams.newer_bonus, ge=0, le=1)
    candidates: int = Field(RankingParams.candidates, ge=1, le=10_000)

    def params(self) -> RankingParams:
        """As the core's frozen dataclass."""
        return RankingParams(**self.model_dump())


class PassageConfig(_Strict):
    """How long memories are searched: as overlapping passages (see ``memlane.core.passages``).

    A memory whose text is longer than ``split_above`` is cut into passages of at most
    ``max_chars`` characters, each embedded and keyword-indexed on its own; search finds the
    memory through its best passage and returns that passage with it. Shorter memories are indexed
    whole. A change applies to memories written from then on (an export and import re-cuts the
    others).

    Attributes:
        max_chars: the passage size (default 1,000). An embedder reads a bounded start of each
            text (all-MiniLM-L6-v2: 256 tokens, about 1,000-1,300 characters of English prose, ~850
            of Markdown with code), so a longer passage is partly unseen by dense search and
            dilutes a one-sentence answer (a needle sentence in a 100k-character document among
            1,000 notes ranked 324th with 2,000-character passages, 64th with 1,000).
        split_above: the length past which a memory gets passages (never below ``max_chars``).
            8,000 by default: a chat message is indexed whole (99 % of the BEAM chat messages
            are shorter than 6,100 characters), a pasted document or log is cut. Chat replies
            are ranked as measured in README's benchmarks, and each costs one embedding rather
            than one per passage; lower it to search the tails of long replies too.
        overlap: how far each passage reaches back into the previous one, as a share of
            ``max_chars``.
    """

    max_chars: int = Field(1000, ge=200, le=100_000)
    split_above: int = Field(8000, ge=200, le=2_000_000)
    overlap: float = Field(DEFAULT_OVERLAP, ge=0, lt=0.25)


class ConsolidationConfig(_Strict):
    """What ``Memory.consolidate`` does, and how idle memories decay in search (``docs/consolidation.md``).

    Attributes:
        merge_cosine: near-exact duplicates (same words in the same order, once case, punctuation,
            articles and fillers are set aside) must also have vectors at least this close to merge.
        llm_cosine: with an LLM, memories at least this close are shown to it in small groups; it
            says which state the same fact (merged, with one text keeping every detail) and which
            newer memory makes an older one untrue (superseded).
        llm_batch: groups per LLM call.
        summaries: write an episodic memory per finished run or session (needs an LLM).
        episode_gap_minutes: without a run id, a pause this long ends a session; an episode is
            summarised once this long has passed since its last memory.
        min_episode, max_episode: memories an episode needs to be summarised / at most per summary.
        profiles: rebuild each user's profile (with an LLM: written by it; without: from the
            entity graph and the user's stated preferences).
        stale_after_days: a memory neither retrieved nor changed for this long starts to lose rank
            in search, down to ``1 - decay_weight`` of its score at twice that age (0 turns decay off).
        decay_weight: the largest share of its score an idle memory loses.
        archive_after_days: idle this long, a memory is archived by the next pass (None: never).
        max_memories: per exact scope, archive the least retrieved memories past this many (None: no cap).
    """

    merge_cosine: float = Field(0.85, ge=-1, le=1)
    llm_cosine: float = Field(0.75, ge=-1, le=1)
    llm_batch: int = Field(8, ge=1, le=50)
    summaries: bool = True
    episode_gap_minutes: float = Field(240.0, gt=0)
    min_episode: int = Field(4, ge=2)
    max_episode: int = Field(80, ge=2, le=500)
    profiles: bool = True
    stale_after_days: float = Field(90.0, ge=0)
    decay_weight: float = Field(0.2, ge=0, le=1)
    archive_after_days: float | None = Field(None, gt=0)
    max_memories: int | None = Field(None, ge=1)

    def settings(self) -> ConsolidationSettings:
        """As the core's frozen dataclass."""
        return ConsolidationSettings(**self.model_dump())


# mem0 config sections with no memlane counterpart, and what to do instead.
_MEM0_ONLY = {
    "reranker": (
        "memlane has no separate reranker: every search scores each candidate on meaning, keywords, "
        "entities and time in one pass (see docs/migrating-from-mem0.md); remove the section"
    ),
    "graph_store": (
        "memlane keeps graph memory (entities and relations) in its own store, no Neo4j needed; remove the "
        "section (docs/graph.md)"
    ),
}


def _carry_mem0_prompts(data: dict[str, Any]) -> None:
    """mem0's prompt keys: ``custom_instructions`` / ``custom_fact_extraction_prompt`` become
    ``extraction.instructions`` (added to memlane's prompt, which keeps its own output format)."""
    for key in ("custom_instructions", "custom_fact_extraction_prompt"):
        if key in data:
            text = data.pop(key)
            extraction = dict(data.get("extraction") or {})
            if extraction.get("instructions"):
                raise ConfigError(f"give {key} or extraction.instructions, not both")
            extraction["instructions"] = text
            data["extraction"] = extraction
    if "custom_update_memory_prompt" in data:
        raise ConfigError(
            "custom_update_memory_prompt is not supported: memlane's reconciliation prompt maps model "
            "answers back to memory ids in code; steer extraction with extraction.instructions instead"
        )


class MemoryConfig(_Strict):
    """Everything ``Memory.from_config`` accepts."""

    home: str | None = None
    vector_store: StoreConfig = Field(default_factory=lambda: StoreConfig())
    embedder: EmbedderConfig = Field(default_factory=lambda: EmbedderConfig())
    llm: LLMConfig | None = None
    extraction: ExtractionConfig = Field(default_factory=lambda: ExtractionConfig())
    ranking: RankingConfig = Field(default_factory=lambda: RankingConfig())
    passages: PassageConfig = Field(default_factory=lambda: PassageConfig())
    consolidation: ConsolidationConfig = Field(default_factory=lambda: ConsolidationConfig())
    version: str | None = Field(None, description="accepted for mem0 compatibility; not used")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryConfig:
        """Validate a config dict.

        Raises:
            ConfigError: unknown keys, wrong types or values, with the offending path.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a dict, got {type(data).__name__}")
        data = dict(data)
        if "history_db_path" in data:
            raise ConfigError(
                "history_db_path is not needed: memlane keeps history in the same database, "
                "in the same transaction as the memory; remove the key"
            )
        for key, why in _MEM0_ONLY.items():
            if key in data:
                raise ConfigError(f"{key}: {why}")
        if "store" in data and "vector_store" not in data:
            data["vector_store"] = data.pop("store")
        _carry_mem0_prompts(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid memlane config: {_problems(exc)}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> MemoryConfig:
        """Read a JSON config file.

        Raises:
            ConfigError: unreadable file, invalid JSON or invalid config.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        return cls.from_dict(data)

    def home_path(self) -> Path:
        """The home directory: ``home``, else ``$MEMLANE_HOME``, else ``~/.memlane`` (not created here)."""
        return Path(self.home).expanduser() if self.home else default_home()

    def database_path(self) -> Path:
        """Where the SQLite file lives: the store's ``path``, else ``<home>/memlane.db``."""
        opts = self.vector_store.config
        if isinstance(opts, SQLiteStoreOptions) and opts.path:
            return Path(opts.path).expanduser()
        return self.home_path() / "memlane.db"

    def store(self) -> StoreConfig:
        """The store ``Memory(config=self)`` uses: ``vector_store`` with ``$MEMLANE_DATABASE_URL``
        applied (see the module docstring); ``provider`` is always set.

        Raises:
            ConfigError: PostgreSQL without a URL, or SQLite options with no provider named while
                ``$MEMLANE_DATABASE_URL`` is set.
        """
        return self.vector_store.resolved()

    def with_database_url(self, url: str, *, schema: str | None = None) -> MemoryConfig:
        """A copy whose store is PostgreSQL at ``url`` (``--database-url``); everything else is kept.

        Args:
            url: ``postgresql://user:password@host:5432/dbname`` or a libpq ``key=value`` string.
            schema: the PostgreSQL schema; None keeps the configured one (default ``memlane``).
        Raises:
            ConfigError: the URL or schema name is malformed.
        """
        return self.model_copy(update={"vector_store": postgres_store_config(self.vector_store, url, schema=schema)})


def _problems(exc: ValidationError) -> str:
    """A validation error as ``path: message; ...`` (pydantic's "Value error, " prefix dropped)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {str(err['msg']).removeprefix('Value error, ')}"
        for err in exc.errors()
    )
