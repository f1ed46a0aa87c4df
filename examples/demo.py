"""A tour of memlane's embedded engine: `make demo`.

Uses the zero-config default (one SQLite file under $MEMLANE_HOME, the local MiniLM embedder).
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from memlane import Memory, ScopeRequired


def show(title: str, value: object) -> None:
    print(f"\n== {title}")
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def main() -> None:
    m = Memory()
    print(f"memlane store: {m.store.path} (MEMLANE_HOME={os.environ.get('MEMLANE_HOME', '~/.memlane')})")
    m.delete_all(user_id="alice", purge=True)  # start the tour from a clean scope

    m.add("I'm vegetarian and I live in Berlin", user_id="alice")
    m.add(
        [
            {"role": "user", "content": "Any idea for dinner? I have chickpeas and spinach."},
            {"role": "assistant", "content": "A chickpea and spinach curry with rice would work well."},
        ],
        user_id="alice",
        agent_id="chef",
        run_id="s1",
        metadata={"topic": "food"},
        timestamp=datetime(2026, 5, 4, 9, 30),
    )
    m.add("My sister Maya's birthday is on 12 June", user_id="alice", metadata={"topic": "family"})
    m.add("Order ZX-4471 is a new bike helmet", user_id="alice", metadata={"topic": "orders"})
    dup = m.add("I'm vegetarian and I live in Berlin", user_id="alice")
    show("adding an exact duplicate again (event NONE, same id)", dup)

    hits = m.search("what should I cook tonight?", user_id="alice", limit=3, explain=True)
    show(
        "search: 'what should I cook tonight?'",
        [{"score": h["score"], "memory": h["memory"], "explain": h.get("explain")} for h in hits["results"]],
    )
    rare = m.search("where is ZX-4471?", user_id="alice", limit=1)["results"][0]
    show("keyword hit on a rare token", {"score": rare["score"], "memory": rare["memory"]})

    food = m.get_all(user_id="alice", filters={"topic": {"in": ["food", "family"]}})
    show("get_all with a metadata filter", [r["memory"] for r in food["results"]])

    home = m.search("where does alice live", user_id="alice", limit=1)["results"][0]
    m.update(home["id"], "I'm vegetarian and I live in Amsterdam")
    show("history after an update", m.history(home["id"]))

    show("another user sees nothing of alice's", m.search("where do I live?", user_id="bob")["results"])
    try:
        m.search("anything")
    except ScopeRequired as exc:
        show("a search without a scope is an error", str(exc))

    show("right to be forgotten", m.delete_all(user_id="alice", purge=True))
    show("history text after the purge", m.history(home["id"]))
    m.close()


if __name__ == "__main__":
    main()
