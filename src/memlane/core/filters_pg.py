"""Compile metadata filters to a PostgreSQL boolean expression.

The filter language and its strict, JSON-typed semantics are defined in
:mod:`memlane.core.filters`; :func:`compile_postgres` is the PostgreSQL twin of
:func:`~memlane.core.filters.compile_sqlite` and agrees with
:func:`~memlane.core.filters.evaluate`. It expects metadata in a ``jsonb``
column holding a JSON object, and reserved fields in ``TEXT`` columns where
NULL means missing. Placeholders are psycopg's ``%s``.

How the rules map onto PostgreSQL:

- Keys are reached with a chain of ``->`` operators, one bound text parameter
  per path segment. ``#>`` is not used: it treats a segment such as ``"0"`` as
  an array index, whereas a dotted field only ever descends into objects.
- ``eq``/``in`` compare with ``jsonb`` equality against the operand's JSON
  text, which is as strict as :func:`evaluate`: numbers compare as
  ``numeric`` (``1 = 1.0``), ``true`` is not ``1``, ``"10"`` is not ``10`` and
  a JSON ``null`` equals only ``null``. Arrays and objects never equal a
  scalar. ``contains`` on an array is ``jsonb`` containment of ``[operand]``,
  the same equality applied to each element.
- Ordering compares ``numeric`` with ``numeric`` or text with text under
  ``COLLATE "C"``, which is code point order in a UTF8 database. The type test
  and the cast sit in a ``CASE`` because PostgreSQL does not promise to
  evaluate ``AND`` left to right, and ``'"abc"'::jsonb::numeric`` raises.
- Numbers are bound as their JSON text (what :func:`json.dumps` would store),
  cast to ``numeric``. Binding a float as ``float8`` and casting would round it
  to 15 digits.
- ``icontains`` folds ASCII letters only, with ``translate()``; ``lower()``
  would also fold other letters under most collations.
- Every expression is TRUE or FALSE, never NULL, so ``NOT`` is exact.

Where PostgreSQL cannot match :func:`evaluate`:

- ``jsonb`` stores a number as a decimal and forgets whether it was written
  as an integer or a float. Integer-valued floats from about ``1e16`` up,
  whose shortest decimal form is not their exact value (``float(2**60)`` is
  written ``1.152921504606847e+18``), therefore compare by that decimal:
  ``{"n": float(2**60)}`` does not match a stored ``2**60``, though Python says
  the two are equal. Below ``2**53`` every comparison agrees.
- PostgreSQL text cannot hold the NUL character, so a string operand
  containing ``"\\x00"`` raises :class:`~memlane.errors.InvalidFilter` instead
  of being compared (no stored value can contain it either).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

from memlane.core.filters import (
    _OPS_HINT,
    _ORDERING,
    OPERATORS,
    RESERVED_FIELDS,
    And,
    Cond,
    Node,
    Not,
    _ascii_lower,
    _check_value,
    _is_number,
    _json_path,
)
from memlane.errors import InvalidFilter

__all__ = ["compile_postgres"]

# An SQL fragment and its `%s` parameters, in placeholder order.
_Frag: TypeAlias = tuple[str, list[Any]]
_FOLD: Final = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'"
_TRUE: Final[_Frag] = ("TRUE", [])
_FALSE: Final[_Frag] = ("FALSE", [])


def compile_postgres(
    node: Node, *, metadata_column: str = "metadata", columns: Mapping[str, str] | None = None
) -> tuple[str, list[Any]]:
    """Compile a filter AST to a PostgreSQL boolean expression.

    The expression is never NULL, so it can be negated and combined freely.
    ``metadata_column`` and ``columns`` are pasted into the SQL as given: they
    come from the store's code, never from users, and must not contain ``%``.
    Every user-supplied string (keys, values, needles) is a bound parameter.
    Ordering by code point assumes a UTF8 database.

    Args:
        node: A node from :func:`~memlane.core.filters.parse_filter`.
        metadata_column: SQL expression for the ``jsonb`` column holding the
            metadata object, e.g. ``"m.metadata"``.
        columns: SQL expressions for reserved fields (TEXT, NULL meaning
            missing); fields not given map to their own quoted name.

    Returns:
        ``(sql, params)`` with psycopg ``%s`` placeholders, for ``WHERE {sql}``.

    Raises:
        InvalidFilter: If a hand-built node has an unknown operator, column,
            unsafe path or an operand :func:`parse_filter` would reject, or if
            a string operand contains NUL.
        ValueError: If ``columns`` names a field that is not reserved.
    """
    unknown = set(columns or {}) - RESERVED_FIELDS
    if unknown:
        raise ValueError(f"columns: {sorted(unknown)} are not reserved fields; use some of {sorted(RESERVED_FIELDS)}")
    # Quoted so that names like "timestamp" can never parse as a keyword.
    colmap = {name: f'"{name}"' for name in RESERVED_FIELDS} | dict(columns or {})
    return _node_sql(node, metadata_column, colmap)


def _node_sql(node: Node, meta: str, cols: Mapping[str, str]) -> _Frag:
    if isinstance(node, Cond):
        return _cond_sql(node, meta, cols)
    if isinstance(node, Not):
        return _sql("(NOT {})", _node_sql(node.child, meta, cols))
    # PostgreSQL wants booleans here; 1 and 0 are integers to it.
    if not node.children:
        return _TRUE if isinstance(node, And) else _FALSE
    parts = [_node_sql(child, meta, cols) for child in node.children]
    return _join(parts, " AND " if isinstance(node, And) else " OR ")


def _cond_sql(cond: Cond, meta: str, cols: Mapping[str, str]) -> _Frag:
    if cond.column is not None:
        if cond.column not in cols:
            raise InvalidFilter(f"{cond.field!r}: {cond.column!r} is not a reserved column")
    else:
        # The path is bound, so nothing in it could reach the SQL text; it is
        # checked anyway so both compilers accept exactly the same nodes.
        _json_path(cond)
    if cond.op not in OPERATORS:
        raise InvalidFilter(f"unknown operator {cond.op!r} in {cond.field!r}; use one of {_OPS_HINT}")
    target = _operand(cond)
    if cond.column is not None:
        return _column_sql(cond.op, target, f"({cols[cond.column]})")
    return _meta_sql(cond.op, target, meta, cond.path)


def _operand(cond: Cond) -> Any:
    """Re-validate a node's operand as parse_filter would, and refuse NUL.

    A node built by hand skips parse_filter; without this, an operand of the
    wrong kind would surface as a driver error at execution time.
    """
    where = repr(cond.field)
    if cond.op in ("in", "nin"):
        if not isinstance(cond.value, (list, tuple)) or not cond.value:
            raise InvalidFilter(f"{where}: {cond.op} takes a non-empty list of values")
        value: Any = tuple(_check_value("eq", v, cond.column, f"{where}[{i}]") for i, v in enumerate(cond.value))
    else:
        value = _check_value(cond.op, cond.value, cond.column, where)
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, str) and "\x00" in item:
            raise InvalidFilter(f"{where}: PostgreSQL text cannot hold the NUL character '\\x00'; remove it")
    return value


def _meta_sql(op: str, target: Any, meta: str, path: Sequence[str]) -> _Frag:
    keys = " -> ".join(["%s::text"] * len(path))
    value: _Frag = (f"({meta} -> {keys})", list(path))
    # ->> on the last step yields a JSON string's text (used after a type test).
    head = "".join(" -> %s::text" for _ in path[:-1])
    text: _Frag = (f"({meta}{head} ->> %s::text)", list(path))
    kind = _sql("COALESCE(jsonb_typeof({}), '')", value)
    if op == "exists":
        return _sql("({} IS NOT NULL)" if target else "({} IS NULL)", value)
    if op in ("eq", "ne"):
        frag = _sql("COALESCE({} = {}, FALSE)", value, _param(_json(target), "jsonb"))
        return frag if op == "eq" else _sql("(NOT {})", frag)
    if op in ("in", "nin"):
        frag = _sql("COALESCE({} = ANY({}), FALSE)", value, _param([_json(t) for t in target], "jsonb[]"))
        return frag if op == "in" else _sql("(NOT {})", frag)
    if op in _ORDERING:
        cmp = _ORDERING[op]
        if _is_number(target):
            template = f"(CASE WHEN {{}} = 'number' THEN ({{}})::numeric {cmp} {{}} ELSE FALSE END)"
            return _sql(template, kind, value, _param(_json(target), "numeric"))
        template = f"(CASE WHEN {{}} = 'string' THEN {{}} COLLATE \"C\" {cmp} {{}} ELSE FALSE END)"
        return _sql(template, kind, text, _param(target, "text"))
    if op == "icontains":
        template = f"(CASE WHEN {{}} = 'string' THEN strpos(translate({{}}, {_FOLD}), {{}}) > 0 ELSE FALSE END)"
        return _sql(template, kind, text, _param(_ascii_lower(target), "text"))
    # contains: a substring of a string, or an element of an array.
    member = _sql("{} @> {}", value, _param(json.dumps([target]), "jsonb"))
    if isinstance(target, str):
        template = "(CASE {} WHEN 'string' THEN strpos({}, {}) > 0 WHEN 'array' THEN {} ELSE FALSE END)"
        return _sql(template, kind, text, _param(target, "text"), member)
    return _sql("(CASE WHEN {} = 'array' THEN {} ELSE FALSE END)", kind, member)


def _column_sql(op: str, target: Any, col: str) -> _Frag:
    # Explicit COLLATE "C" wins over the column's own collation, whatever it is.
    text = f'{col} COLLATE "C"'
    if op == "exists":
        return (f"({col} IS NOT NULL)" if target else f"({col} IS NULL)"), []
    if op in ("eq", "ne", "in", "nin"):
        targets = (target,) if op in ("eq", "ne") else tuple(target)
        parts: list[_Frag] = []
        if any(t is None for t in targets):
            parts.append((f"({col} IS NULL)", []))
        strings = [t for t in targets if isinstance(t, str)]
        if strings:
            parts.append((f"COALESCE({text} = ANY(%s::text[]), FALSE)", [strings]))
        frag = _join(parts, " OR ")
        return frag if op in ("eq", "in") else _sql("(NOT {})", frag)
    if op in _ORDERING:
        return f"COALESCE({text} {_ORDERING[op]} %s::text, FALSE)", [target]
    if op == "icontains":
        return f"COALESCE(strpos(translate({col}, {_FOLD}), %s::text) > 0, FALSE)", [_ascii_lower(target)]
    return f"COALESCE(strpos({col}, %s::text) > 0, FALSE)", [target]


def _json(value: Any) -> str:
    """The operand's JSON text: exactly what json.dumps would store in jsonb."""
    return json.dumps(value)


def _join(parts: Sequence[_Frag], sep: str) -> _Frag:
    if not parts:
        return _FALSE
    return "(" + sep.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]


def _param(value: Any, cast: str) -> _Frag:
    # The cast fixes the type whatever psycopg infers from the Python value.
    return f"%s::{cast}", [value]


def _sql(template: str, *parts: _Frag) -> _Frag:
    """Fill ``{}`` slots in order; params follow because slots are sequential."""
    return template.format(*(p[0] for p in parts)), [x for p in parts for x in p[1]]
