"""Validation and normalisation of what callers pass in: messages, metadata, times, limits."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from memlane.errors import InvalidRequest

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_TEXT_CHARS",
    "ChatMessage",
    "check_extractable",
    "check_limit",
    "check_metadata",
    "check_text",
    "check_threshold",
    "decode_cursor",
    "encode_cursor",
    "has_string_keys",
    "normalise_messages",
    "parse_time",
    "resolve_expiry",
]

# A query, instructions, or a message that an LLM extracts facts from.
MAX_TEXT_CHARS = 100_000
# A message stored verbatim (and a memory's text: update, import). Past the passage size it is
# searched passage by passage (memlane.core.passages).
MAX_MESSAGE_CHARS = 2_000_000
MAX_MESSAGES = 1_000
# Control characters other than tab, newline, form feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class ChatMessage:
    """One message after validation."""

    role: str
    content: str
    name: str | None


def check_text(value: object, what: str, *, limit: int = MAX_TEXT_CHARS) -> str:
    """A non-blank text of at most ``limit`` characters that is not binary data.

    Raises:
        InvalidRequest: not a string, blank, too long, or binary (NUL characters, lone
            surrogates, or more than a fifth control characters), naming the problem.
    """
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRequest(f"{what} is empty; pass some text")
    if len(value) > limit:
        raise InvalidRequest(f"{what} has {len(value)} characters; the limit is {limit}: split it")
    _check_not_binary(value, what)
    return value


def _check_not_binary(value: str, what: str) -> None:
    if "\x00" in value:
        raise InvalidRequest(
            f"{what} contains NUL characters (at character {value.index(chr(0))}): it looks like binary data; "
            "memlane stores text, so decode or describe the data first"
        )
    odd = _SURROGATE.search(value)
    if odd is not None:
        raise InvalidRequest(
            f"{what} is not valid Unicode: a lone surrogate at character {odd.start()} (bytes that were not "
            "UTF-8, decoded with errors='surrogateescape'?); decode the data as text first"
        )
    # A few escape sequences are normal (coloured logs); a text that is mostly control characters is not text.
    if len(value) >= 32 and _CONTROL.search(value) is not None:
        count = len(_CONTROL.findall(value))
        if count * 5 > len(value):
            raise InvalidRequest(
                f"{what} is {100 * count // len(value)}% control characters ({count} of {len(value)}): it looks "
                "like binary data; memlane stores text, so decode or describe the data first"
            )


def check_extractable(messages: Sequence[ChatMessage]) -> None:
    """Refuse messages too long to hand to an LLM for fact extraction (a verbatim add takes them).

    Raises:
        InvalidRequest: a message longer than MAX_TEXT_CHARS, naming it and what to do instead.
    """
    for i, msg in enumerate(messages):
        if len(msg.content) > MAX_TEXT_CHARS:
            raise InvalidRequest(
                f"message {i} has {len(msg.content)} characters; fact extraction reads at most {MAX_TEXT_CHARS} "
                f"per message: pass infer=False to store it verbatim (up to {MAX_MESSAGE_CHARS} characters, "
                "searched passage by passage), or split it"
            )


def normalise_messages(messages: object, *, max_chars: int = MAX_MESSAGE_CHARS) -> list[ChatMessage]:
    """Accept a string, one message dict, or a list of message dicts.

    Args:
        max_chars: the longest message content accepted.
    Raises:
        InvalidRequest: wrong types, missing, empty or binary content, too many messages.
    """
    if isinstance(messages, str):
        return [ChatMessage("user", check_text(messages, "messages", limit=max_chars), None)]
    if isinstance(messages, Mapping):
        messages = [messages]
    if not isinstance(messages, Sequence) or isinstance(messages, bytes):
        raise InvalidRequest(
            "messages must be a string, a message dict or a list of them, "
            f"e.g. [{{'role': 'user', 'content': '...'}}]; got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidRequest("messages is empty; pass at least one message")
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"{len(messages)} messages in one add; the limit is {MAX_MESSAGES}")
    out = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise InvalidRequest(f"{where} must be a dict with 'role' and 'content', got {type(msg).__name__}")
        unknown = set(msg) - {"role", "content", "name"}
        if unknown:
            raise InvalidRequest(f"{where} has unknown key(s) {sorted(unknown)}; allowed: role, content, name")
        role = msg.get("role", "user")
        if not isinstance(role, str) or not role.strip():
            raise InvalidRequest(f"{where}.role must be a non-empty string such as 'user' or 'assistant'")
        name = msg.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 256):
            raise InvalidRequest(f"{where}.name must be a non-empty string of at most 256 characters")
        out.append(ChatMessage(role, check_text(msg.get("content"), f"{where}.content", limit=max_chars), name))
    return out


def check_metadata(metadata: object) -> dict[str, Any]:
    """A JSON object (dict with string keys, finite numbers), returned as a deep copy.

    Raises:
        InvalidRequest: not a dict, or not representable as JSON exactly.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidRequest(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"metadata must be JSON: string keys and str/int/float/bool/None/list/dict values ({exc})"
        ) from exc
    copy: dict[str, Any] = json.loads(text)
    # json.dumps turns non-string keys (1, True, None) into strings at any depth: refuse them rather
    # than hand back metadata that differs from what was given.
    if not has_string_keys(metadata):
        raise InvalidRequest("metadata keys must be strings (also in nested objects)")
    return copy


def has_string_keys(value: object) -> bool:
    """True when every dict key, at any depth, is a string (JSON would silently stringify others)."""
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and has_string_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(has_string_keys(v) for v in value)
    return True


def parse_time(value: object, what: str) -> datetime:
    """A datetime (naive = UTC), an ISO 8601 string, or epoch seconds, as an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidRequest(f"{what} {value!r} is not ISO 8601, e.g. '2026-05-04T09:30:00Z'") from exc
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            dt = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidRequest(f"{what} {value!r} is out of range for epoch seconds") from exc
    else:
        raise InvalidRequest(f"{what} must be a datetime, an ISO 8601 string or epoch seconds")
    try:
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:00-05:00 is past the last representable UTC time
        raise InvalidRequest(f"{what} {value!r} is out of range once converted to UTC") from exc


def resolve_expiry(expires_at: object, ttl: object, now: datetime) -> datetime | None:
    """``expires_at`` or ``now + ttl`` (seconds or timedelta); giving both is an error."""
    if expires_at is not None and ttl is not None:
        raise InvalidRequest("give expires_at or ttl, not both")
    if ttl is not None:
        if isinstance(ttl, timedelta):
            seconds = ttl.total_seconds()
        elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
            seconds = float(ttl)
        else:
            raise InvalidRequest("ttl must be seconds (a number) or a timedelta")
        if not math.isfinite(seconds) or seconds <= 0:
            raise InvalidRequest("ttl must be positive")
        try:
            return now + timedelta(seconds=seconds)
        except OverflowError as exc:
            raise InvalidRequest(f"ttl of {seconds:g} seconds reaches past the year 9999; use a smaller one") from exc
    return None if expires_at is None else parse_time(expires_at, "expires_at")


def check_limit(limit: object, *, maximum: int = 10_000) -> int:
    """A positive int no larger than ``maximum``."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise InvalidRequest(f"limit must be an integer from 1 to {maximum}, got {limit!r}")
    return limit


def check_threshold(threshold: object) -> float | None:
    """None or a number in [0, 1]."""
    if threshold is None:
        return None
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise InvalidRequest(f"threshold must be a number from 0 to 1 (scores are in [0, 1]), got {threshold!r}")
    return float(threshold)


def encode_cursor(created_at: str, rid: int) -> str:
    """An opaque page cursor for ``get_all``: where the previous page ended."""
    return base64.urlsafe_b64encode(f"{created_at}|{rid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> tuple[str, int]:
    """The ``(created_at, rid)`` a cursor from :func:`encode_cursor` names."""
    bad = InvalidRequest("cursor is not one memlane returned: pass a previous page's next_cursor unchanged")
    if not isinstance(cursor, str) or not 0 < len(cursor) <= 200:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, rid = raw.rsplit("|", 1)
        datetime.fromisoformat(created_at)
        return created_at, int(rid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad from exc
