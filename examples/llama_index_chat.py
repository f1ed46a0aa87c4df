"""A LlamaIndex chat engine with memlane memory: ``python examples/llama_index_chat.py [--demo] [--user-id alice]``.

``SimpleChatEngine`` + ``MemlaneMemory``: the engine keeps the conversation, memlane keeps what
matters across conversations and hands the relevant memories to the model as one system message.

The model: OpenAI through llama-index-llms-openai when it is installed and OPENAI_API_KEY is set
(``OPENAI_MODEL`` picks the model, default gpt-4.1-mini); otherwise an offline echo model that
cannot answer but shows the memories it was given, so you can see what reached it.

``--demo`` runs a scripted two-session conversation; without it, lines come from stdin (type them
or pipe a file), ``/new`` starts a new conversation and ``/quit`` ends. memlane stores under
$MEMLANE_HOME (default ~/.memlane); ``--config`` takes a memlane JSON config (with an ``llm`` in it,
memlane extracts facts; without, it stores messages verbatim).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse, LLMMetadata
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import LLM, CustomLLM

from memlane import MemoryConfig
from memlane.integrations.llama_index import MemlaneMemory

DEMO_FIRST = ["I'm vegetarian and allergic to peanuts.", "My sister Maya is visiting from Porto next week."]
DEMO_SECOND = "My sister visits soon: what can I cook, given my diet and allergies?"


class EchoLLM(CustomLLM):
    """An offline stand-in for a model: it shows the memories that reached it, and cannot answer.

    It prints them rather than quoting them in its reply: in verbatim mode replies are stored too,
    and a reply full of quoted memories would come back as a memory itself.
    """

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="echo")

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        system = "\n".join(m.content or "" for m in messages if m.role == "system")
        memories = [line[2:] for line in system.splitlines() if line.startswith("- ")]
        print(f"  (the model received {len(memories)} memories in its system message)")
        for memory in memories:
            print(f"    - {memory}")
        reply = "[echo model: no real model here to answer]"
        return ChatResponse(message=ChatMessage(role="assistant", content=reply))

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=f"[echo model] {prompt}")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Iterator[CompletionResponse]:
        yield self.complete(prompt)


def pick_llm() -> LLM:
    """OpenAI when possible, else the echo model; says which."""
    if os.environ.get("OPENAI_API_KEY"):
        try:
            from llama_index.llms.openai import OpenAI  # type: ignore[import-not-found]
        except ImportError:
            print("notice: OPENAI_API_KEY is set but llama-index-llms-openai is not installed; using the echo model")
        else:
            model = os.environ.get("OPENAI_MODEL", "gpt-4.1-mini")
            print(f"model: OpenAI {model}")
            llm: LLM = OpenAI(model=model)
            return llm
    print("notice: no real model available (needs llama-index-llms-openai and OPENAI_API_KEY): using an offline")
    print("        echo model that shows the memories it was given.")
    return EchoLLM()


def session(llm: LLM, user_id: str, config: MemoryConfig) -> tuple[SimpleChatEngine, MemlaneMemory]:
    """A new conversation: a fresh chat history, the same long-term memories."""
    # threshold: leave out memories that barely relate to the conversation (scores are 0 to 1).
    memory = MemlaneMemory.from_config({"user_id": user_id}, config, threshold=0.1)
    return SimpleChatEngine.from_defaults(llm=llm, memory=memory), memory


def turn(engine: SimpleChatEngine, text: str) -> None:
    print(f"you> {text}")
    reply = engine.chat(text).response
    print(f"assistant> {reply}")


def demo(llm: LLM, user_id: str, config: MemoryConfig) -> None:
    print(f"\n== conversation 1 ({user_id})")
    engine, memory = session(llm, user_id, config)
    for text in DEMO_FIRST:
        turn(engine, text)
    memory.close()
    print(f"\n== conversation 2 ({user_id}): a new chat, the memories carry over")
    engine, memory = session(llm, user_id, config)
    turn(engine, DEMO_SECOND)
    memory.close()
    print(f"\n== another user ({user_id}-guest) sees none of {user_id}'s memories")
    engine, memory = session(llm, f"{user_id}-guest", config)
    turn(engine, DEMO_SECOND)
    memory.close()


def converse(llm: LLM, user_id: str, config: MemoryConfig) -> None:
    engine, memory = session(llm, user_id, config)
    try:
        for raw in sys.stdin:
            text = raw.strip()
            if text in ("/quit", "/exit"):
                break
            if text == "/new":
                memory.reset()
                print("(new conversation: the chat history is cleared; long-term memories stay)")
            elif text:
                turn(engine, text)
    finally:
        memory.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--demo", action="store_true", help="run a scripted two-session conversation")
    parser.add_argument("--user-id", default=os.environ.get("USER") or "me", help="whose memories (default $USER)")
    parser.add_argument("--config", default=os.environ.get("MEMLANE_CONFIG"), help="memlane JSON config file")
    args = parser.parse_args(argv)
    config = MemoryConfig.from_file(args.config) if args.config else MemoryConfig.from_dict({})
    print(f"memlane store: {config.database_path()}")
    print("memlane mode: " + ("facts extracted by the configured LLM" if config.llm else "messages stored verbatim"))
    llm = pick_llm()
    if args.demo:
        demo(llm, args.user_id, config)
    else:
        converse(llm, args.user_id, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
