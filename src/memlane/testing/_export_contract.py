"""The store contract's export and import tests (``Store.export_page``, ``history_page``, ``import_records``).

Part of :class:`memlane.testing.StoreContract`: kept in its own module only to keep modules small.
"""

from __future__ import annotations

import builtins
import dataclasses
from datetime import timedelta
from typing import Any

import numpy as np

from memlane.core.filters import to_iso
from memlane.core.records import FactPlan, FactWrite, PortableEvent, PortableMemory, SourceMessage
from memlane.core.text import analyse, content_hash, index_text, query_terms
from memlane.errors import InvalidRequest, MemoryConflict
from memlane.testing._contract_base import ALICE, T0, ContractHelpers, StoreFactory, StoreUnderTest, raises
from memlane.types import Scope

__all__ = ["ExportContract"]

_LATER = T0 + timedelta(days=30)
_BOB = Scope(user_id="bob")


def _plain(m: PortableMemory) -> dict[str, Any]:
    """A row's portable fields (no store-local row id, no embedder-specific vector or analysed text)."""
    skip = {"rid", "embedding", "search_text", "record"}
    return {f.name: getattr(m, f.name) for f in dataclasses.fields(m) if f.name not in skip}


def _event(e: PortableEvent) -> PortableEvent:
    return dataclasses.replace(e, seq=0)


class ExportContract(ContractHelpers):
    """Export pages and import of every kind of row: conversation links, versions, sources, history,
    and consolidation's states, links and statistics."""

    def build(self, store: StoreUnderTest) -> dict[str, str]:
        """A store with every kind of row and history; returns the ids by name."""
        turns = self.add(store, "where did you hike?", "up Ben Nevis", "how was it?", conversational=True)
        ids = dict(zip(["q", "a", "q2"], turns, strict=True))
        ids["note"] = self.add(store, "a note with metadata", metadata={"k": [1, "ü"]}, actor_id="Bo")[0]
        ids["gone"] = self.add(store, "the wifi password is hunter2")[0]
        ids["secret"] = self.add(store, "my passport number is X123")[0]
        ids["soon"] = self.add(store, "parking spot 12", expires_at=T0 + timedelta(hours=1))[0]
        ids["bob"] = self.add(store, "bob's own note", user_id="bob", agent_id="bot")[0]
        msgs = [SourceMessage("user", "Al", "I live in Berlin and like jazz", to_iso(T0))]
        plan = FactPlan(msgs, [FactWrite("ADD", self.fact("Lives in Berlin"), (0,)),
                               FactWrite("ADD", self.fact("Likes jazz"), (0,))])  # fmt: skip
        berlin, jazz = store.apply_facts(plan, T0)
        ids["berlin"], ids["jazz"] = berlin.id, jazz.id
        later = [SourceMessage("user", None, "Moved to Oslo, and no more jazz", to_iso(_LATER))]
        store.apply_facts(
            FactPlan(later, [
                FactWrite("UPDATE", self.fact("Lives in Oslo", when=_LATER), (0,), berlin.id,
                          content_hash("Lives in Berlin")),
                FactWrite("DELETE", self.fact("No jazz", when=_LATER), (0,), jazz.id, content_hash("Likes jazz")),
            ]),
            _LATER,
        )  # fmt: skip
        store.delete(ids["gone"], purge=False, now=_LATER)
        self.edit(store, ids["secret"], "my passport number is Y456", now=_LATER)
        store.delete(ids["secret"], purge=True, now=_LATER)
        return ids

    def export(
        self, store: StoreUnderTest, scope: Scope | None = None, page: int = 2
    ) -> tuple[builtins.list[PortableMemory], builtins.list[PortableEvent]]:
        """Every row and event of ``scope``, read in small pages."""
        rows: builtins.list[PortableMemory] = []
        while batch := store.export_page(scope, rows[-1].rid if rows else 0, page):
            assert len(batch) <= page
            rows += batch
        events: builtins.list[PortableEvent] = []
        while batch_e := store.history_page(scope, (events[-1].memory_id, events[-1].seq) if events else None, page):
            events += batch_e
        return rows, events

    def importable(self, rows: builtins.list[PortableMemory]) -> builtins.list[PortableMemory]:
        """Copies of exported rows, embedded and analysed the way ``Memory.import_records`` does."""
        out = []
        for m in rows:
            text = index_text(m.memory, m.actor_id)
            out.append(dataclasses.replace(m, rid=0, search_text=analyse(text), embedding=self.vec(text)))
        return out

    def test_export_pages_every_row_with_links_versions_and_sources(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = self.build(store)
        rows, events = self.export(store)
        assert [m.rid for m in rows] == sorted({m.rid for m in rows})
        by_id = {m.id: m for m in rows}
        live = {m.id for m in rows if m.version_of is None}
        assert live == {ids[k] for k in ("q", "a", "q2", "note", "soon", "bob", "berlin")}
        q, a, q2 = (by_id[ids[k]] for k in ("q", "a", "q2"))
        assert (q.prev_id, a.prev_id, q2.prev_id) == (None, q.id, a.id)
        assert q.conversational and q.role == "user" and not by_id[ids["berlin"]].conversational
        note = by_id[ids["note"]]
        assert (note.metadata, note.actor_id, note.hash) == ({"k": [1, "ü"]}, "Bo", content_hash(note.memory))
        assert by_id[ids["soon"]].expires_at == to_iso(T0 + timedelta(hours=1))
        versions = {m.version_of: m for m in rows if m.version_of is not None}
        assert set(versions) == {ids["berlin"], ids["jazz"]}
        berlin_then = versions[ids["berlin"]]
        assert (berlin_then.memory, berlin_then.valid_until) == ("Lives in Berlin", to_iso(_LATER))
        # Sources travel once per memory: on the current row, else on the newest past version.
        assert [s.content for s in by_id[ids["berlin"]].sources] == [
            "I live in Berlin and like jazz",
            "Moved to Oslo, and no more jazz",
        ]
        assert versions[ids["berlin"]].sources == []
        assert [s.content for s in versions[ids["jazz"]].sources] == [
            "I live in Berlin and like jazz",
            "Moved to Oslo, and no more jazz",
        ]
        grouped: dict[str, builtins.list[PortableEvent]] = {}
        for e in events:
            grouped.setdefault(e.memory_id, []).append(e)
        assert [e.memory_id for e in events] == sorted(e.memory_id for e in events)  # each memory's events together
        assert [e.event for e in grouped[ids["gone"]]] == ["ADD", "DELETE"]  # deleted memories keep their history
        assert all(e.redacted and e.old_memory is None and e.new_memory is None for e in grouped[ids["secret"]])
        assert [(e.event, e.effective_at) for e in grouped[ids["berlin"]]] == [
            ("ADD", to_iso(T0)),
            ("UPDATE", to_iso(_LATER)),
        ]
        for mid, group in grouped.items():  # the events are the history, every field
            history = [{k: v for k, v in e.items() if k != "id"} for e in store.history(mid)]
            assert [{k: v for k, v in dataclasses.asdict(e).items() if k != "seq"} for e in group] == history
            assert [e.seq for e in group] == [e["id"] for e in store.history(mid)]

    def test_scoped_export_covers_only_the_scope(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = self.build(store)
        rows, events = self.export(store, _BOB)
        assert [m.id for m in rows] == [ids["bob"]] and {e.memory_id for e in events} == {ids["bob"]}
        rows, events = self.export(store, Scope(user_id="alice", agent_id="bot"))
        assert rows == [] and events == []
        everything, _ = self.export(store, None)
        rows, _ = self.export(store, ALICE)
        assert len(rows) == len(everything) - 1

    def test_import_round_trips_everything(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = self.build(store)
        rows, events = self.export(store, None, page=500)
        store.reset()
        store = self.opened(store_factory)
        outcome = store.import_records(self.importable(rows), events, on_conflict="error", now=_LATER)
        assert tuple(outcome) == (len(rows), 0, len(events))
        again, events_again = self.export(store, None, page=3)
        assert [_plain(m) for m in again] == [_plain(m) for m in rows]
        assert [_event(e) for e in events_again] == [_event(e) for e in events]
        berlin = store.get(ids["berlin"])
        assert berlin is not None and berlin.memory == "Lives in Oslo" and store.get(ids["jazz"]) is None
        assert len(store.sources(ids["berlin"])) == 2 and len(store.sources(ids["jazz"])) == 2
        # The rows are searchable: keyword index, vectors, past versions by as_of, conversation links.
        assert self.keyword_ids(store, "Ben Nevis") == [ids["a"]]
        assert self.dense_ids(store, "Lives in Oslo", k=1) == [ids["berlin"]]
        past = store.keyword(ALICE, None, query_terms("Berlin"), 10, _LATER, T0 + timedelta(days=1))
        assert [m.memory for m in store.fetch(past).values()] == ["Lives in Berlin"]
        rid = self.rids(store)
        assert store.followers([rid[ids["q"]]], ALICE, None, T0) == [rid[ids["a"]]]
        assert store.term_stats([])[0] == len(rows)

    def test_import_conflicts_raise_or_skip_and_write_nothing(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = self.build(store)
        rows, events = self.export(store, None, page=500)
        docs = store.term_stats([])[0]
        with raises(MemoryConflict):
            store.import_records(self.importable(rows), events, on_conflict="error", now=_LATER)
        assert store.term_stats([])[0] == docs and self.export(store, None, page=500)[1] == events
        # Skipping: every memory is known already (rows, versions, or history only), nothing is written.
        outcome = store.import_records(self.importable(rows), events, on_conflict="skip", now=_LATER)
        memory_ids = {m.memory_id for m in rows} | {e.memory_id for e in events}
        n_rows_skipped = len(rows) + len(memory_ids - {m.memory_id for m in rows})
        assert tuple(outcome) == (0, n_rows_skipped, 0)
        assert self.export(store, None, page=500) == (rows, events)
        # A new id whose text duplicates a current memory of the same scope and speaker conflicts too.
        twin = dataclasses.replace(self.importable([r for r in rows if r.id == ids["note"]])[0], id="twin-of-note")
        text = "brand new"
        fresh = self.importable([dataclasses.replace(twin, id="fresh", memory=text, hash=content_hash(text))])
        with raises(MemoryConflict):
            store.import_records([*fresh, twin], [], on_conflict="error", now=_LATER)
        assert store.get("fresh") is None
        assert tuple(store.import_records([*fresh, twin], [], on_conflict="skip", now=_LATER)) == (1, 1, 0)
        assert store.get("fresh") is not None and store.get("twin-of-note") is None
        # ... and so does a duplicate within the import itself.
        pair = [dataclasses.replace(fresh[0], id=f"dup-{i}", user_id="carol") for i in range(2)]
        assert tuple(store.import_records(pair, [], on_conflict="skip", now=_LATER)) == (1, 1, 0)

    def test_import_links_follow_the_rows(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        turns = self.importable(
            [PortableMemory(id=f"t{i}", memory=f"turn number {i}", hash=content_hash(f"turn number {i}"),
                            user_id="alice", agent_id=None, run_id=None, role="user", actor_id=None, metadata={},
                            created_at=to_iso(T0), updated_at=to_iso(T0), timestamp=to_iso(T0), expires_at=None,
                            conversational=True, prev_id=f"t{i - 1}" if i else None)
             for i in range(3)]
        )  # fmt: skip
        for vector in (np.zeros(0, dtype=np.float32), np.ones(self.dimension + 1, dtype=np.float32)):
            with raises(InvalidRequest):  # rows are embedded, for this store's dimension, before import
                store.import_records([dataclasses.replace(turns[0], embedding=vector)], [], on_conflict="error", now=T0)
        turns[0].prev_id = "t2"  # a link to a row stored after it, and one to a row of the store
        store.import_records(turns[1:], [], on_conflict="error", now=T0)
        store.import_records(turns[:1], [], on_conflict="error", now=T0)
        rows = {m.id: m for m in self.export(store)[0]}
        assert (rows["t0"].prev_id, rows["t1"].prev_id, rows["t2"].prev_id) == ("t2", None, "t1")
        later = [dataclasses.replace(t, id=f"u{i}", prev_id=f"u{(i + 1) % 2}") for i, t in enumerate(turns[:2])]
        later = [dataclasses.replace(t, memory=f"later {t.id}", hash=content_hash(f"later {t.id}")) for t in later]
        store.import_records(later, [], on_conflict="error", now=T0)
        rows = {m.id: m for m in self.export(store)[0]}
        assert (rows["u0"].prev_id, rows["u1"].prev_id) == ("u1", "u0")

    def test_import_keeps_each_memorys_sources_in_order(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        first, older, shared = (SourceMessage("user", None, text, to_iso(T0 + timedelta(days=i)))
                                for i, text in enumerate(["first", "older", "shared"]))  # fmt: skip
        rows = self.importable(
            [PortableMemory(id=mid, memory=text, hash=content_hash(text), user_id="alice", agent_id=None,
                            run_id=None, role=None, actor_id=None, metadata={}, created_at=to_iso(T0),
                            updated_at=to_iso(T0), timestamp=to_iso(T0), expires_at=None, sources=sources)
             for mid, text, sources in [("a", "Fact A", [first, shared]), ("b", "Fact B", [older, shared])]]
        )  # fmt: skip
        store.import_records(rows, [], on_conflict="error", now=T0)
        assert [s["content"] for s in store.sources("a")] == ["first", "shared"]
        assert [s["content"] for s in store.sources("b")] == ["older", "shared"]
        assert [m.sources for m in self.export(store)[0]] == [[first, shared], [older, shared]]

    # -- consolidation: merged and archived rows, summaries, access statistics -------------------
    def consolidated(self, store: StoreUnderTest) -> dict[str, str]:
        """A store where consolidation merged, archived and summarised, with search statistics."""
        names = ["kept", "merged", "archived", "walk", "run", "plain"]
        texts = ["I love sushi", "i love sushi!", "old parking spot 7", "walked the dog at dawn",
                 "went for a run at noon", "likes green tea"]  # fmt: skip
        ids = dict(zip(names, self.add(store, *texts), strict=True))
        ids["bob"] = self.add(store, "bob rides a bike", user_id="bob")[0]
        merged = store.merge(ALICE, (ids["kept"], content_hash(texts[0])), [(ids["merged"], content_hash(texts[1]))],
                             _LATER)  # fmt: skip
        assert merged is not None and merged.merged == (ids["merged"],)
        assert store.archive(ALICE, [(ids["archived"], content_hash(texts[2]))], _LATER) == [ids["archived"]]
        summary = self.fact("Exercised twice on Monday", when=_LATER, metadata={"memory_type": "episodic"})
        assert store.add_summary(summary, [ids["walk"], ids["run"]], _LATER) == [ids["walk"], ids["run"]]
        ids["summary"] = summary.id
        store.record_access({ids["kept"]: (3, to_iso(_LATER)), ids["walk"]: (1, to_iso(T0))})
        return ids

    def test_consolidated_store_round_trips(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = self.consolidated(store)
        rows, events = self.export(store, None, page=3)
        by_id = {m.id: m for m in rows}
        assert (by_id[ids["merged"]].state, by_id[ids["merged"]].merged_into) == ("merged", ids["kept"])
        assert by_id[ids["merged"]].valid_until == to_iso(_LATER) and by_id[ids["merged"]].version_of is None
        assert (by_id[ids["archived"]].state, by_id[ids["archived"]].merged_into) == ("archived", None)
        assert by_id[ids["summary"]].summarises == sorted([ids["walk"], ids["run"]])
        assert (by_id[ids["kept"]].retrievals, by_id[ids["kept"]].last_retrieved) == (3, to_iso(_LATER))
        assert {e.event for e in events} == {"ADD", "MERGE", "ARCHIVE"}
        store.reset()
        store = self.opened(store_factory)
        outcome = store.import_records(self.importable(rows), events, on_conflict="error", now=_LATER)
        assert tuple(outcome) == (len(rows), 0, len(events))
        again, events_again = self.export(store, None, page=2)
        assert [_plain(m) for m in again] == [_plain(m) for m in rows]
        assert [_event(e) for e in events_again] == [_event(e) for e in events]
        # Merged and archived memories stay out of search; get still finds them.
        assert self.keyword_ids(store, "sushi", now=_LATER) == [ids["kept"]]
        assert ids["archived"] not in self.dense_ids(store, "old parking spot 7", now=_LATER)
        assert self.keyword_ids(store, "parking", now=_LATER) == []
        merged, archived = store.get(ids["merged"]), store.get(ids["archived"])
        assert merged is not None and (merged.state, merged.merged_into) == ("merged", ids["kept"])
        assert archived is not None and archived.state == "archived"
        assert [m.id for m in store.linked(ids["summary"])] == [ids["walk"], ids["run"]]
        assert store.access([ids["kept"], ids["walk"], ids["run"]]) == {
            ids["kept"]: (3, to_iso(_LATER)), ids["walk"]: (1, to_iso(T0)),
        }  # fmt: skip
        # Only active memories hold their text: adding the merged text again is a new memory.
        assert [e for _, e in store.insert([self.row("i love sushi!")], _LATER)] == ["ADD"]

    def test_import_of_consolidated_rows_checks_scopes_and_drops_dangling_links(
        self, store_factory: StoreFactory
    ) -> None:
        store = self.opened(store_factory)
        ids = self.consolidated(store)
        rows, events = self.export(store, None, page=500)
        store.reset()
        store = self.opened(store_factory)
        numbered = [dataclasses.replace(m, record=i + 2) for i, m in enumerate(self.importable(rows))]
        position = next(i for i, m in enumerate(numbered) if m.id == ids["merged"])
        across = [dataclasses.replace(m, merged_into=ids["bob"]) if i == position else m
                  for i, m in enumerate(numbered)]  # fmt: skip
        try:
            store.import_records(across, events, on_conflict="error", now=_LATER)
        except InvalidRequest as exc:
            assert f"record {position + 2}: merged_into names memory {ids['bob']!r} of another scope" in str(exc)
        else:
            raise AssertionError("a merged_into across scopes was imported")
        summary = next(i for i, m in enumerate(numbered) if m.id == ids["summary"])
        across = [dataclasses.replace(m, summarises=[ids["walk"], ids["bob"]]) if i == summary else m
                  for i, m in enumerate(numbered)]  # fmt: skip
        with raises(InvalidRequest):
            store.import_records(across, events, on_conflict="error", now=_LATER)
        assert self.export(store)[0] == []  # nothing was written
        # Links to memories held nowhere are left out; the rest imports.
        dangling = [
            dataclasses.replace(m, merged_into="gone") if m.id == ids["merged"]
            else dataclasses.replace(m, summarises=[*m.summarises, "gone"]) if m.id == ids["summary"] else m
            for m in numbered
        ]  # fmt: skip
        store.import_records(dangling, events, on_conflict="error", now=_LATER)
        by_id = {m.id: m for m in self.export(store)[0]}
        assert (by_id[ids["merged"]].state, by_id[ids["merged"]].merged_into) == ("merged", None)
        assert by_id[ids["summary"]].summarises == sorted([ids["walk"], ids["run"]])

    def test_import_of_merged_rows_skips_the_text_duplicate_check(self, store_factory: StoreFactory) -> None:
        store = self.opened(store_factory)
        ids = self.consolidated(store)
        rows, events = self.export(store, None, page=500)
        store.reset()
        store = self.opened(store_factory)
        # An active memory of the merged text is already in the store: the merged row still imports.
        twin = self.add(store, "i love sushi!")[0]
        outcome = store.import_records(self.importable(rows), events, on_conflict="error", now=_LATER)
        assert tuple(outcome) == (len(rows), 0, len(events))
        got = store.get(ids["merged"])
        assert got is not None and got.state == "merged"
        assert sorted(self.keyword_ids(store, "sushi", now=_LATER)) == sorted([twin, ids["kept"]])
        # ... and an active row of that text in the import conflicts with the active twin, not the merged row.
        text = "i love sushi!"
        fresh = dataclasses.replace(
            self.importable([r for r in rows if r.id == ids["plain"]])[0],
            id="fresh",
            memory=text,
            hash=content_hash(text),
        )
        with raises(MemoryConflict):
            store.import_records([fresh], [], on_conflict="error", now=_LATER)
