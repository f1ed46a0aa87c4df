"""Test helpers shipped with memlane, for its own suite and for plugin authors.

- :class:`HashEmbedder`: a deterministic, dependency-free embedder (hashed bag of word stems and
  character trigrams): texts sharing words are close, so search behaves sensibly in tests.
- :class:`FrozenClock`: a settable clock to inject as ``Memory(clock=...)``.
- :class:`FakeLLM`: a scripted LLM implementing :class:`memlane.protocols.LLM`, recording every
  request; replies are strings, dicts (sent as JSON), exceptions, or callables.
- :class:`StoreContract`: the operations every store backend must support, as a test class to
  subclass with a ``store_factory`` fixture (see ``tests/test_store_contract.py``).
"""

from memlane.testing._doubles import FrozenClock, HashEmbedder
from memlane.testing._fake_llm import FakeLLM, FakeRequest, count_tokens
from memlane.testing._store_contract import StoreContract, StoreFactory, StoreUnderTest

__all__ = [
    "FakeLLM",
    "FakeRequest",
    "FrozenClock",
    "HashEmbedder",
    "StoreContract",
    "StoreFactory",
    "StoreUnderTest",
    "count_tokens",
]
