"""Metadata filters: parse, evaluate in Python, compile to SQLite.

A filter is a JSON-able dict. :func:`parse_filter` validates it into a small
AST (:class:`Cond`, :class:`And`, :class:`Or`, :class:`Not`);
:func:`compile_sqlite` turns the AST into an SQL boolean expression and
:func:`evaluate` applies it to a record in pure Python. The two agree exactly.

Grammar::

    {"category": "food"}                         equality
    {"category": "food", "year": 2024}           several keys: AND
    {"year": {"gte": 2020, "lt": 2025}}          operators; several: AND
    {"tags": {"contains": "urgent"}}             array membership / substring
    {"agent_id": "*"}                            the key exists
    {"OR": [{"a": 1}, {"NOT": {"b": 2}}]}        logic, nests freely
    {"address.city": "Paris"}                    dotted path into nested objects
    {"created_at": {"gte": datetime(2026, 1, 1)}}  reserved column
    {"metadata.role": "admin"}                   metadata key named like a column

Operators: ``eq ne gt gte lt lte in nin contains icontains exists``.
Logical keys: ``AND``/``OR``/``NOT`` (also ``and``/``$and`` etc.); they take a
non-empty list of dicts (``NOT`` also takes a dict; a list means NOT(AND(...))).
A logical key may sit beside field keys; everything in one dict is ANDed.
The empty dict ``{}`` is accepted at the top level only and matches everything.

Typing is strict, like JSON and unlike SQL:

- ``eq`` with a bool matches only JSON booleans (``true`` is not ``1``); with a
  number it matches integers and reals (``1 == 1.0``) but never booleans or
  strings (``"10"`` is not ``10``); with ``None`` it matches a present JSON
  ``null``. Equality never looks inside arrays or objects: use ``contains``.
- ``gt``/``gte``/``lt``/``lte`` take a number, a string or a datetime and only
  compare against stored values of the same kind. Strings compare by code
  point, so timestamps in :func:`to_iso` format order correctly.
- ``ne``/``nin`` are exactly NOT ``eq``/NOT ``in``: a missing key matches.
- ``contains`` is a case-sensitive substring test on strings and an ``eq``
  membership test on arrays. ``icontains`` is a substring test on strings that
  folds ASCII letters only (SQLite's built-in ``lower()`` folds nothing else).
- ``exists: true`` means the key is present, even when its value is ``null``.
- ``"*"`` as a plain value means ``exists: true``; ``{"eq": "*"}`` is the
  literal string.
- Datetimes are normalised to :func:`to_iso` strings; naive ones are UTC.

Field names are metadata keys (dots descend into objects) or one of the
reserved columns in :data:`RESERVED_FIELDS`. A reserved column holds TEXT or
NULL; NULL means missing, so ``{"expires_at": None}`` matches rows where it is
NULL. Columns take string (or datetime) values only. ``metadata.<key>`` always
means metadata. Names may use only ``[A-Za-z0-9_\\-. ]``, which keeps JSON paths
safe; metadata keys that themselves contain dots cannot be addressed.

Every error is :class:`~memlane.errors.InvalidFilter`, names where in the filter
it happened (``filters.OR[1].age``) and says how to fix it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, TypeAlias

from memlane.errors import InvalidFilter

__all__ = [
    "OPERATORS",
    "RESERVED_FIELDS",
    "And",
    "Cond",
    "Node",
    "Not",
    "Or",
    "compile_sqlite",
    "evaluate",
    "parse_filter",
    "to_iso",
]

OPERATORS: Final = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains", "exists")
RESERVED_FIELDS: Final = frozenset(
    {"id", "memory", "role", "actor_id", "created_at", "updated_at", "timestamp", "expires_at"}
)

_LOGICAL: Final = {
    alias: canon for canon in ("AND", "OR", "NOT") for alias in (canon, canon.lower(), "$" + canon.lower())
}
_FIELD_RE: Final = re.compile(r"[A-Za-z0-9_\-. ]+")
_ORDERING: Final = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1
_MISSING: Final = object()
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_OPS_HINT: Final = ", ".join(OPERATORS)


@dataclass(frozen=True)
class Cond:
    """One test on one field.

    ``column`` is the reserved field name when the field is a column (then
    ``path`` is empty); otherwise ``column`` is None and ``path`` is the
    metadata key path. ``value`` is normalised: a tuple for ``in``/``nin``,
    a bool for ``exists``, a scalar otherwise.
    """

    field: str
    op: str
    value: Any
    column: str | None = None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class And:
    """All children hold (an empty And is true)."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one child holds (an empty Or is false)."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The child does not hold."""

    child: Node


Node: TypeAlias = Cond | And | Or | Not


def to_iso(dt: datetime) -> str:
    """Format a datetime as the fixed-width UTC timestamp memlane stores.

    Args:
        dt: Any datetime; a naive one is taken to be UTC.

    Returns:
        A string like ``"2026-05-04T09:30:00.000000+00:00"``. Every timestamp
        has the same width, so string order is time order.

    Raises:
        OverflowError: If converting to UTC leaves the supported year range.
    """
    naive = dt.tzinfo is None or dt.utcoffset() is None
    dt = dt.replace(tzinfo=UTC) if naive else dt.astimezone(UTC)
    # Built by hand: strftime("%Y") does not zero-pad years below 1000 on glibc.
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}+00:00"
    )


# --------------------------------------------------------------------- parsing


def parse_filter(filters: Mapping[str, Any]) -> Node:
    """Validate a filter dict and build its AST.

    Args:
        filters: The filter, in the language described in the module docstring.

    Returns:
        The root node. ``{}`` gives ``And(())``, which matches everything.

    Raises:
        InvalidFilter: If anything in the filter is malformed; the message
            names the place (e.g. ``filters.OR[1].age``) and the fix.
    """
    if not isinstance(filters, Mapping):
        raise InvalidFilter(f"filters: expected a dict such as {{'category': 'food'}}, got {_kind(filters)}")
    if not filters:
        return And(())
    return _parse_dict(filters, "filters")


def _parse_dict(obj: Any, where: str) -> Node:
    if not isinstance(obj, Mapping):
        raise InvalidFilter(f"{where}: expected a filter dict, got {_kind(obj)}")
    if not obj:
        raise InvalidFilter(f"{where}: empty filter dict; give at least one field or remove it")
    nodes: list[Node] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InvalidFilter(f"{where}: keys must be strings, got {key!r}")
        if key in _LOGICAL:
            nodes.append(_parse_logical(key, value, f"{where}.{key}"))
        else:
            nodes.extend(_parse_field(key, value, f"{where}.{key}"))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _parse_logical(key: str, value: Any, where: str) -> Node:
    kind = _LOGICAL[key]
    if kind == "NOT" and isinstance(value, Mapping):
        return Not(_parse_dict(value, where))
    if not isinstance(value, list):
        accepted = "a dict or a non-empty list of dicts" if kind == "NOT" else "a list"
        raise InvalidFilter(f"{where}: {key} takes {accepted}, got {_kind(value)}")
    if not value:
        raise InvalidFilter(f"{where}: {key} needs a non-empty list of filter dicts")
    children = tuple(_parse_dict(item, f"{where}[{i}]") for i, item in enumerate(value))
    if kind == "AND":
        return And(children)
    if kind == "OR":
        return Or(children)
    return Not(children[0] if len(children) == 1 else And(children))


def _parse_field(key: str, value: Any, where: str) -> list[Cond]:
    column, path = _resolve_field(key, where)
    if isinstance(value, Mapping):
        if not value:
            raise InvalidFilter(f"{where}: empty operator dict; use one of {_OPS_HINT}")
        return [_make_cond(key, op, arg, column, path, where) for op, arg in value.items()]
    if isinstance(value, list):
        raise InvalidFilter(
            f"{where}: a list is not a value; use {{'in': [...]}} to match any of "
            "several values or {'contains': x} to test array membership"
        )
    if isinstance(value, str) and value == "*":
        return [Cond(key, "exists", True, column, path)]
    return [Cond(key, "eq", _check_value("eq", value, column, where), column, path)]


def _resolve_field(key: str, where: str) -> tuple[str | None, tuple[str, ...]]:
    hint = _logical_hint(key)
    if hint:
        raise InvalidFilter(f"{where}: {hint}")
    if not _FIELD_RE.fullmatch(key):
        raise InvalidFilter(
            f"{where}: invalid field name {key!r}; names must be non-empty and use only "
            "letters, digits, '_', '-', '.' (for nesting) and spaces"
        )
    if key in RESERVED_FIELDS:
        return key, ()
    if key == "metadata":
        raise InvalidFilter(f"{where}: name a metadata key, e.g. 'metadata.topic'")
    explicit = key.startswith("metadata.")
    segments = tuple(key.split(".")[1:] if explicit else key.split("."))
    if not explicit and segments[0] in RESERVED_FIELDS:
        raise InvalidFilter(
            f"{where}: {segments[0]!r} is a reserved column without sub-fields; "
            f"to reach a metadata key write 'metadata.{key}'"
        )
    if not all(segments):
        raise InvalidFilter(f"{where}: empty segment in field name {key!r}; dots separate non-empty keys")
    return None, segments


def _logical_hint(key: str) -> str:
    canon = key.lstrip("$").upper()
    if canon in ("AND", "OR", "NOT"):
        return (
            f"unknown logical operator {key!r}; write {canon!r}, {canon.lower()!r} or "
            f"'${canon.lower()}' (a metadata key of this name is 'metadata.{key}')"
        )
    return ""


def _make_cond(key: str, op: Any, arg: Any, column: str | None, path: tuple[str, ...], where: str) -> Cond:
    if op not in OPERATORS:
        fix = f"use one of {_OPS_HINT}"
        if isinstance(op, str) and op.startswith("$") and op[1:] in OPERATORS:
            fix = f"write {op[1:]!r} without the '$'"
        elif isinstance(op, str) and column is None and _FIELD_RE.fullmatch(op):
            fix += f" (for a nested key write '{key}.{op}')"
        raise InvalidFilter(f"{where}: unknown operator {op!r}; {fix}")
    at = f"{where}.{op}"
    if op in ("in", "nin"):
        if not isinstance(arg, list) or not arg:
            got = "an empty list" if isinstance(arg, list) else _kind(arg)
            raise InvalidFilter(f"{at}: {op} takes a non-empty list of values, got {got}")
        items = tuple(_check_value("eq", v, column, f"{at}[{i}]") for i, v in enumerate(arg))
        return Cond(key, op, items, column, path)
    return Cond(key, op, _check_value(op, arg, column, at), column, path)


def _check_value(op: str, value: Any, column: str | None, where: str) -> Any:
    """Validate and normalise one operand for ``op``; in/nin items use ``eq``."""
    if op == "exists":
        if not isinstance(value, bool):
            raise InvalidFilter(f"{where}: exists takes true or false, got {_kind(value)}")
        return value
    if isinstance(value, datetime):
        value = to_iso(value)
    elif isinstance(value, date):
        raise InvalidFilter(f"{where}: got a date; pass a datetime (naive means UTC)")
    _check_scalar(value, where)
    if op in _ORDERING and (value is None or isinstance(value, bool)):
        raise InvalidFilter(f"{where}: {op} compares numbers, strings or datetimes, got {_kind(value)}")
    if op == "icontains" and not isinstance(value, str):
        raise InvalidFilter(f"{where}: icontains takes a string, got {_kind(value)}")
    if column is not None and not isinstance(value, str):
        if value is None and op in ("eq", "ne"):
            return value
        raise InvalidFilter(
            f"{where}: {column!r} is a text column; compare it with a string or datetime"
            + (" (or null, meaning missing)" if op in ("eq", "ne") else "")
        )
    return value


def _check_scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidFilter(f"{where}: integer {value} does not fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilter(f"{where}: {value} is not a JSON number; use a finite float")
        return
    if isinstance(value, Mapping):
        raise InvalidFilter(
            f"{where}: an object is not a value; to match a nested key use a dotted field name such as 'address.city'"
        )
    raise InvalidFilter(f"{where}: expected a string, number, bool, null or datetime, got {_kind(value)}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {value!r}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# ------------------------------------------------------------------ evaluation


def evaluate(node: Node, record: Mapping[str, Any]) -> bool:
    """Decide whether a record matches; the reference for :func:`compile_sqlite`.

    Args:
        node: A node from :func:`parse_filter`.
        record: A memory row: reserved fields as top-level keys (str or None;
            absent means None) and ``"metadata"`` as a dict, a JSON object
            text, or None.

    Returns:
        True when the record matches.

    Raises:
        InvalidFilter: If the node was built by hand with an unknown operator.
        TypeError: If ``record["metadata"]`` is neither a dict, a str nor None.
    """
    meta = record.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta)
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"record metadata must be a dict, got {type(meta).__name__}")
    return _eval(node, record, meta)


def _eval(node: Node, record: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
    if isinstance(node, Cond):
        return _eval_cond(node, record, meta)
    if isinstance(node, And):
        return all(_eval(child, record, meta) for child in node.children)
    if isinstance(node, Or):
        return any(_eval(child, record, meta) for child in node.children)
    return not _eval(node.child, record, meta)


def _eval_cond(cond: Cond, record: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
    is_column = cond.column is not None
    # A NULL column is "missing", which makes eq None mean "missing" there.
    stored = record.get(cond.column) if cond.column is not None else _lookup(meta, cond.path)
    op, target = cond.op, cond.value
    if op == "exists":
        present = stored is not None if is_column else stored is not _MISSING
        return present is bool(target)
    if op in ("eq", "ne"):
        return _same(stored, target) == (op == "eq")
    if op in ("in", "nin"):
        return any(_same(stored, t) for t in target) == (op == "in")
    if op in _ORDERING:
        if not _same_kind(stored, target):
            return False
        if op == "gt":
            return bool(stored > target)
        if op == "gte":
            return bool(stored >= target)
        if op == "lt":
            return bool(stored < target)
        return bool(stored <= target)
    if op == "contains":
        if isinstance(stored, str) and isinstance(target, str) and target in stored:
            return True
        return not is_column and isinstance(stored, list) and any(_same(e, target) for e in stored)
    if op == "icontains":
        return isinstance(stored, str) and _ascii_lower(target) in _ascii_lower(stored)
    raise InvalidFilter(f"unknown operator {op!r} in {cond.field!r}; use one of {_OPS_HINT}")


def _lookup(meta: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = meta
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return _MISSING
        current = current[key]
    return current


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(stored: Any, target: Any) -> bool:
    """JSON equality: bools, numbers, strings and null never equal each other."""
    if target is None:
        return stored is None
    if isinstance(target, bool):
        return isinstance(stored, bool) and stored == target
    if _is_number(target):
        return _is_number(stored) and bool(stored == target)
    return isinstance(stored, str) and stored == target


def _same_kind(stored: Any, target: Any) -> bool:
    if _is_number(target):
        return _is_number(stored)
    return isinstance(stored, str) and isinstance(target, str)


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


# ----------------------------------------------------------------- SQL output

# An SQL fragment and its `?` parameters, in placeholder order.
_Frag: TypeAlias = tuple[str, list[Any]]
_NUMBER_TYPES: Final = "('integer', 'real')"


def compile_sqlite(
    node: Node, *, metadata_column: str = "metadata", columns: Mapping[str, str] | None = None
) -> tuple[str, list[Any]]:
    """Compile a filter AST to an SQLite (3.40+, JSON1) boolean expression.

    The expression is never NULL, so it can be negated and combined freely.
    ``metadata_column`` and ``columns`` are pasted into the SQL as given: they
    come from the store's code, never from users.

    Args:
        node: A node from :func:`parse_filter`.
        metadata_column: SQL expression for the column holding the metadata
            JSON object text, e.g. ``"m.metadata"``.
        columns: SQL expressions for reserved fields; fields not given map to
            their own name.

    Returns:
        ``(sql, params)`` with ``?`` placeholders, for ``WHERE {sql}``.

    Raises:
        InvalidFilter: If a hand-built node has an unknown operator, column
            or unsafe path.
        ValueError: If ``columns`` names a field that is not reserved.
    """
    unknown = set(columns or {}) - RESERVED_FIELDS
    if unknown:
        raise ValueError(f"columns: {sorted(unknown)} are not reserved fields; use some of {sorted(RESERVED_FIELDS)}")
    colmap = {name: name for name in RESERVED_FIELDS} | dict(columns or {})
    return _node_sql(node, metadata_column, colmap)


def _node_sql(node: Node, meta: str, cols: Mapping[str, str]) -> _Frag:
    if isinstance(node, Cond):
        return _cond_sql(node, meta, cols)
    if isinstance(node, Not):
        return _sql("(NOT {})", _node_sql(node.child, meta, cols))
    if not node.children:
        return ("1", []) if isinstance(node, And) else ("0", [])
    parts = [_node_sql(child, meta, cols) for child in node.children]
    sep = " AND " if isinstance(node, And) else " OR "
    return "(" + sep.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]


def _cond_sql(cond: Cond, meta: str, cols: Mapping[str, str]) -> _Frag:
    is_column = cond.column is not None
    if cond.column is not None:
        if cond.column not in cols:
            raise InvalidFilter(f"{cond.field!r}: {cond.column!r} is not a reserved column")
        col = f"({cols[cond.column]})"
        # typeof() reports SQL NULL as 'null', the same word json_type uses.
        kind: _Frag = (f"typeof({col})", [])
        value: _Frag = (col, [])
        absent = "'null'"
    else:
        path = _json_path(cond)
        kind = (f"IFNULL(json_type({meta}, ?), '')", [path])
        value = (f"json_extract({meta}, ?)", [path])
        absent = "''"
    op, target = cond.op, cond.value
    if op == "exists":
        return _sql("({} " + ("<>" if target else "=") + f" {absent})", kind)
    if op in ("eq", "ne", "in", "nin"):
        targets = (target,) if op in ("eq", "ne") else tuple(target)
        frag = _in_sql(kind, value, targets)
        return frag if op in ("eq", "in") else _sql("(NOT {})", frag)
    if op in _ORDERING:
        kinds = _NUMBER_TYPES if _is_number(target) else "('text')"
        template = f"({{}} IN {kinds} AND {{}} {_ORDERING[op]} {{}})"
        return _sql(template, kind, value, ("?", [target]))
    if op == "icontains":
        needle = ("?", [_ascii_lower(target)])
        return _sql("({} = 'text' AND instr(lower({}), {}) > 0)", kind, value, needle)
    if op == "contains":
        return _contains_sql(cond, kind, value, meta, is_column)
    raise InvalidFilter(f"unknown operator {op!r} in {cond.field!r}; use one of {_OPS_HINT}")


def _contains_sql(cond: Cond, kind: _Frag, value: _Frag, meta: str, is_column: bool) -> _Frag:
    parts: list[_Frag] = []
    if isinstance(cond.value, str):
        needle = ("?", [cond.value])
        parts.append(_sql("({} = 'text' AND instr({}, {}) > 0)", kind, value, needle))
    if not is_column:
        # json_each over a non-array would walk an object's members or yield
        # the scalar itself, hence the explicit array check.
        member = _in_sql(("je.type", []), ("je.value", []), (cond.value,))
        template = "({} = 'array' AND EXISTS (SELECT 1 FROM json_each({}, {}) AS je WHERE {}))"
        parts.append(_sql(template, kind, (meta, []), ("?", [_json_path(cond)]), member))
    if not parts:
        return "0", []
    return "(" + " OR ".join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]


def _in_sql(kind: _Frag, value: _Frag, targets: Sequence[Any]) -> _Frag:
    """SQL for "the value JSON-equals one of targets", grouped by JSON type."""
    if not targets:
        return "0", []
    parts: list[_Frag] = []
    if any(t is None for t in targets):
        parts.append(_sql("{} = 'null'", kind))
    bools = sorted({"'true'" if t else "'false'" for t in targets if isinstance(t, bool)})
    if bools:
        parts.append(_sql(f"{{}} IN ({', '.join(bools)})", kind))
    numbers = [t for t in targets if _is_number(t)]
    if numbers:
        template = f"({{}} IN {_NUMBER_TYPES} AND {{}} IN ({{}}))"
        parts.append(_sql(template, kind, value, _placeholders(numbers)))
    strings = [t for t in targets if isinstance(t, str)]
    if strings:
        parts.append(_sql("({} = 'text' AND {} IN ({}))", kind, value, _placeholders(strings)))
    return "(" + " OR ".join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]


def _sql(template: str, *parts: _Frag) -> _Frag:
    """Fill ``{}`` slots in order; params follow because slots are sequential."""
    return template.format(*(p[0] for p in parts)), [x for p in parts for x in p[1]]


def _placeholders(values: Sequence[Any]) -> _Frag:
    return ", ".join("?" * len(values)), list(values)


def _json_path(cond: Cond) -> str:
    # Re-checked here because a Cond may be built by hand; a stray quote
    # would change which key the path names.
    if not cond.path or not all(seg and _FIELD_RE.fullmatch(seg) for seg in cond.path):
        raise InvalidFilter(f"{cond.field!r}: unsafe or empty metadata path {cond.path!r}")
    if any("." in seg for seg in cond.path):
        raise InvalidFilter(f"{cond.field!r}: path segments cannot contain '.'")
    return "$" + "".join(f'."{seg}"' for seg in cond.path)
