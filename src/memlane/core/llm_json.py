"""Reading JSON out of what a language model wrote.

Backends that constrain output to a schema return clean JSON; the rest wrap it in code fences,
reasoning (``<think>…</think>``) or prose. :func:`extract_json` finds the first JSON object that
the caller's validator accepts, and says precisely what was wrong when there is none, so the
repair prompt can tell the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["JSONNotFound", "extract_json"]

T = TypeVar("T")
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_OPEN_THINK = re.compile(r"^\s*<(think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


class JSONNotFound(ValueError):
    """No acceptable JSON object in the text; the message says why (for the repair prompt)."""


def _strip_reasoning(text: str) -> str:
    text = _THINK.sub("", text)
    if _OPEN_THINK.match(text):
        # An unclosed reasoning block: the answer, if any, follows its last line break.
        text = text.split("</", 1)[-1] if "</" in text else text[text.rfind("\n") + 1 :]
    return text


def _candidates(text: str) -> list[str]:
    out = [m.group(1) for m in _FENCE.finditer(text)]
    out.append(text)
    return out


def extract_json(text: str, validate: Callable[[Any], T]) -> T:
    """The first JSON object in ``text`` that ``validate`` accepts, as ``validate`` returns it.

    Args:
        text: the model's answer.
        validate: converts a decoded object or raises ``ValueError`` explaining what is wrong.
    Raises:
        JSONNotFound: no object decodes and validates; the message gives the last reason.
    """
    decoder = json.JSONDecoder()
    reason = "the answer holds no JSON object"
    body = _strip_reasoning(text)
    for chunk in _candidates(body):
        for match in re.finditer(r"[{\[]", chunk):
            try:
                obj, _ = decoder.raw_decode(chunk, match.start())
            except json.JSONDecodeError as exc:
                if match.start() == chunk.find(chunk.lstrip()[:1] or "{"):
                    reason = f"invalid JSON ({exc.msg} at character {exc.pos})"
                continue
            try:
                return validate(obj)
            except ValueError as exc:
                reason = str(exc)
    if body.strip() and body.strip()[0] in "{[" and body.strip()[-1] not in "}]":
        reason = "the JSON is cut off (the answer was truncated)"
    raise JSONNotFound(reason)
