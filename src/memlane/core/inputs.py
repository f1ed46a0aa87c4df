"""Validation and normalisation of what callers pass in: messages, metadata, times, limits."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from memlane.errors import InvalidRequest

__all__ = [
    "MAX_TEXT_CHARS",
    "ChatMessage",
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

MAX_TEXT_CHARS = 100_000
MAX_MESSAGES = 1_000


@dataclass(frozen=True)
class ChatMessage:
    """One message after validation."""

    role: str
    content: str
    name: str | None


def check_text(value: object, what: str) -> str:
    """A non-blank string of at most MAX_TEXT_CHARS characters."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRequest(f"{what} is empty; pass some text")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidRequest(f"{what} has {len(value)} characters; the limit is {MAX_TEXT_CHARS}: split it")
    return value


def normalise_messages(messages: object) -> list[ChatMessage]:
    """Accept a string, one message dict, or a list of message dicts.

    Raises:
        InvalidRequest: wrong types, missing or empty content, too many messages.
    """
    if isinstance(messages, str):
        return [ChatMessage("user", check_text(messages, "messages"), None)]
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
        out.append(ChatMessage(role, check_text(msg.get("content"), f"{where}.content"), name))
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
