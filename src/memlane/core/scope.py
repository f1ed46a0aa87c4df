"""Scoping rules: which user / agent / run an operation touches.

Scope ids come as keyword arguments or inside ``filters`` (mem0 2.x style, top level or inside a
top-level ``AND``). Both forms work; a contradiction between them is an error, and so is an
operation that needs a scope and has none (a global namespace by accident is the classic bug).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memlane.errors import InvalidFilter, InvalidRequest, ScopeConflict, ScopeRequired
from memlane.types import Scope

__all__ = ["SCOPE_KEYS", "resolve_scope", "validate_scope_id"]

SCOPE_KEYS = ("user_id", "agent_id", "run_id")
_MAX_ID = 256


def validate_scope_id(name: str, value: object) -> str | None:
    """Check one scope id: None or a non-empty string of at most 256 characters without NUL."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}: pass e.g. {name}='alice'")
    if not value.strip():
        raise InvalidRequest(f"{name} must not be empty or blank; omit it instead")
    if len(value) > _MAX_ID or "\x00" in value:
        raise InvalidRequest(f"{name} must be at most {_MAX_ID} characters without NUL bytes")
    return value


def _scope_from_filters(filters: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Split scope ids out of a filter dict; returns (scope ids, remaining filter)."""
    scope: dict[str, str] = {}
    rest: dict[str, Any] = {}
    for key, value in filters.items():
        if key in SCOPE_KEYS:
            if isinstance(value, Mapping) and set(value) == {"eq"}:
                value = value["eq"]
            if not isinstance(value, str) or value == "*":
                raise InvalidRequest(
                    f"filters.{key} must be a plain string id (got {value!r}); "
                    "scope ids select a namespace and take no operators or wildcards"
                )
            if scope.get(key, value) != value:
                raise ScopeConflict(f"filters give two different {key} values: {scope[key]!r} and {value!r}")
            scope[key] = value
        elif key in ("AND", "and", "$and") and isinstance(value, list):
            kept = []
            for child in value:
                if isinstance(child, Mapping) and len(child) == 1 and next(iter(child)) in SCOPE_KEYS:
                    inner, _ = _scope_from_filters(child)
                    for k, v in inner.items():
                        if scope.get(k, v) != v:
                            raise ScopeConflict(f"filters give two different {k} values: {scope[k]!r} and {v!r}")
                        scope[k] = v
                else:
                    kept.append(child)
            if kept or not value:  # an empty list stays, so the filter parser reports it
                rest[key] = kept
        else:
            rest[key] = value
    return scope, rest


def resolve_scope(
    *,
    user_id: str | None,
    agent_id: str | None,
    run_id: str | None,
    filters: Mapping[str, Any] | None,
    required: bool,
    operation: str,
) -> tuple[Scope, dict[str, Any] | None]:
    """Merge keyword and filter scope ids; return the scope and the metadata-only filter.

    Raises:
        ScopeRequired: ``required`` and no id was given anywhere.
        ScopeConflict: a keyword id and a filters id disagree.
        InvalidRequest: an id is not a non-empty string.
    """
    if filters is not None and not isinstance(filters, Mapping):
        raise InvalidFilter(f"filters must be a dict such as {{'category': 'food'}}, got {type(filters).__name__}")
    ids: dict[str, str | None] = {
        "user_id": validate_scope_id("user_id", user_id),
        "agent_id": validate_scope_id("agent_id", agent_id),
        "run_id": validate_scope_id("run_id", run_id),
    }
    rest: dict[str, Any] | None = None
    if filters:
        from_filters, remaining = _scope_from_filters(filters)
        for key, value in from_filters.items():
            validate_scope_id(f"filters.{key}", value)
            if ids[key] is not None and ids[key] != value:
                raise ScopeConflict(
                    f"{key}={ids[key]!r} contradicts filters {key}={value!r}; give it once, or make them equal"
                )
            ids[key] = value
        rest = remaining or None
    scope = Scope(**ids)
    if required and scope.is_empty():
        raise ScopeRequired(
            f"{operation}() needs at least one of user_id, agent_id or run_id (as a keyword or in filters), "
            f"e.g. {operation}(..., user_id='alice'); memlane has no global namespace"
        )
    return scope, rest
