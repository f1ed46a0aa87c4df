"""Quoting stored text for a prompt: memories are data, and must read as data.

Every adapter that shows memories to a model (the MCP tools, the LlamaIndex memory) quotes each one
with :func:`quote_data`: a JSON string literal on one line. JSON escapes quotes, backslashes and the
C0 controls; on top of that ``<``, ``>``, U+0085, U+2028 and U+2029 are escaped, which JSON allows
raw, so a stored text can neither break onto a line of its own nor open or close a tag around it.
"""

from __future__ import annotations

import json

__all__ = ["quote_data"]

_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>\x85\u2028\u2029"})


def quote_data(value: object) -> str:
    """A one-line JSON string literal of ``value`` (non-strings are JSON-encoded first) that cannot forge a tag."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return json.dumps(text, ensure_ascii=False).translate(_ESCAPES)
