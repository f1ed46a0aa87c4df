"""LlamaIndex chat messages in and out of memlane: what is kept, what forms a query, where memories go.

Private to :mod:`memlane.integrations.llama_index`, which checks that llama-index-core is installed
before importing this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock

from memlane import InvalidRequest, Memory, MemoryClient, MemoryConfig

__all__ = [
    "conversation_texts",
    "embedded",
    "new_messages",
    "remote",
    "to_memlane_messages",
    "with_memory_block",
]

_SPEAKERS = {"user": "user", "assistant": "assistant", "chatbot": "assistant", "model": "assistant"}


def _text(message: ChatMessage) -> str:
    return "\n".join(b.text for b in message.blocks if isinstance(b, TextBlock)).strip()


def _speaker(message: ChatMessage) -> str | None:
    role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    return _SPEAKERS.get(role)


def _calls_tools(message: ChatMessage) -> bool:
    return bool(message.additional_kwargs.get("tool_calls")) or any(
        isinstance(b, ToolCallBlock) for b in message.blocks
    )


def to_memlane_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """The messages memlane keeps, as ``{"role", "content"}`` dicts.

    User and assistant messages with text (``chatbot``/``model`` count as assistant); system and
    tool messages and assistant messages that call tools are left out.

    Args:
        messages: LlamaIndex chat messages.
    Returns:
        The dicts, in order.
    """
    out = []
    for message in messages:
        speaker, text = _speaker(message), _text(message)
        if speaker is not None and text and not _calls_tools(message):
            out.append({"role": speaker, "content": text})
    return out


def conversation_texts(messages: Sequence[ChatMessage]) -> list[str]:
    """The texts of the user and assistant messages: what a search query is made of."""
    return [text for m in messages if _speaker(m) is not None and (text := _text(m))]


def with_memory_block(history: list[ChatMessage], block: str) -> list[ChatMessage]:
    """``history`` with ``block`` as its system message: merged into a leading one, else prepended.

    The messages of ``history`` are not modified (a merged system message is a new object).

    Args:
        history: the chat history.
        block: the formatted memories ("" leaves the history as it is).
    Returns:
        The new list of messages.
    """
    if not block:
        return list(history)
    if history and history[0].role == MessageRole.SYSTEM:
        first = history[0]
        merged = ChatMessage(
            role=MessageRole.SYSTEM,
            blocks=[*first.blocks, TextBlock(text="\n" + block)],
            additional_kwargs=dict(first.additional_kwargs),
        )
        return [merged, *history[1:]]
    return [ChatMessage(role=MessageRole.SYSTEM, content=block), *history]


def new_messages(old: Sequence[ChatMessage], new: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages of ``new`` after the part it shares with ``old`` (compared by role and text)."""
    shared = 0
    for before, after in zip(old, new, strict=False):
        if (before.role, _text(before)) != (after.role, _text(after)):
            break
        shared += 1
    return list(new[shared:])


def embedded(config: Mapping[str, Any] | MemoryConfig | None, options: Mapping[str, Any]) -> Memory:
    """An embedded store: ``Memory.from_config(config or {}, **options)``."""
    return Memory.from_config(config if config is not None else {}, **options)


def remote(
    url: str | None, api_key: str | None, host: str | None, client: MemoryClient | None, options: Mapping[str, Any]
) -> tuple[MemoryClient, bool]:
    """The client to use and whether the adapter created it (and so closes it)."""
    if client is None:
        return MemoryClient(url, api_key=api_key, host=host, **options), True
    if url is not None or api_key is not None or host is not None or options:
        raise InvalidRequest("give client=, or url / api_key / client options to build one, not both")
    return client, False
