"""A scripted LLM implementing :class:`memlane.protocols.LLM`, for tests of anything that calls one."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memlane.protocols import Completion, PromptMessage

__all__ = ["FakeLLM", "FakeRequest", "Reply"]


@dataclass(frozen=True)
class FakeRequest:
    """One call the fake received, exactly as the caller made it."""

    messages: list[PromptMessage]
    schema: Mapping[str, Any] | None
    schema_name: str
    max_tokens: int
    temperature: float

    @property
    def system(self) -> str:
        """The system message's text ("" if none)."""
        return next((m["content"] for m in self.messages if m["role"] == "system"), "")

    @property
    def user(self) -> str:
        """The last user message's text."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


Reply = str | Mapping[str, Any] | list[Any] | Completion | BaseException | Callable[[FakeRequest], Any]


def count_tokens(text: str) -> int:
    """A stand-in token count: words and punctuation marks (close to BPE counts for English)."""
    return sum(1 + sum(not c.isalnum() for c in word) for word in text.split())


class FakeLLM:
    """Answers each call with the next scripted reply, and records every request.

    A reply is a string (sent as the answer text), a dict or list (sent as JSON), a
    :class:`Completion` (returned as is: set ``truncated``/``data``/usage yourself), an exception
    (raised, e.g. ``ProviderTimeout``), or a callable taking the :class:`FakeRequest` and
    returning any of these (to answer from the prompt or to cause side effects mid-call).
    When the script runs out, ``default`` answers (an error if there is none).
    Token usage is counted with :func:`count_tokens` unless the reply is a Completion.

    Example::

        llm = FakeLLM(FakeLLM.facts("The user lives in Lisbon."))
        m = Memory(llm=llm, embedder=HashEmbedder())
    """

    def __init__(self, *replies: Reply, default: Reply | None = None, model_id: str = "fake/scripted") -> None:
        self._replies: deque[Reply] = deque(replies)
        self.default = default
        self._model_id = model_id
        self.requests: list[FakeRequest] = []
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """``fake/scripted`` unless given."""
        return self._model_id

    def queue(self, *replies: Reply) -> None:
        """Append replies to the script."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """Replies not used yet."""
        return len(self._replies)

    def complete(
        self,
        messages: Sequence[PromptMessage],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str = "result",
        max_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> Completion:
        """Record the request and answer with the next reply."""
        request = FakeRequest([PromptMessage(role=m["role"], content=m["content"]) for m in messages], schema,
                              schema_name, max_tokens, temperature)  # fmt: skip
        with self._lock:
            self.requests.append(request)
            if self._replies:
                reply: Any = self._replies.popleft()
            elif self.default is not None:
                reply = self.default
            else:
                raise AssertionError(f"FakeLLM has no reply left for call {len(self.requests)}: queue more")
        while callable(reply) and not isinstance(reply, BaseException):
            reply = reply(request)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        prompt = sum(count_tokens(m["content"]) for m in request.messages)
        return Completion(text=text, prompt_tokens=prompt, completion_tokens=count_tokens(text))

    # -- reply builders ----------------------------------------------------------------------
    @staticmethod
    def facts(*texts: str, sources: Sequence[int] = (1,)) -> dict[str, Any]:
        """An extraction answer: ``{"facts": [{"text": t, "from": sources}, ...]}``."""
        return {"facts": [{"text": t, "from": list(sources)} for t in texts]}

    @staticmethod
    def decisions(*actions: tuple[str, str] | tuple[str, str, str] | tuple[str, str, str, str]) -> dict[str, Any]:
        """A reconciliation answer from ``(fact, action[, target[, text]])`` tuples.

        Example: ``FakeLLM.decisions(("f1", "UPDATE", "m1", "The user moved to Amsterdam."))``.
        """
        out = []
        for entry in actions:
            fact, action, target, text = (*entry, "", "")[:4]
            out.append({"fact": fact, "action": action, "target": target, "text": text})
        return {"actions": out}
