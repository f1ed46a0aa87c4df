"""mem0's documented usage, run on memlane with one change: the import.

Each example below is written the way mem0's README and documentation show their API
(quickstart, scoping, metadata and filters, history and updates, async, configs with an LLM),
with our own data. The test swaps ``from mem0 import`` for ``from memlane import``, checks that
this is the only difference, runs the code and then checks what it left behind. An example that
cannot run unchanged is in ``CANNOT_PASS`` with the reason, and docs/migrating-from-mem0.md
lists the same cases (a test keeps the two in step).

An example that uses an LLM reaches a scripted OpenAI-compatible server on 127.0.0.1 through
``OPENAI_BASE_URL`` (as an app pointing mem0 at a local model would); nothing leaves the machine.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from mem0_model import ScriptedModel
from server_harness import serving, settings_for

import memlane
from memlane import Memory
from memlane.server import KeyStore, create_app
from memlane.testing import HashEmbedder

DOCS = Path(__file__).resolve().parent.parent / "docs" / "migrating-from-mem0.md"


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ScriptedModel]:
    """The scripted model, reachable as OpenAI; memlane's home in a temp dir."""
    with ScriptedModel() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-scripted")
        monkeypatch.setenv("MEMLANE_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("MEMLANE_DATABASE_URL", raising=False)
        yield server


# The one line each kind of example changes.
IMPORTS = {
    "from mem0 import": "from memlane import",
    "from llama_index.memory.mem0 import Mem0Memory": (
        "from memlane.integrations.llama_index import MemlaneMemory as Mem0Memory"
    ),
}


def run_as_memlane(example: str) -> dict[str, Any]:
    """Run a mem0 example with its imports pointed at memlane; returns its globals."""
    source = textwrap.dedent(example)
    ported = source
    for old, new in IMPORTS.items():
        ported = ported.replace(old, new)
    changed = [(a, b) for a, b in zip(source.splitlines(), ported.splitlines(), strict=True) if a != b]
    assert changed and all(a.startswith(tuple(IMPORTS)) for a, _ in changed), "only the import may change"
    namespace: dict[str, Any] = {"__name__": "mem0_example"}
    exec(compile(ported, "<mem0 example>", "exec"), namespace)
    return namespace


QUICKSTART = """
from mem0 import Memory

m = Memory()

messages = [
    {"role": "user", "content": "Hi, I'm Priya. I play the cello and I'm training for a half marathon."},
    {"role": "assistant", "content": "Nice to meet you, Priya! Good luck with the training."},
]
m.add(messages, user_id="priya")

results = m.search("What instrument do I play?", filters={"user_id": "priya"})
for hit in results["results"]:
    print(hit["memory"], hit["score"])
"""


def test_quickstart(model: ScriptedModel) -> None:
    ns = run_as_memlane(QUICKSTART)
    top = ns["results"]["results"][0]
    assert "cello" in top["memory"] and 0 < top["score"] <= 1
    assert ns["m"].get_all(filters={"user_id": "priya"}, top_k=10)["results"]
    assert model.requests == []  # Memory() without an llm config stores the turns verbatim


CHAT_LOOP = """
from openai import OpenAI
from mem0 import Memory

openai_client = OpenAI()
memory = Memory()

def chat_with_memories(message, user_id="default_user"):
    relevant = memory.search(query=message, user_id=user_id, limit=3)
    memories_str = "\\n".join(f"- {entry['memory']}" for entry in relevant["results"])
    system_prompt = f"You are a helpful AI. Use these memories.\\nUser Memories:\\n{memories_str}"
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": message}]
    response = openai_client.chat.completions.create(model="gpt-4.1-nano", messages=messages)
    answer = response.choices[0].message.content
    messages.append({"role": "assistant", "content": answer})
    memory.add(messages, user_id=user_id)
    return answer

replies = [chat_with_memories(line, user_id="sam") for line in (
    "My sister Ana lives in Porto.",
    "I am allergic to shellfish.",
    "Where does my sister live?",
)]
"""


def test_readme_chat_loop_keeps_the_turns_not_the_system_prompt(model: ScriptedModel) -> None:
    ns = run_as_memlane(CHAT_LOOP)
    assert ns["replies"] == ["Noted!"] * 3
    stored = [r["memory"] for r in ns["memory"].get_all(user_id="sam")["results"]]
    assert "My sister Ana lives in Porto." in stored and "Noted!" in stored
    assert not any("User Memories" in text for text in stored)  # system prompts are not remembered
    hits = ns["memory"].search("Where does my sister live?", user_id="sam", limit=3)["results"]
    assert any("Porto" in h["memory"] for h in hits)


SCOPING_AND_LIFECYCLE = """
from mem0 import Memory

m = Memory()
talk = [
    {"role": "user", "content": "I'm looking for a film tonight, not a horror one."},
    {"role": "assistant", "content": "How about a documentary?"},
    {"role": "user", "content": "Documentaries about the ocean are my favourite."},
]
m.add(talk, user_id="lena", metadata={"category": "films"})
m.add(talk, user_id="lena", agent_id="film-bot", run_id="evening-1", metadata={"category": "films"})
m.add("Lena's cinema card number ends in 4821", user_id="lena", infer=False)

everything = m.get_all(filters={"user_id": "lena"}, top_k=50)
one = m.get(everything["results"][0]["id"])
session = m.get_all(filters={"user_id": "lena", "agent_id": "film-bot", "run_id": "evening-1"})
found = m.search("What films does she like?", filters={"user_id": "lena"}, top_k=3)

target = found["results"][0]["id"]
m.update(target, text="Lena loves ocean documentaries, especially about whales.")
changes = m.history(target)

m.delete(target)
m.delete_all(user_id="lena", run_id="evening-1")
left = m.get_all(filters={"user_id": "lena"})
m.reset()
"""


def test_scoping_get_search_update_history_delete_reset(model: ScriptedModel) -> None:
    ns = run_as_memlane(SCOPING_AND_LIFECYCLE)
    assert len(ns["everything"]["results"]) == 7  # 3 turns x 2 scopes + the card note
    assert ns["one"]["id"] == ns["everything"]["results"][0]["id"]
    assert len(ns["session"]["results"]) == 3
    assert len(ns["found"]["results"]) == 3
    assert [c["event"] for c in ns["changes"]] == ["ADD", "UPDATE"]
    assert ns["changes"][1]["new_memory"] == "Lena loves ocean documentaries, especially about whales."
    assert all(r["id"] != ns["target"] for r in ns["left"]["results"])
    assert len(ns["left"]["results"]) in (3, 4)  # the run's turns went; the card note and other scope stay
    assert ns["m"].get_all(user_id="lena")["results"] == []  # after reset


METADATA_FILTERS = """
from mem0 import Memory

m = Memory()
notes = [
    ("Book the dentist for March", {"category": "health", "priority": 3, "tags": ["todo"]}),
    ("Renew the passport before the Japan trip", {"category": "travel", "priority": 5, "tags": ["todo", "travel"]}),
    ("Try the new ramen place", {"category": "food", "priority": 1}),
    ("Pack the hiking boots for Japan", {"category": "travel", "priority": 2, "tags": ["packing"]}),
]
for text, meta in notes:
    m.add(text, user_id="kai", metadata=meta, infer=False)

travel = m.search("Japan", filters={"user_id": "kai", "category": "travel"})
urgent = m.search("things to do", filters={"user_id": "kai", "priority": {"gte": 3}})
either = m.get_all(filters={"user_id": "kai", "category": {"in": ["food", "health"]}})
tagged = m.get_all(filters={"user_id": "kai", "tags": "*"})
todo = m.get_all(filters={"user_id": "kai", "tags": {"contains": "todo"}})
not_travel = m.get_all(filters={"user_id": "kai", "NOT": [{"category": "travel"}]})
mixed = m.search("trip", filters={
    "user_id": "kai",
    "OR": [{"category": "food"}, {"AND": [{"category": "travel"}, {"priority": {"lt": 3}}]}],
})
"""


def test_metadata_filters(model: ScriptedModel) -> None:
    ns = run_as_memlane(METADATA_FILTERS)

    def texts(key: str) -> set[str]:
        return {r["memory"] for r in ns[key]["results"]}

    assert texts("travel") == {"Renew the passport before the Japan trip", "Pack the hiking boots for Japan"}
    assert texts("urgent") == {"Book the dentist for March", "Renew the passport before the Japan trip"}
    assert texts("either") == {"Book the dentist for March", "Try the new ramen place"}
    assert len(texts("tagged")) == 3 and texts("todo") == texts("urgent")
    assert texts("not_travel") == texts("either")
    assert texts("mixed") == {"Try the new ramen place", "Pack the hiking boots for Japan"}


WITH_AN_LLM = """
import os
from mem0 import Memory

os.environ["OPENAI_API_KEY"] = os.environ.get("OPENAI_API_KEY", "sk-...")
config = {
    "llm": {"provider": "openai", "config": {"model": "gpt-4.1-nano", "temperature": 0.1, "max_tokens": 2000}},
    "embedder": {"provider": "openai", "config": {"model": "text-embedding-3-small"}},
}
m = Memory.from_config(config)

first = m.add([
    {"role": "user", "content": "I moved to Utrecht in May."},
    {"role": "assistant", "content": "Welcome to Utrecht!"},
], user_id="noor", metadata={"source": "onboarding"})
again = m.add([{"role": "user", "content": "I moved to Utrecht in May."}], user_id="noor")
hits = m.search("Where do I live?", filters={"user_id": "noor"}, top_k=5, threshold=0.0)
"""


def test_config_with_an_llm_extracts_and_reconciles(model: ScriptedModel) -> None:
    ns = run_as_memlane(WITH_AN_LLM)
    assert [(r["memory"], r["event"]) for r in ns["first"]["results"]] == [("I moved to Utrecht in May.", "ADD")]
    assert [r["event"] for r in ns["again"]["results"]] == ["NONE"]  # already known
    assert ns["hits"]["results"][0]["memory"] == "I moved to Utrecht in May."
    assert ns["hits"]["results"][0]["metadata"] == {"source": "onboarding"}
    assert model.schemas() == ["facts", "facts"]  # one extraction per add; the repeat is known by its text
    assert any(r.path.endswith("/embeddings") for r in model.requests)


EXPIRY = """
from datetime import date, timedelta
from mem0 import Memory

m = Memory()
tomorrow = (date.today() + timedelta(days=1)).isoformat()
m.add("The office is closed this week for renovation", user_id="ops", expiration_date=tomorrow, infer=False)
m.add("Badges are collected at the front desk", user_id="ops", infer=False)
current = m.search("office", filters={"user_id": "ops"}, top_k=5)
including_expired = m.get_all(filters={"user_id": "ops"}, show_expired=True)
"""


def test_expiration_date(model: ScriptedModel) -> None:
    ns = run_as_memlane(EXPIRY)
    assert len(ns["current"]["results"]) == 2 and len(ns["including_expired"]["results"]) == 2
    closed = next(r for r in ns["current"]["results"] if "closed" in r["memory"])
    day_after = date.fromisoformat(ns["tomorrow"]) + timedelta(days=1)
    assert closed["expires_at"].startswith(day_after.isoformat())  # visible through its expiration date


ASYNC = """
import asyncio
from mem0 import AsyncMemory

async def main():
    memory = AsyncMemory()
    users = {"ada": "I write compilers in OCaml.", "bo": "I bake sourdough every Sunday."}
    adds = [memory.add([{"role": "user", "content": text}], user_id=user) for user, text in users.items()]
    await asyncio.gather(*adds)
    found = await memory.search("What do I cook?", filters={"user_id": "bo"}, top_k=2)
    listing = await memory.get_all(filters={"user_id": "ada"})
    first = listing["results"][0]["id"]
    await memory.update(first, text="I write compilers in OCaml and Rust.")
    changes = await memory.history(first)
    await memory.delete(first)
    return found, changes

found, changes = asyncio.run(main())
"""


def test_async_memory(model: ScriptedModel) -> None:
    ns = run_as_memlane(ASYNC)
    assert ns["found"]["results"][0]["memory"] == "I bake sourdough every Sunday."
    assert all("OCaml" not in r["memory"] for r in ns["found"]["results"])  # scopes stay apart
    assert [c["event"] for c in ns["changes"]] == ["ADD", "UPDATE"]


LLAMA_INDEX = """
from llama_index.core.llms import ChatMessage
from llama_index.memory.mem0 import Mem0Memory

context = {"user_id": "rosa"}
config = {
    "llm": {"provider": "openai", "config": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 1500}},
    "version": "v1.1",
}
memory = Mem0Memory.from_config(context=context, config=config, search_msg_limit=4)
memory.put(ChatMessage(role="user", content="I keep two beehives on my roof."))
memory.put(ChatMessage(role="assistant", content="That sounds like a lot of honey!"))
shown = memory.get(input="What animals do I look after?")
"""


def test_llama_index_from_config(model: ScriptedModel) -> None:
    ns = run_as_memlane(LLAMA_INDEX)
    text = "\n".join(str(m.content) for m in ns["shown"])
    assert "I keep two beehives on my roof." in text  # recalled from memory into the prompt
    assert ns["memory"].client.get_all(user_id="rosa")["results"][0]["memory"] == "I keep two beehives on my roof."
    assert "facts" in model.schemas()  # the config's LLM extracted it
    ns["memory"].close()


REST = """
import httpx

BASE_URL = "http://localhost:8888"
HEADERS = {"X-API-Key": "your-api-key"}

with httpx.Client(base_url=BASE_URL, headers=HEADERS) as http:
    added = http.post("/memories", json={
        "messages": [{"role": "user", "content": "I prefer aisle seats on long flights."}],
        "user_id": "omar",
        "metadata": {"topic": "travel"},
    }).json()
    memory_id = added["results"][0]["id"]
    listed = http.get("/memories", params={"user_id": "omar"}).json()
    found = http.post("/search", json={"query": "Which seat should I book?", "user_id": "omar"}).json()
    one = http.get(f"/memories/{memory_id}").json()
    http.put(f"/memories/{memory_id}", json={"text": "I prefer window seats now."})
    changes = http.get(f"/memories/{memory_id}/history").json()
    http.delete(f"/memories/{memory_id}")
    emptied = http.delete("/memories", params={"user_id": "omar"}).json()
    remaining = http.get("/memories", params={"user_id": "omar"}).json()
"""


def test_rest_script_written_for_mem0s_server(tmp_path: Path) -> None:
    # A script for mem0's self-hosted REST server changes its base URL and key, not its calls.
    settings = settings_for(tmp_path)
    key = KeyStore(settings.keys_path).create("app", admin=True)[1]
    with Memory(tmp_path / "m.db", embedder=HashEmbedder()) as memory, serving(create_app(memory, settings)) as url:
        script = textwrap.dedent(REST).replace("http://localhost:8888", url).replace("your-api-key", key)
        ns: dict[str, Any] = {}
        exec(compile(script, "<mem0 REST example>", "exec"), ns)
    assert [r["memory"] for r in ns["listed"]["results"]] == ["I prefer aisle seats on long flights."]
    assert ns["found"]["results"][0]["id"] == ns["memory_id"] == ns["one"]["id"]
    assert [c["event"] for c in ns["changes"]] == ["ADD", "UPDATE"]
    assert ns["changes"][1]["new_memory"] == "I prefer window seats now."
    assert ns["remaining"]["results"] == [] and "message" in ns["emptied"]


# Documented mem0 usage that cannot run unchanged, with the reason (docs/migrating-from-mem0.md).
CANNOT_PASS = {
    "qdrant/chroma/faiss vector_store config": (
        """
        from mem0 import Memory
        m = Memory.from_config({"vector_store": {"provider": "qdrant", "config": {"path": "/tmp/qdrant"}}})
        """,
        memlane.ConfigError,
        "import-mem0",
    ),
    "history_db_path": (
        """
        from mem0 import Memory
        m = Memory.from_config({"history_db_path": "/tmp/history.db"})
        """,
        memlane.ConfigError,
        "history_db_path",
    ),
    "reranker config": (
        """
        from mem0 import Memory
        m = Memory.from_config({"reranker": {"provider": "cohere", "config": {"model": "rerank-english-v3.0"}}})
        """,
        memlane.ConfigError,
        "reranker",
    ),
    "graph_store config": (
        """
        from mem0 import Memory
        m = Memory.from_config({"graph_store": {"provider": "neo4j", "config": {"url": "bolt://localhost:7687"}}})
        """,
        memlane.ConfigError,
        "graph memory",
    ),
    "get of an unknown id returns None": (
        """
        from mem0 import Memory
        m = Memory()
        assert m.get("00000000-0000-0000-0000-000000000000") is None
        """,
        memlane.MemoryNotFound,
        "no memory",
    ),
    "search across scopes with OR": (
        """
        from mem0 import Memory
        m = Memory()
        m.search("anything", filters={"OR": [{"user_id": "alice"}, {"agent_id": "support-bot"}]})
        """,
        memlane.ScopeRequired,
        "needs at least one of user_id",
    ),
    "categories": (
        """
        from mem0 import Memory
        m = Memory()
        m.search("food", filters={"user_id": "alice"}, categories=["food"])
        """,
        memlane.InvalidRequest,
        "categories",
    ),
}


@pytest.mark.parametrize("name", sorted(CANNOT_PASS))
def test_what_cannot_run_unchanged_fails_clearly(model: ScriptedModel, name: str) -> None:
    example, error, words = CANNOT_PASS[name]
    with pytest.raises(error, match=re.escape(words)):
        run_as_memlane(example)


def test_the_migration_guide_lists_every_case_that_cannot_pass() -> None:
    guide = DOCS.read_text(encoding="utf-8")
    missing = [name for name in CANNOT_PASS if f"**{name}**" not in guide]
    assert not missing, f"docs/migrating-from-mem0.md does not list {missing}"


def test_examples_really_are_mem0_shaped() -> None:
    # Guard against the suite drifting into memlane-only calls: each example imports from mem0.
    examples = (QUICKSTART, CHAT_LOOP, SCOPING_AND_LIFECYCLE, METADATA_FILTERS, WITH_AN_LLM, EXPIRY, ASYNC, LLAMA_INDEX)
    for example in examples:
        assert "mem0 import" in example and "memlane" not in example
