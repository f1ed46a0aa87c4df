"""``MemlaneMemoryBlock``: memlane as a block of LlamaIndex's ``Memory``.

Private to :mod:`memlane.integrations.llama_index` (import it from there), which checks that
llama-index-core is installed before importing this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.memory import BaseMemoryBlock

from memlane import AsyncMemory, Memory, MemoryClient, MemoryConfig
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
from memlane.integrations._llama_index_messages import conversation_texts, embedded, remote, to_memlane_messages

__all__ = ["MemlaneMemoryBlock"]


class MemlaneMemoryBlock(BaseMemoryBlock[str]):
    """memlane as a memory block of LlamaIndex's ``Memory``.

    ``aget`` searches memlane with the newest messages and returns the formatted memories (or ""),
    which ``Memory`` renders into its system message; ``aput`` writes the messages ``Memory``
    flushes out of its short-term queue (when the chat outgrows ``token_limit`` times
    ``chat_history_token_ratio``).

    Args:
        client: a ``memlane.Memory``, ``MemoryClient`` or ``AsyncMemory``.
        context: the scope, ``{"user_id"?, "agent_id"?, "run_id"?}`` (at least one).
        name: the block's name (its tag in ``Memory``'s template).
        description, priority, accept_short_term_memory: as ``BaseMemoryBlock``.
        search_msg_limit, top_k, threshold, infer: as :class:`MemlaneMemory`.
    Raises:
        ScopeRequired, InvalidRequest, ConfigError: as :class:`MemlaneMemory`.
    """

    name: str = Field(default="long_term_memory", description="The block's name.")
    context: dict[str, str] = Field(description="The memlane scope: user_id, agent_id and/or run_id.")
    search_msg_limit: int = Field(default=5, description="Recent chat messages that form the search query.")
    top_k: int = Field(default=5, description="At most this many memories per get.")
    threshold: float | None = Field(default=None, description="Minimum memory score (0 to 1).")
    infer: bool | None = Field(default=None, description="Extract facts (None: when memlane has an LLM).")

    _backend: Backend = PrivateAttr()
    _owns_backend: bool = PrivateAttr(default=False)

    def __init__(
        self,
        client: Memory | MemoryClient | AsyncMemory,
        context: Mapping[str, str | None],
        *,
        name: str = "long_term_memory",
        description: str | None = None,
        priority: int = 0,
        accept_short_term_memory: bool = True,
        search_msg_limit: int = 5,
        top_k: int = 5,
        threshold: float | None = None,
        infer: bool | None = None,
    ) -> None:
        scope = check_context(context)
        check_settings(search_msg_limit, top_k, threshold, infer)
        backend = as_backend(client)
        super().__init__(
            name=name,
            description=description,
            priority=priority,
            accept_short_term_memory=accept_short_term_memory,
            context=scope,
            search_msg_limit=search_msg_limit,
            top_k=top_k,
            threshold=threshold,
            infer=infer,
        )
        self._backend = backend

    @classmethod
    def from_config(
        cls,
        context: Mapping[str, str | None],
        config: Mapping[str, Any] | MemoryConfig | None = None,
        *,
        name: str = "long_term_memory",
        priority: int = 0,
        search_msg_limit: int = 5,
        top_k: int = 5,
        threshold: float | None = None,
        infer: bool | None = None,
        **memory_options: Any,
    ) -> MemlaneMemoryBlock:
        """Over an embedded store, as :meth:`MemlaneMemory.from_config`.

        Returns:
            The block; :meth:`close` releases its store.
        Raises:
            ConfigError, ScopeRequired, InvalidRequest: as :meth:`MemlaneMemory.from_config`.
        """
        check_context(context)  # before building anything
        check_settings(search_msg_limit, top_k, threshold, infer)
        memory = embedded(config, memory_options)
        out = cls(memory, context, name=name, priority=priority, search_msg_limit=search_msg_limit, top_k=top_k,
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
        name: str = "long_term_memory",
        priority: int = 0,
        search_msg_limit: int = 5,
        top_k: int = 5,
        threshold: float | None = None,
        infer: bool | None = None,
        **client_options: Any,
    ) -> MemlaneMemoryBlock:
        """Over a memlane server, as :meth:`MemlaneMemory.from_client`.

        Returns:
            The block.
        Raises:
            InvalidRequest, ScopeRequired: as :meth:`MemlaneMemory.from_client`.
        """
        check_context(context)  # before opening a connection pool
        check_settings(search_msg_limit, top_k, threshold, infer)
        backend, owned = remote(url, api_key, host, client, client_options)
        out = cls(backend, context, name=name, priority=priority, search_msg_limit=search_msg_limit, top_k=top_k,
                  threshold=threshold, infer=infer)  # fmt: skip
        out._owns_backend = owned
        return out

    @property
    def client(self) -> Backend:
        """The memlane store behind this block."""
        return self._backend

    def close(self) -> None:
        """Close the store or client if this block created it (``from_config``/``from_client``)."""
        if self._owns_backend:
            self._backend.close()

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        texts = conversation_texts(messages or [])
        query = search_query(texts, self.search_msg_limit)
        if query is None:
            return ""
        items = await asyncio.to_thread(
            recall, self._backend, self.context, query, top_k=self.top_k, threshold=self.threshold, visible=texts
        )
        return format_memories(items, self.context)

    async def _aput(self, messages: list[ChatMessage]) -> None:
        payload = to_memlane_messages(messages)
        if payload:
            await asyncio.to_thread(remember, self._backend, self.context, payload, infer=self.infer)
