"""mem0's call shapes: the argument names mem0 2.x uses, resolved to memlane's.

Code written for mem0 should run on memlane with an import change. Where a mem0 argument means
what a memlane one means, both names are accepted (giving both is an error, since they could
disagree); where it does not map, the call fails with :class:`InvalidRequest` naming what to use
instead. Nothing is ever silently ignored: mem0 itself ignored unknown arguments, and
``search(q, limit=5)`` returned 20 results.

=====================  ==========================  ==========================================
mem0                   memlane                     notes
=====================  ==========================  ==========================================
``top_k``              ``limit``                   search, get_all
``expiration_date``    ``expires_at``              a date: hidden from the next day on (UTC)
``show_expired``       ``show_expired``            search and get_all include expired memories
``reference_date``     ``reference_date``          search: the "now" recency is measured from
``rerank``             ``rerank``                  accepted; memlane's ranking is the reranker
``text`` (update)      ``data``                    mem0 2.x renamed update's ``data`` to ``text``
``prompt``             ``instructions``            add
``custom_instructions``  ``instructions``          add (the platform client's name)
=====================  ==========================  ==========================================

This module is pure: ``Memory`` calls it before doing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, TypeVar

from memlane.errors import InvalidRequest

__all__ = ["UNMAPPED", "expiry_of_date", "one_of", "refuse_unknown"]

T = TypeVar("T")

# Arguments of mem0 (its OSS Memory and its platform client) with no memlane meaning, and what
# to do instead. Keyed by name; the operation is named in the message.
UNMAPPED: Final[Mapping[str, str]] = {
    "fields": "memlane returns whole memory items; read the keys you need from each result",
    "categories": (
        "memlane has no categories: store them in metadata (metadata={'categories': [...]}) "
        "and filter with filters={'categories': {'contains': 'travel'}}"
    ),
    "custom_categories": "memlane has no categories: store them in metadata and filter on them",
    "keyword_search": "memlane always combines meaning and keywords; nothing to switch on",
    "latest_only": "memlane returns current memories only; pass as_of=... to search what was true at a time",
    "page": "get_all pages with limit= and cursor= (pass the previous page's next_cursor)",
    "page_size": "get_all pages with limit= and cursor= (pass the previous page's next_cursor)",
    "start_date": "filter on creation time: filters={'created_at': {'gte': '2026-01-01'}}",
    "end_date": "filter on creation time: filters={'created_at': {'lte': '2026-12-31'}}",
    "version": "memlane has one result format ({'results': [...]}); drop version",
    "output_format": "memlane has one result format ({'results': [...]}); drop output_format",
    "enable_graph": (
        "memlane links entities and relations on every add; drop enable_graph, and pass graph=True to search "
        "to follow them"
    ),
    "async_mode": "add() returns when the memories are stored; use AsyncMemory to not wait",
    "structured_data_schema": "memlane extracts text facts; put structured fields in metadata",
    "agent_custom_instructions": "pass instructions= on the add() call for that agent's scope",
    "immutable": "memlane memories can always be updated; keep a metadata flag and check it yourself",
    "delete_linked": "delete() removes one memory; delete its linked memories by id",
    "actor_id": "filter on who said it with filters={'actor_id': 'Alice'}",
    "org_id": "memlane scopes are user_id / agent_id / run_id; use one of those",
    "project_id": "memlane scopes are user_id / agent_id / run_id; use one of those",
    "app_id": "memlane scopes are user_id / agent_id / run_id; use agent_id for an app",
}


def refuse_unknown(operation: str, extras: Mapping[str, Any]) -> None:
    """Fail on arguments the operation does not take, explaining mem0's.

    Raises:
        InvalidRequest: an argument mem0 takes and memlane cannot honour (with what to do instead).
        TypeError: any other unexpected argument, as Python would raise.
    """
    for name in extras:
        if name in UNMAPPED:
            raise InvalidRequest(f"{operation}() does not take mem0's {name!r}: {UNMAPPED[name]}")
    if extras:
        raise TypeError(f"{operation}() got an unexpected keyword argument {next(iter(extras))!r}")


def one_of(name: str, value: T | None, alias: str, alias_value: T | None) -> T | None:
    """``value``, or mem0's ``alias_value`` when only that one is given.

    Raises:
        InvalidRequest: both are given.
    """
    if value is not None and alias_value is not None:
        raise InvalidRequest(f"give {name} or {alias} (mem0's name for it), not both")
    return value if value is not None else alias_value


def expiry_of_date(value: object) -> datetime:
    """mem0's ``expiration_date`` as the moment memlane hides the memory.

    mem0 keeps a memory visible through its expiration date (it hides it once the date is in the
    past), so memlane's ``expires_at`` is the start of the following day, UTC.

    Args:
        value: a date, a datetime (its date is used, as mem0 does) or a ``YYYY-MM-DD`` string.
    Raises:
        InvalidRequest: anything else.
    """
    if isinstance(value, datetime):
        day = (value if value.tzinfo is None else value.astimezone(UTC)).date()
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise InvalidRequest(
                f"expiration_date must be a date like '2026-12-31', got {value!r} "
                "(or pass expires_at= with a full time)"
            ) from exc
    else:
        raise InvalidRequest(f"expiration_date must be a date or a 'YYYY-MM-DD' string, got {type(value).__name__}")
    if day == date.max:
        raise InvalidRequest("expiration_date 9999-12-31 is the last date there is: leave the memory without expiry")
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
