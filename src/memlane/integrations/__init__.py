"""Adapters that plug memlane into agent frameworks (optional extras).

Each adapter is its own module and imports its framework only when imported itself, so
``import memlane`` never pulls a framework in:

- :mod:`memlane.integrations.llama_index`: ``MemlaneMemory`` and ``MemlaneMemoryBlock`` for
  LlamaIndex (``pip install 'memlane[llama-index]'``).

Adapters use only what ``memlane/__init__.py`` exports.
"""
