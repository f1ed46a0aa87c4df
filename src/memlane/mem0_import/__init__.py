"""Import a mem0 deployment into memlane, reading the stores mem0 wrote (mem0 itself is not needed).

>>> from memlane import Memory
>>> from memlane.mem0_import import Mem0Source, import_mem0
>>> source = Mem0Source.from_config({"vector_store": {"provider": "qdrant",
...     "config": {"path": "/tmp/qdrant", "collection_name": "mem0"}},
...     "history_db_path": "~/.mem0/history.db"})                        # doctest: +SKIP
>>> with Memory() as memory:                                             # doctest: +SKIP
...     report = import_mem0(memory, source, dry_run=True)
...     report = import_mem0(memory, source)

Readers (``_readers``): Qdrant (local or server), pgvector, Chroma, FAISS; the history database
(``_history``). The mapping to memlane's portable records is pure (``_mapping``); the driver
(``_run``) surveys, then writes one ``import_records`` transaction per batch, skipping ids memlane
already knows before embedding. ``memlane import-mem0`` is a thin shell over :func:`import_mem0`.
See docs/import-mem0.md.
"""

from memlane.mem0_import._mapping import ATTRIBUTED_KEY, EXPIRATION_KEY, HASH_KEY, expires_at
from memlane.mem0_import._run import BATCH, Mem0ImportReport, Target, import_mem0
from memlane.mem0_import._source import Mem0Source, default_history_path, load_config_file

__all__ = [
    "ATTRIBUTED_KEY",
    "BATCH",
    "EXPIRATION_KEY",
    "HASH_KEY",
    "Mem0ImportReport",
    "Mem0Source",
    "Target",
    "default_history_path",
    "expires_at",
    "import_mem0",
    "load_config_file",
]
