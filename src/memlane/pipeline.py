"""The ``add(infer=True)`` pipeline: extract facts, find related memories, reconcile, write once.

Per ``add``: one extraction call (which also names each fact's entities and relations); one
batched embedding of the facts; a reconciliation call only for facts that have related memories
in the scope (so one LLM call when the scope holds nothing similar); exact and near duplicates
are settled without the model. A repair call follows only an answer that cannot be parsed. All
writes (facts, their entities and relations, past versions, provenance, history) then commit in
one store transaction; a failure anywhere before it writes nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from memlane.config import ExtractionConfig
from memlane.core.extraction import (
    PROCEDURE_SCHEMA,
    Fact,
    Steering,
    extraction_prompt,
    facts_schema,
    parse_facts,
    parse_procedure,
    procedure_prompt,
    salvage_facts,
)
from memlane.core.filters import to_iso
from memlane.core.graph import detect_names
from memlane.core.inputs import ChatMessage
from memlane.core.llm_json import JSONNotFound, extract_json
from memlane.core.reconcile import DECISIONS_SCHEMA, Decision, Known, parse_decisions, reconcile_prompt
from memlane.core.records import FactPlan, FactWrite, NewMemory, SourceMessage
from memlane.core.text import analyse, content_hash, query_terms
from memlane.errors import LLMOutputError, MemlaneError, ProviderError
from memlane.protocols import LLM, Completion, Embedder, PromptMessage, Store, Vector
from memlane.types import AddResult, AddResultItem, Scope, Usage

__all__ = ["AddContext", "FactPipeline", "UsageMeter", "steering"]

T = TypeVar("T")
MAX_KNOWN = 20


class UsageMeter:
    """Running LLM usage totals; thread-safe (a server shares one Memory between threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = Usage(llm_calls=0, prompt_tokens=0, completion_tokens=0)

    def add(self, usage: Usage) -> None:
        """Fold one add's usage into the totals."""
        with self._lock:
            for key in ("llm_calls", "prompt_tokens", "completion_tokens"):
                self._total[key] += usage[key]

    def snapshot(self) -> Usage:
        """A copy of the totals."""
        with self._lock:
            return Usage(**self._total)


@dataclass
class AddContext:
    """One add call's validated inputs."""

    messages: list[ChatMessage]
    scope: Scope
    metadata: dict[str, Any]
    when: datetime
    expires_at: str | None
    steering: Steering
    now: datetime


def _zero() -> Usage:
    return Usage(llm_calls=0, prompt_tokens=0, completion_tokens=0)


class FactPipeline:
    """Extraction and reconciliation over an LLM, an embedder and a store."""

    def __init__(self, llm: LLM, embedder: Embedder, store: Store, config: ExtractionConfig, meter: UsageMeter) -> None:
        self.llm = llm
        self.embedder = embedder
        self.store = store
        self.config = config
        self.meter = meter

    # -- the LLM, with one repair attempt ------------------------------------------------------
    def _ask(
        self,
        prompt: list[PromptMessage],
        schema: dict[str, Any],
        name: str,
        validate: Callable[[Any], T],
        usage: Usage,
        salvage: Callable[[str, bool], T | None] | None = None,
    ) -> T:
        """Ask, parse; on an unusable answer ask once more, saying what was wrong.

        ``salvage(text, looping_only)`` reads what is usable in an answer cut off at the token
        limit (a false value: nothing): in the first answer only when the model went round in a
        loop (no repair then: more tokens would not help), in the repair answer in any case.
        """
        answer = self._complete(prompt, schema, name, self.config.max_tokens, usage)
        try:
            return _parse(answer.data, answer.text, validate, answer.truncated)
        except JSONNotFound as first:
            reason = str(first)
        looped = salvage(answer.text, True) if salvage is not None and answer.truncated else None
        if looped:
            return looped
        budget = self.config.max_tokens * 2 if answer.truncated else self.config.max_tokens
        repair = [
            *prompt,
            PromptMessage(role="assistant", content=answer.text[:4000]),
            PromptMessage(
                role="user",
                content=f"That answer could not be used: {reason}. Answer again with the JSON object only, "
                "in exactly the shape asked for, and keep it short.",
            ),
        ]
        again = self._complete(repair, schema, name, budget, usage)
        try:
            return _parse(again.data, again.text, validate, again.truncated)
        except JSONNotFound as second:
            kept = salvage(again.text, False) if salvage is not None and again.truncated else None
            if kept:
                return kept
            raise LLMOutputError(
                f"{self.llm.model_id} gave no usable answer to the {name} prompt, also after one repair "
                f"attempt ({second}); nothing was stored. A larger model, or one with structured output, helps.",
                provider=self.llm.model_id,
                raw=again.text,
            ) from second

    def _complete(
        self, prompt: list[PromptMessage], schema: dict[str, Any], name: str, max_tokens: int, usage: Usage
    ) -> Completion:
        usage["llm_calls"] += 1
        try:
            answer = self.llm.complete(prompt, schema=schema, schema_name=name, max_tokens=max_tokens, temperature=0.0)
        except MemlaneError:
            raise
        except Exception as exc:  # a third-party LLM object that does not translate its errors
            raise ProviderError(f"{self.llm.model_id} failed: {exc!r}", provider=self.llm.model_id) from exc
        finally:
            self.meter.add(Usage(llm_calls=1, prompt_tokens=0, completion_tokens=0))
        usage["prompt_tokens"] += answer.prompt_tokens
        usage["completion_tokens"] += answer.completion_tokens
        self.meter.add(
            Usage(llm_calls=0, prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
        )
        return answer

    # -- facts -----------------------------------------------------------------------------------
    def add_facts(self, ctx: AddContext) -> AddResult:
        """Extract, reconcile and store the facts in ``ctx.messages``."""
        usage = _zero()
        graph = self.config.graph
        prompt = extraction_prompt(ctx.messages, ctx.when, ctx.steering, graph=graph)
        n = len(ctx.messages)
        facts = self._ask(
            prompt, facts_schema(graph), "facts", lambda obj: parse_facts(obj, n), usage,
            lambda text, looping: salvage_facts(text, n, looping_only=looping),
        )  # fmt: skip
        if not facts:
            return AddResult(results=[], mode="extracted", usage=usage)
        if not graph:  # link the names each fact holds, as an add without an LLM does
            facts = [replace(f, entities=tuple(detect_names(f.text))) for f in facts]
        vectors = self.embedder.embed([f.text for f in facts], kind="document")
        rows = [self._row(f.text, vectors[i], ctx, fact=f) for i, f in enumerate(facts)]
        related = self._related(vectors, ctx)
        writes: list[FactWrite | None] = []
        pending: list[int] = []
        for i, row in enumerate(rows):
            settled = self._settle(row, facts[i], related[i])
            writes.append(settled)
            if settled is None:
                pending.append(i)
        if pending:
            self._reconcile(pending, rows, facts, related, writes, ctx, usage)
        plan = FactPlan(messages=_sources(ctx), writes=[w for w in writes if w is not None])
        outcomes = self.store.apply_facts(plan, ctx.now)
        results = []
        for out in outcomes:
            item = AddResultItem(id=out.id, memory=out.memory, event=out.event)
            if out.previous is not None:
                item["previous_memory"] = out.previous
            results.append(item)
        return AddResult(results=results, mode="extracted", usage=usage)

    def _row(
        self,
        text: str,
        vector: Vector,
        ctx: AddContext,
        metadata: dict[str, Any] | None = None,
        fact: Fact | None = None,
    ) -> NewMemory:
        """The memory a fact writes, with the entities and relations it states (ADD and UPDATE alike)."""
        return NewMemory(
            id=str(uuid.uuid4()),
            memory=text,
            search_text=analyse(text),
            hash=content_hash(text),
            embedding=vector,
            user_id=ctx.scope.user_id,
            agent_id=ctx.scope.agent_id,
            run_id=ctx.scope.run_id,
            role=None,
            actor_id=None,
            metadata=metadata if metadata is not None else ctx.metadata,
            created_at=to_iso(ctx.now),
            timestamp=to_iso(ctx.when),
            expires_at=ctx.expires_at,
            entities=fact.entities if fact is not None else (),
            relations=fact.relations if fact is not None else (),
        )

    def _related(self, vectors: Any, ctx: AddContext) -> list[list[tuple[Known, float]]]:
        """Per fact, the most similar current memories of exactly this scope (best first)."""
        k = self.config.related
        if k == 0:
            return [[] for _ in range(len(vectors))]
        hits = [self.store.dense(ctx.scope, None, vec, 4 * k, ctx.now) for vec in vectors]
        wanted = {rid for fact_hits in hits for rid, cos in fact_hits if cos >= self.config.related_threshold}
        rows = self.store.fetch(wanted)
        out: list[list[tuple[Known, float]]] = []
        for fact_hits in hits:
            mine = []
            for rid, cos in fact_hits:
                row = rows.get(rid)
                # Exactly this scope: an add for (alice, run s1) never touches (alice, run s2).
                if row is None or cos < self.config.related_threshold or row.valid_until is not None:
                    continue
                if (row.user_id, row.agent_id, row.run_id) != (ctx.scope.user_id, ctx.scope.agent_id, ctx.scope.run_id):
                    continue
                mine.append((Known("", row.id, row.memory, row.timestamp[:10], row.hash), cos))
            out.append(mine[:k])
        return out

    def _settle(self, row: NewMemory, fact: Fact, related: list[tuple[Known, float]]) -> FactWrite | None:
        """Decide without the model where that is safe: nothing related -> ADD, a duplicate -> NONE."""
        if not related:
            return FactWrite("ADD", row, fact.sources)
        words = set(query_terms(row.memory))
        for known, cos in related:
            # Close vectors alone are not enough: "has three children" and "has two children" sit
            # at cosine 0.95 with MiniLM. Without the model, only the same content words count.
            same = known.hash == row.hash or (cos >= self.config.duplicate_threshold and
                                              set(query_terms(known.text)) == words)  # fmt: skip
            if same:
                return FactWrite("NONE", row, fact.sources, known.memory_id, known.hash)
        return None

    def _reconcile(
        self,
        pending: list[int],
        rows: list[NewMemory],
        facts: list[Fact],
        related: list[list[tuple[Known, float]]],
        writes: list[FactWrite | None],
        ctx: AddContext,
        usage: Usage,
    ) -> None:
        shown: dict[str, Known] = {}
        for i in pending:
            for known, _ in related[i]:
                if known.memory_id not in shown and len(shown) < MAX_KNOWN:
                    local = f"m{len(shown) + 1}"
                    shown[known.memory_id] = Known(local, known.memory_id, known.text, known.date, known.hash)
        known_list = list(shown.values())
        prompt = reconcile_prompt([rows[i].memory for i in pending], known_list)
        decisions: list[Decision] = self._ask(
            prompt, DECISIONS_SCHEMA, "decisions", lambda obj: parse_decisions(obj, len(pending), known_list), usage
        )
        rewrites: list[tuple[int, str]] = []
        for d in decisions:
            i = pending[d.fact]
            if d.action == "ADD" or d.target is None:
                writes[i] = FactWrite("ADD", rows[i], facts[i].sources)
                continue
            writes[i] = FactWrite(d.action, rows[i], facts[i].sources, d.target.memory_id, d.target.hash)
            if d.action == "UPDATE" and d.text and d.text != rows[i].memory:
                rewrites.append((i, d.text))
        if rewrites:  # the rewritten texts replace the targets': embed them, in one batch
            vectors = self.embedder.embed([text for _, text in rewrites], kind="document")
            for (i, text), vec in zip(rewrites, vectors, strict=True):
                write = writes[i]
                assert write is not None
                write.new = self._row(text, vec, ctx, fact=facts[i])

    # -- procedural memory --------------------------------------------------------------------
    def add_procedure(self, ctx: AddContext) -> AddResult:
        """Condense an agent's run into one procedural memory."""
        usage = _zero()
        prompt = procedure_prompt(ctx.messages, ctx.when, ctx.steering)
        summary = self._ask(prompt, PROCEDURE_SCHEMA, "procedure", parse_procedure, usage)
        vector = self.embedder.embed([summary], kind="document")[0]
        row = self._row(summary, vector, ctx, metadata={**ctx.metadata, "memory_type": "procedural"})
        write = FactWrite("ADD", row, tuple(range(len(ctx.messages))))
        outcome = self.store.apply_facts(FactPlan(messages=_sources(ctx), writes=[write]), ctx.now)[0]
        item = AddResultItem(id=outcome.id, memory=outcome.memory, event=outcome.event)
        return AddResult(results=[item], mode="procedural", usage=usage)


def _parse(data: Any, text: str, validate: Callable[[Any], T], truncated: bool) -> T:
    if data is not None:
        try:
            return validate(data)
        except ValueError as exc:
            raise JSONNotFound(str(exc)) from exc
    try:
        return extract_json(text, validate)
    except JSONNotFound as exc:
        if truncated:
            raise JSONNotFound(f"the answer was cut off at the token limit ({exc})") from exc
        raise


def _sources(ctx: AddContext) -> list[SourceMessage]:
    when = to_iso(ctx.when)
    return [SourceMessage(m.role, m.name, m.content, when) for m in ctx.messages]


def steering(
    config: ExtractionConfig, instructions: str | None, includes: Sequence[str], excludes: Sequence[str]
) -> Steering:
    """Config rules first, then the call's own (later rules read as refinements)."""
    texts = tuple(t for t in (config.instructions, instructions) if t)
    return Steering(
        instructions=texts,
        includes=tuple(dict.fromkeys([*config.includes, *includes])),
        excludes=tuple(dict.fromkeys([*config.excludes, *excludes])),
    )
