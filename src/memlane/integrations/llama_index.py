"""LlamaIndex memory backed by memlane: :class:`MemlaneMemory` and :class:`MemlaneMemoryBlock`.

Both are scoped by a ``context`` of ``user_id`` / ``agent_id`` / ``run_id`` and talk to an embedded
``memlane.Memory`` (``from_config``) or to a memlane server (``from_client``):

- :class:`MemlaneMemory` is a ``llama_index.core.memory.BaseMemory``: give it to a chat engine or
  an agent (``SimpleChatEngine.from_defaults(memory=...)``, ``FunctionAgent.run(..., memory=...)``).
  The conversation itself lives in a short-term LlamaIndex ``Memory``; each exchange is also
  written to memlane, and every ``get`` puts the memories relevant to the recent messages in
  front of the history as one system message of quoted data.
- :class:`MemlaneMemoryBlock` is a ``BaseMemoryBlock`` for LlamaIndex's own ``Memory``
  (``Memory.from_defaults(memory_blocks=[...])``): the same retrieval as a named block, fed with
  the messages ``Memory`` flushes out of its short-term queue.

What is written: user and assistant messages with text. System and tool messages, and assistant
messages that only call tools, are not. ``MemlaneMemory`` holds a user message until the reply
arrives and writes the exchange in one ``add`` (one extraction per turn when an LLM is
configured; with ``infer=False`` or no LLM, each message is stored verbatim).

Needs llama-index-core: ``pip install 'memlane[llama-index]'``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny, field_serializer
    from llama_index.core.memory import BaseMemory
    from llama_index.core.memory import Memory as ChatMemory
except ImportError as exc:  # exercised in a subprocess by tests/test_llama_index.py
    raise ImportError(
        "memlane.integrations.llama_index needs llama-index-core 0.14: pip install 'memlane[llama-index]'"
    ) from exc

from memlane import (
    AsyncMemory,
    InvalidRequest,
    Memory,
    MemoryClient,
    MemoryConfig,
    ProviderError,
    RateLimited,
    ServiceUnavailable,
    StoreError,
)
from memlane.integrations._common import (
    Backend,
    as_backend,
    check_context,
    check_settings,
    format_memories,
    recall,
    remember,
    search_query,
)
from memlane.integrations._llama_index_block import MemlaneMemoryBlock
from memlane.integrations._llama_index_messages import (
    conversation_texts,
    embedded,
    new_messages,
    remote,
    to_memlane_messages,
    with_memory_block,
)

__all__ = ["MemlaneMemory", "MemlaneMemoryBlock", "to_memlane_messages", "with_memory_block"]

# Failures worth retrying with the next write; anything else (a malformed message) would fail again.
_TRANSIENT = (ProviderError, ServiceUnavailable, RateLimited, StoreError)


class MemlaneMemory(BaseMemory):
    """Chat memory for LlamaIndex chat engines and agents, with memlane as its long-term memory.

    Build it with :meth:`from_config` (embedded store) or :meth:`from_client` (a memlane server),
    or pass a ``Memory`` / ``MemoryClient`` you already have.

    Args:
        client: a ``memlane.Memory``, ``MemoryClient`` or ``AsyncMemory``.
        context: the scope, ``{"user_id"?, "agent_id"?, "run_id"?}`` (at least one).
        primary_memory: the short-term chat history (default: a fresh LlamaIndex ``Memory``).
        search_msg_limit: how many recent chat messages make up the search query.
        top_k: at most this many memories per ``get``.
        threshold: leave out memories scoring below it (0 to 1; None keeps the ``top_k`` best).
        infer: extract facts with memlane's LLM (None: when one is configured; False: store the
            messages verbatim; True: require an LLM).
    Raises:
        ScopeRequired: the context has no id.
        InvalidRequest: a malformed context or setting.
        ConfigError: ``client`` is not a memlane Memory or MemoryClient.
    """

    primary_memory: SerializeAsAny[BaseMemory] = Field(description="The short-term chat history.")
    context: dict[str, str] = Field(description="The memlane scope: user_id, agent_id and/or run_id.")
    search_msg_limit: int = Field(default=5, description="Recent chat messages that form the search query.")
    top_k: int = Field(default=5, description="At most this many memories per get.")
    threshold: float | None = Field(default=None, description="Minimum memory score (0 to 1).")
    infer: bool | None = Field(default=None, description="Extract facts (None: when memlane has an LLM).")

    _backend: Backend = PrivateAttr()
    _owns_backend: bool = PrivateAttr(default=False)
    _pending: list[dict[str, str]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        client: Memory | MemoryClient | AsyncMemory,
        context: Mapping[str, str | None],
        *,
        primary_memory: BaseMemory | None = None,
        search_msg_limit: int = 5,
        top_k: int = 5,
        threshold: float | None = None,
        infer: bool | None = None,
    ) -> None:
        scope = check_context(context)
        check_settings(search_msg_limit, top_k, threshold, infer)
        backend = as_backend(client)
        if primary_memory is not None and not isinstance(primary_memory, BaseMemory):
            raise InvalidRequest(f"primary_memory must be a LlamaIndex BaseMemory, got {type(primary_memory).__name__}")
        super().__init__(
            primary_memory=primary_memory if primary_memory is not None else ChatMemory.from_defaults(),
            context=scope,
            search_msg_limit=search_msg_limit,
            top_k=top_k,
            threshold=threshold,
            infer=infer,
        )
        self._backend = backend

    @field_serializer("primary_memory")
    def _dump_primary(self, value: BaseMemory) -> dict[str, Any]:
        # LlamaIndex's Memory holds an Enum that its own to_json cannot encode: dump it JSON-ready.
        return {**value.model_dump(mode="json"), "class_name": value.class_name()}

    @classmethod
    def class_name(cls) -> str:
        """``"MemlaneMemory"`` (LlamaIndex's serialisation key)."""
        return "MemlaneMemory"

    @classmethod
    def from_defaults(cls, **kwargs: Any) -> MemlaneMemory:
        """``MemlaneMemory(client=..., ...)`` when ``client`` is given, else :meth:`from_config`.

        Args:
            **kwargs: the arguments of the constructor or of :meth:`from_config`.
        Returns:
            The memory.
        Raises:
            ScopeRequired, InvalidRequest, ConfigError: as the constructor.
        """
        if "client" in kwargs:
            return cls(**kwargs)
        return cls.from_config(**kwargs)

    @classmethod
    def from_config(
        cls,
        context: Mapping[str, str | None],
        config: Mapping[str, Any] | MemoryConfig | None = None,
        *,
        primary_memory: BaseMemory | None = None,
        search_msg_limit: int = 5,
        top_k: int = 5,
        threshold: float | None = None,
        infer: bool | None = None,
        **memory_options: Any,
    ) -> MemlaneMemory:
        """Over an embedded store: ``memlane.Memory.from_config(config, **memory_options)``.

        Args:
            context: the scope (see the class).
            config: a memlane config dict (mem0-shaped) or ``MemoryConfig``; None: the defaults
                (``$MEMLANE_HOME/memlane.db``, the local embedder, no LLM).
            primary_memory, search_msg_limit, top_k, threshold, infer: see the class.
            **memory_options: ``Memory`` constructor arguments (``path``, ``embedder``, ``llm``, ...).
        Returns:
            The memory; :meth:`close` releases its store.
        Raises:
            ConfigError: an invalid config.
            ScopeRequired, InvalidRequest: as the constructor.
        """
        check_context(context)  # before building anything
        check_settings(search_msg_limit, top_k, threshold, infer)
        memory = embedded(config, memory_options)
        out = cls(memory, context, primary_memory=primary_memory, search_msg_limit=search_msg_limit, top_k=top_k,
                  threshold=threshold, infer=infer)  # fmt: skip
        out._owns_backend = True
        return out

    @classmethod
    def from_client(
        cls,
        context: Mapping[str, str | None],
        url: str | None = None,
        *,
        api_key: str | None = None,
        host: str | None = None,
        client: MemoryClient | None = None,
        primary_memory: BaseMemory | None = None,
        search_msg_limit: int = 5,
        top_k: int = 5,
        threshold: float | None = None,
        infer: bool | None = None,
        **client_options: Any,
    ) -> MemlaneMemory:
        """Over a memlane server (``memlane serve``), through ``memlane.MemoryClient``.

        Args:
            context: the scope (see the class).
            url: the server (default ``$MEMLANE_URL``, else ``http://127.0.0.1:8420``); ``host``
                is accepted as mem0's name for it.
            api_key: the key (default ``$MEMLANE_API_KEY``).
            client: an existing ``MemoryClient`` instead of url / api_key (it is not closed by :meth:`close`).
            primary_memory, search_msg_limit, top_k, threshold, infer: see the class.
            **client_options: ``MemoryClient`` arguments (``timeout``, ``retries``, ``headers``, ``transport``).
        Returns:
            The memory.
        Raises:
            InvalidRequest: both ``client`` and connection arguments, a malformed url, context or setting.
            ScopeRequired: the context has no id.
        """
        check_context(context)  # before opening a connection pool
        check_settings(search_msg_limit, top_k, threshold, infer)
        backend, owned = remote(url, api_key, host, client, client_options)
        out = cls(backend, context, primary_memory=primary_memory, search_msg_limit=search_msg_limit, top_k=top_k,
                  threshold=threshold, infer=infer)  # fmt: skip
        out._owns_backend = owned
        return out

    @property
    def client(self) -> Backend:
        """The memlane store behind this memory: use it for ``get_all``, ``delete_all``, ``history``."""
        return self._backend

    # -- reads --------------------------------------------------------------------------
    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """The chat history, led by a system message with the memories relevant to the recent messages.

        Args:
            input: the message about to be answered, when it is not in the history yet.
            **kwargs: passed to the short-term memory's ``get`` (e.g. ``initial_token_count``).
        Returns:
            The messages; a leading system message of the history gets the memories appended.
            Without relevant memories, the history as it is.
        Raises:
            MemlaneError: the search failed.
        """
        history = self.primary_memory.get(input=input, **kwargs)
        return self._with_memories(history, input)

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """Async :meth:`get`."""
        history = await self.primary_memory.aget(input=input, **kwargs)
        return await asyncio.to_thread(self._with_memories, history, input)

    def get_all(self) -> list[ChatMessage]:
        """The whole short-term chat history, without memories.

        Returns:
            The messages.
        """
        return self.primary_memory.get_all()

    async def aget_all(self) -> list[ChatMessage]:
        """Async :meth:`get_all`."""
        return await self.primary_memory.aget_all()

    def _with_memories(self, history: list[ChatMessage], input: str | None) -> list[ChatMessage]:
        texts = conversation_texts(history)
        if input and input.strip() and (not texts or texts[-1] != input.strip()):
            texts.append(input)
        query = search_query(texts, self.search_msg_limit)
        if query is None:
            return history
        items = recall(self._backend, self.context, query, top_k=self.top_k, threshold=self.threshold, visible=texts)
        return with_memory_block(history, format_memories(items, self.context))

    # -- writes -------------------------------------------------------------------------
    def put(self, message: ChatMessage) -> None:
        """Add a message to the chat history and, with its exchange, to memlane.

        A user message is written together with the reply that follows it (one ``add`` per
        exchange); an assistant message with text completes the exchange.

        Args:
            message: the message.
        Raises:
            MemlaneError: the write to memlane failed (the chat history has the message; a
                transient failure is retried with the next exchange).
        """
        self.primary_memory.put(message)
        self._absorb([message])

    async def aput(self, message: ChatMessage) -> None:
        """Async :meth:`put`."""
        await self.primary_memory.aput(message)
        await asyncio.to_thread(self._absorb, [message])

    def put_messages(self, messages: list[ChatMessage]) -> None:
        """:meth:`put` for several messages, written to memlane in one ``add``.

        Args:
            messages: the messages, oldest first.
        Raises:
            MemlaneError: as :meth:`put`.
        """
        self.primary_memory.put_messages(messages)
        self._absorb(messages)

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        """Async :meth:`put_messages`."""
        await self.primary_memory.aput_messages(messages)
        await asyncio.to_thread(self._absorb, messages)

    def set(self, messages: list[ChatMessage]) -> None:
        """Replace the chat history; the messages it did not have yet also go to memlane.

        Args:
            messages: the new history.
        Raises:
            MemlaneError: as :meth:`put`.
        """
        new = new_messages(self.primary_memory.get_all(), messages)
        self.primary_memory.set(messages)
        self._absorb(new)

    async def aset(self, messages: list[ChatMessage]) -> None:
        """Async :meth:`set`."""
        new = new_messages(await self.primary_memory.aget_all(), messages)
        await self.primary_memory.aset(messages)
        await asyncio.to_thread(self._absorb, new)

    def reset(self) -> None:
        """Start a new conversation: write what is waiting, then clear the chat history.

        Long-term memories stay; forget them with ``memory.client.delete_all(**memory.context)``.

        Raises:
            MemlaneError: writing the waiting messages failed (the history is not cleared).
        """
        self.flush()
        self.primary_memory.reset()

    async def areset(self) -> None:
        """Async :meth:`reset`."""
        await self.aflush()
        await self.primary_memory.areset()

    def flush(self) -> None:
        """Write the messages still waiting for a reply to memlane now.

        Raises:
            MemlaneError: the write failed.
        """
        with self._lock:
            self._write_pending()

    async def aflush(self) -> None:
        """Async :meth:`flush`."""
        await asyncio.to_thread(self.flush)

    def close(self) -> None:
        """Flush, then close the store or client if this memory created it (``from_config``/``from_client``).

        Raises:
            MemlaneError: the flush failed (the store is closed all the same).
        """
        try:
            self.flush()
        finally:
            if self._owns_backend:
                self._backend.close()

    def _absorb(self, messages: Sequence[ChatMessage]) -> None:
        incoming = to_memlane_messages(messages)
        with self._lock:
            self._pending.extend(incoming)
            if any(m["role"] == "assistant" for m in incoming):  # a reply completes the exchange
                self._write_pending()

    def _write_pending(self) -> None:
        batch, self._pending = self._pending, []
        try:
            remember(self._backend, self.context, batch, infer=self.infer)
        except _TRANSIENT:
            self._pending = batch + self._pending
            raise
