"""Memory that maintains itself: ``consolidate``, ``profile``, ``restore`` and access statistics.

``ConsolidationMethods`` is the part of ``Memory``'s API that does it (``Memory`` inherits it,
``AsyncMemory`` awaits it). A pass walks the exact scopes inside the one it is given and, in each:

1. merges near-exact duplicates (:func:`memlane.core.consolidate.merge_groups`), no LLM needed;
2. with an LLM, shows it groups of similar memories: it merges those stating one fact (into one
   text keeping every detail) and supersedes what a newer memory makes untrue;
3. with an LLM, writes one episodic memory per finished run or session, linked to what it sums up;
4. archives memories idle past ``archive_after_days`` and, past ``max_memories``, the least used;

then rebuilds the profile of every user it touched. The plan is made from one read of the scope;
each step is one store transaction that re-checks what the plan saw, so a pass racing adds, edits
or another pass skips what moved, a kill leaves every finished step whole, and a second pass over
an unchanged store finds nothing to do. Nothing is deleted: merged and archived memories keep
their rows and history (``restore`` brings one back), superseded ones stay past versions.

Search counts what it returns (:class:`AccessLog`, flushed in batches) and multiplies a memory's
score by :func:`memlane.core.consolidate.decay_factor` of its idle time: unused memories sink
slowly, never vanish.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from memlane._graph_api import verbatim_mentions
from memlane._indexing import index_texts
from memlane._profiles import ProfileMethods, an_object
from memlane.core.consolidate import (
    ConsolidationSettings,
    Row,
    archive_plan,
    decay_factor,
    episodes,
    idle_days,
    merge_groups,
)
from memlane.core.consolidate_llm import (
    JUDGE_SCHEMA,
    SUMMARY_SCHEMA,
    judge_prompt,
    parse_judgements,
    parse_summary,
    summary_prompt,
)
from memlane.core.filters import to_iso
from memlane.core.inputs import check_text
from memlane.core.ranking import Scored
from memlane.core.records import NewMemory, StoredMemory
from memlane.core.scope import resolve_scope
from memlane.core.text import content_hash
from memlane.errors import InvalidRequest, LLMOutputError, MemlaneError
from memlane.pipeline import FactPipeline
from memlane.protocols import Store
from memlane.types import (
    ArchiveItem,
    ConsolidationReport,
    MemoryItem,
    MergeItem,
    Scope,
    SummaryItem,
    SupersedeItem,
    Usage,
)

__all__ = ["AccessLog", "ConsolidationMethods"]

log = logging.getLogger("memlane")

# Search statistics are written at most this often (or when this many memories wait): a search
# stays a read, and a crash loses at most a few seconds of counts, never a memory.
FLUSH_SECONDS = 30.0
FLUSH_MEMORIES = 500


class AccessLog:
    """Retrievals counted in memory and written in one transaction every ``FLUSH_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, str]] = {}
        self._last_flush = time.monotonic()

    def note(self, memory_ids: Sequence[str], now: datetime) -> bool:
        """Count one retrieval of each id; True when it is time to flush."""
        at = to_iso(now)
        with self._lock:
            for mid in memory_ids:
                n, _ = self._pending.get(mid, (0, at))
                self._pending[mid] = (n + 1, at)
            return len(self._pending) >= FLUSH_MEMORIES or time.monotonic() - self._last_flush >= FLUSH_SECONDS

    def take(self) -> dict[str, tuple[int, str]]:
        """What waits to be written (and forget it)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
            return pending

    def give_back(self, pending: dict[str, tuple[int, str]]) -> None:
        """A failed flush's counts, kept for the next one."""
        with self._lock:
            for mid, (n, at) in pending.items():
                m, last = self._pending.get(mid, (0, at))
                self._pending[mid] = (n + m, max(at, last))

    def last_seen(self, memory_ids: Sequence[str]) -> dict[str, str]:
        """The unflushed last retrieval of each given id that has one."""
        with self._lock:
            return {m: self._pending[m][1] for m in memory_ids if m in self._pending}


_UNUSABLE = "the model gave no usable answer (kept as it was; the next pass asks again)"


def _ask(
    pipeline: FactPipeline, prompt: Any, schema: dict[str, Any], name: str, report: ConsolidationReport, what: str
) -> Any:
    """The model's answer to one consolidation prompt, or None when it gave nothing usable (also
    after a repair): that step is skipped and said so in the report, and the pass goes on. A
    failing provider (``ProviderError``) still stops the pass: every step after it would fail too."""
    try:
        return pipeline._ask(prompt, schema, name, an_object, report["usage"])
    except LLMOutputError:
        report["skipped"].append(f"{what}: {_UNUSABLE}")
        return None


def _similar_groups(rows: Sequence[Row], threshold: float, size: int = 5) -> list[list[Row]]:
    """Small groups of look-alike memories (same speaker), each row in one group at most: a
    row's nearest unassigned neighbours at or above ``threshold``, oldest row first."""
    by_speaker: dict[tuple[str | None, str | None], list[Row]] = {}
    for r in rows:
        if not r.episodic and not r.kept_apart and len(r.embedding):
            by_speaker.setdefault((r.actor_id, r.role), []).append(r)
    groups = []
    for members in by_speaker.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: r.created_at)  # stable: stored first among equals
        vectors = np.stack([r.embedding for r in members]).astype(np.float32)
        taken = np.zeros(len(members), dtype=bool)
        # Each row's nearest few (with room for rows already taken), found per block of rows with a
        # partial sort: a scope of 100k memories costs matrix products, not 100k full sorts.
        k = min(len(members) - 1, size - 1 + 16)
        for start in range(0, len(members), 1024):
            block = vectors[start : start + 1024] @ vectors.T
            here = np.arange(len(block))
            block[here, start + here] = -2.0  # never its own neighbour
            nearest = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < len(members) else np.argsort(-block, axis=1)
            for offset in range(len(block)):
                i = start + offset
                if taken[i]:
                    continue
                sims = block[offset]
                order = nearest[offset][np.argsort(-sims[nearest[offset]])]
                near = [int(j) for j in order if not taken[j] and sims[j] >= threshold][: size - 1]
                if near:
                    taken[[i, *near]] = True
                    groups.append([members[i], *(members[j] for j in sorted(near))])
    return groups


class ConsolidationMethods(ProfileMethods):
    """Consolidation on ``Memory``; ``Memory`` supplies the store, models, clock and config (the
    declarations are :class:`ProfileMethods`')."""

    _access: AccessLog

    # -- access statistics -----------------------------------------------------------------------
    def _retrieved(self, memory_ids: Sequence[str]) -> None:
        """Count a search's results; write the counts when due (a failed write keeps them)."""
        if memory_ids and self._access.note(memory_ids, self._now()):
            self._flush_access()

    def _flush_access(self) -> None:
        pending = self._access.take()
        if not pending:
            return
        try:
            self._open().record_access(pending)
        except MemlaneError as exc:
            # Statistics wait for the next flush; the search itself has succeeded.
            log.warning("search statistics not written yet (%s); kept for the next try", exc)
            self._access.give_back(pending)

    def _decay(self, store: Store, ranked: list[Scored], limit: int) -> tuple[list[Scored], dict[int, StoredMemory]]:
        """Scores times each memory's decay factor (idle since its last change or retrieval), and
        the rows read for it (the hits' own read: no extra round trip to the store).

        Only the first ``3 * limit`` candidates are read and rescored: decay only lowers scores,
        so a candidate further down stays below them unless most of those decay at once.
        """
        s = self.config.consolidation
        if s.decay_weight <= 0 or s.stale_after_days <= 0 or not ranked:
            return ranked, {}
        head, tail = ranked[: 3 * limit], ranked[3 * limit :]
        read = store.fetch_active(int(r.id) for r in head)
        pending = self._access.last_seen([m.id for m, _ in read.values()])  # not written yet
        now = self._now()
        out = []
        for r in head:
            found = read.get(int(r.id))
            last = max(found[1], pending.get(found[0].id, "")) if found is not None else ""
            factor = decay_factor(idle_days(last, now), s.stale_after_days, s.decay_weight) if last else 1.0
            out.append(r if factor == 1.0 else dataclasses.replace(r, score=r.score * factor))
        out.sort(key=lambda r: -r.score)
        return out + tail, {rid: memory for rid, (memory, _) in read.items()}

    # -- consolidate -----------------------------------------------------------------------------
    def consolidate(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ConsolidationReport:
        """Tidy a scope's memories: merge duplicates, supersede what is outdated, summarise
        finished episodes, archive what is long unused, rebuild profiles (see ``docs/consolidation.md``).

        Without an LLM only near-exact duplicates merge (same words in the same order, once case,
        punctuation, articles and fillers are set aside) and no summaries are written; profiles
        are then built from the entity graph. Each step is one transaction; running it again on
        an unchanged store changes nothing. Nothing is deleted: merged and archived memories keep
        their rows and history (``get`` finds them; ``include_merged`` / ``include_archived``
        show them in search and ``get_all``; ``restore`` brings one back).

        Args:
            user_id, agent_id, run_id: the scope (the ids that are set must match); none: every
                scope in the store (for an operator's scheduled pass).
            dry_run: report what would be done, and change nothing.
            progress: called with ``(exact scopes done, exact scopes in all)``.
        Returns:
            ``{"dry_run", "scopes", "examined", "merged", "superseded", "summaries", "archived",
            "profiles", "skipped", "usage", "seconds"}``.
        Raises:
            InvalidRequest, ProviderError / LLMOutputError (the LLM failed: steps already done stay
            done, rerun to go on), StoreError.
        """
        if not isinstance(dry_run, bool):
            raise InvalidRequest(f"dry_run must be True or False, got {dry_run!r}")
        scope, _ = resolve_scope(
            user_id=user_id, agent_id=agent_id, run_id=run_id, filters=None, required=False, operation="consolidate"
        )
        started = time.monotonic()
        store = self._open()
        self._flush_access()
        s = self.config.consolidation.settings()
        llm = self.llm
        report = ConsolidationReport(
            dry_run=dry_run, scopes=0, examined=0, merged=[], superseded=[], summaries=[], archived=[], profiles=[],
            skipped=[], usage=Usage(llm_calls=0, prompt_tokens=0, completion_tokens=0), seconds=0.0,
        )  # fmt: skip
        if llm is None:
            report["skipped"].append(
                "similar memories and contradictions: no LLM configured (near-exact duplicates only)"
            )
            if s.summaries:
                report["skipped"].append("episodic summaries: no LLM configured")
        pipeline = FactPipeline(llm, self._embedder, store, self.config.extraction, self._usage) if llm else None
        exact = store.scopes(None if scope.is_empty() else scope)
        users: dict[str, None] = {}
        for done, sc in enumerate(exact, start=1):
            self._consolidate_scope(store, sc, s, pipeline, report, dry_run)
            if sc.user_id is not None:
                users.setdefault(sc.user_id, None)
            if progress is not None:
                progress(done, len(exact))
        report["scopes"] = len(exact)
        if s.profiles:
            for user in users:
                try:
                    if self._rebuild_profile(store, user, pipeline, report["usage"], dry_run):
                        report["profiles"].append(user)
                except LLMOutputError:
                    report["skipped"].append(f"profile of {user!r}: {_UNUSABLE}")
        report["seconds"] = round(time.monotonic() - started, 3)
        return report

    def _consolidate_scope(
        self,
        store: Any,
        sc: Scope,
        s: ConsolidationSettings,
        pipeline: FactPipeline | None,
        report: ConsolidationReport,
        dry_run: bool,
    ) -> None:
        now = self._now()
        rows: list[Row] = store.consolidation_rows(sc, now)
        report["examined"] += len(rows)
        gone: set[str] = set()
        for group in merge_groups(rows, s.merge_cosine):
            keep, others = group[0], group[1:]
            if dry_run:
                report["merged"].append(MergeItem(into=keep.id, ids=[r.id for r in others], memory=keep.memory))
                gone.update(r.id for r in others)
                continue
            out = store.merge(sc, (keep.id, keep.hash), [(r.id, r.hash) for r in others], now)
            if out is not None:
                report["merged"].append(MergeItem(into=out.into, ids=list(out.merged), memory=out.memory))
                gone.update(out.merged)
        rows = [r for r in rows if r.id not in gone]
        if pipeline is not None:
            rows = self._judge(store, sc, rows, s, pipeline, report, dry_run)
            if s.summaries:
                self._summarise(store, sc, rows, s, pipeline, report, dry_run)
        plan = archive_plan([r for r in rows if not r.episodic or s.max_memories is not None], now, s)
        if plan and not dry_run:
            done = set(store.archive(sc, [(r.id, r.hash) for r, _ in plan], now))
            plan = [(r, why) for r, why in plan if r.id in done]
        report["archived"] += [ArchiveItem(id=r.id, reason=why, memory=r.memory) for r, why in plan]  # type: ignore[typeddict-item]

    def _judge(
        self,
        store: Any,
        sc: Scope,
        rows: list[Row],
        s: ConsolidationSettings,
        pipeline: FactPipeline,
        report: ConsolidationReport,
        dry_run: bool,
    ) -> list[Row]:
        """Show the LLM groups of similar memories; apply its merges and supersessions."""
        groups = _similar_groups(rows, s.llm_cosine)
        by_id = {r.id: r for r in rows}
        gone: set[str] = set()
        for start in range(0, len(groups), s.llm_batch):
            batch = groups[start : start + s.llm_batch]
            prompt, table, members = judge_prompt(batch)
            data = _ask(
                pipeline,
                prompt,
                JUDGE_SCHEMA,
                "consolidation",
                report,
                f"{len(batch)} group{'' if len(batch) == 1 else 's'} of similar memories",
            )
            if data is None:
                continue
            judged = parse_judgements(data, table, members)
            now = self._now()
            for ids, text in judged.merges:
                keep, others = by_id[ids[0]], [by_id[i] for i in ids[1:]]
                if dry_run:
                    report["merged"].append(MergeItem(into=keep.id, ids=list(ids[1:]), memory=text))
                    gone.update(ids[1:])
                    continue
                rewrite = self._rewrite(keep, text, now) if text != keep.memory else None
                out = store.merge(sc, (keep.id, keep.hash), [(r.id, r.hash) for r in others], now, rewrite)
                if out is not None:
                    report["merged"].append(MergeItem(into=out.into, ids=list(out.merged), memory=out.memory))
                    gone.update(out.merged)
                    if rewrite is not None and out.memory == rewrite.memory:
                        gone.add(keep.id)  # its text changed: leave it out of this pass's summaries
            for old, new in judged.supersedes:
                if old in gone or new in gone:
                    continue
                if dry_run or store.supersede(sc, (old, by_id[old].hash), (new, by_id[new].hash), now):
                    report["superseded"].append(SupersedeItem(id=old, by=new, memory=by_id[old].memory))
                    gone.add(old)
        return [r for r in rows if r.id not in gone]

    def _rewrite(self, keep: Row, text: str, now: datetime) -> NewMemory:
        """The kept memory with a merged text, indexed as ``update`` would index it."""
        (ix,) = index_texts(self._embedder, [(text, keep.actor_id)], self.config.passages)
        return NewMemory(
            id=keep.id, memory=text, search_text=ix.search_text, hash=content_hash(text), embedding=ix.embedding,
            user_id=None, agent_id=None, run_id=None, role=keep.role, actor_id=keep.actor_id, metadata=keep.metadata,
            created_at=keep.created_at, timestamp=keep.timestamp, expires_at=keep.expires_at, passages=ix.passages,
            entities=verbatim_mentions(text, keep.actor_id),
        )  # fmt: skip

    def _summarise(
        self,
        store: Any,
        sc: Scope,
        rows: list[Row],
        s: ConsolidationSettings,
        pipeline: FactPipeline,
        report: ConsolidationReport,
        dry_run: bool,
    ) -> None:
        """One episodic memory per finished episode that no summary covers yet."""
        for episode in episodes(rows, sc.run_id, self._now(), s):
            data = _ask(
                pipeline, summary_prompt(episode.rows), SUMMARY_SCHEMA, "summary", report, f"summary of {episode.key}"
            )
            text = parse_summary(data) if data is not None else None
            if text is None:
                continue
            ids = [r.id for r in episode.rows]
            if dry_run:
                report["summaries"].append(SummaryItem(id=None, episode=episode.key, sources=ids, memory=text))
                continue
            (ix,) = index_texts(self._embedder, [(text, None)], self.config.passages)
            now = self._now()
            meta = {"memory_type": "episodic", "episode": episode.key, "episode_start": episode.start,
                    "episode_end": episode.end}  # fmt: skip
            row = NewMemory(
                id=str(uuid.uuid4()), memory=text, search_text=ix.search_text, hash=content_hash(text),
                embedding=ix.embedding, user_id=sc.user_id, agent_id=sc.agent_id, run_id=sc.run_id, role=None,
                actor_id=None, metadata=meta, created_at=to_iso(now), timestamp=episode.end, expires_at=None,
                passages=ix.passages, entities=verbatim_mentions(text, None),
            )  # fmt: skip
            linked = store.add_summary(row, ids, now)
            if linked is not None:
                report["summaries"].append(SummaryItem(id=row.id, episode=episode.key, sources=linked, memory=text))

    def restore(self, memory_id: str) -> MemoryItem:
        """Bring an archived or merged memory back into search (history records an ADD).

        Someone wanted it back: it counts as retrieved now, so a cap does not archive it again
        before memories nobody asked for, and a memory merged once is never merged again.

        Raises:
            MemoryNotFound: no memory has this id.
            InvalidRequest: it is active already, or an active memory of its scope has its text.
        """
        check_text(memory_id, "memory_id")
        store = self._open()
        now = self._now()
        restored = store.restore(memory_id, now)
        self._access.note([memory_id], now)
        item: MemoryItem = restored.to_item()
        return item
