"""Tests for memlane.core.filters: parsing, SQLite compilation, and their agreement with evaluate()."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memlane.core.filters import (
    OPERATORS,
    RESERVED_FIELDS,
    And,
    Cond,
    Node,
    Not,
    Or,
    compile_sqlite,
    evaluate,
    parse_filter,
    to_iso,
)
from memlane.errors import InvalidFilter, InvalidRequest

COLUMNS = ("id", "memory", "role", "actor_id", "created_at", "updated_at", "timestamp", "expires_at")


def _db(records: Sequence[Mapping[str, Any]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE mem (id TEXT PRIMARY KEY, memory TEXT, role TEXT, actor_id TEXT, created_at TEXT,"
        " updated_at TEXT, timestamp TEXT, expires_at TEXT, metadata TEXT)"
    )
    for rec in records:
        row = [rec.get(c) for c in COLUMNS] + [json.dumps(rec.get("metadata", {}))]
        conn.execute(f"INSERT INTO mem VALUES ({', '.join('?' * len(row))})", row)
    return conn


def _sql_ids(conn: sqlite3.Connection, node: Any) -> set[str]:
    sql, params = compile_sqlite(node)
    return {r[0] for r in conn.execute(f"SELECT id FROM mem WHERE {sql}", params)}


def _py_ids(records: Sequence[Mapping[str, Any]], node: Any) -> set[str]:
    return {r["id"] for r in records if evaluate(node, r)}


# ------------------------------------------------------------------ to_iso


def test_to_iso_formats_naive_as_utc_and_converts_aware() -> None:
    assert to_iso(datetime(2026, 5, 4, 9, 30)) == "2026-05-04T09:30:00.000000+00:00"
    paris = timezone(timedelta(hours=2))
    assert to_iso(datetime(2026, 5, 4, 11, 30, 0, 5, tzinfo=paris)) == "2026-05-04T09:30:00.000005+00:00"
    assert to_iso(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000000+00:00"


# ------------------------------------------------------------------ parsing


def test_plain_equality_and_implicit_and() -> None:
    assert parse_filter({"topic": "food"}) == Cond("topic", "eq", "food", None, ("topic",))
    node = parse_filter({"a": 1, "b": None})
    assert node == And((Cond("a", "eq", 1, None, ("a",)), Cond("b", "eq", None, None, ("b",))))


def test_empty_top_level_filter_matches_everything() -> None:
    assert parse_filter({}) == And(())
    assert evaluate(And(()), {"id": "x"})
    assert compile_sqlite(And(())) == ("1", [])
    assert compile_sqlite(Or(())) == ("0", [])


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "x", "x"),
        ("ne", 2.5, 2.5),
        ("gt", 3, 3),
        ("gte", "b", "b"),
        ("lt", -1.0, -1.0),
        ("lte", datetime(2026, 1, 1), "2026-01-01T00:00:00.000000+00:00"),
        ("in", [1, "a", None, True], (1, "a", None, True)),
        ("nin", ["a"], ("a",)),
        ("contains", "sub", "sub"),
        ("contains", 3, 3),
        ("icontains", "SUB", "SUB"),
        ("exists", False, False),
        ("eq", "*", "*"),
    ],
)
def test_every_operator_parses(op: str, value: Any, expected: Any) -> None:
    assert parse_filter({"k": {op: value}}) == Cond("k", op, expected, None, ("k",))


def test_all_operators_are_covered_by_parse_test() -> None:
    assert set(OPERATORS) == {
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "nin",
        "contains",
        "icontains",
        "exists",
    }


def test_several_operators_on_one_field_are_anded() -> None:
    node = parse_filter({"age": {"gte": 18, "lt": 65}})
    assert node == And((Cond("age", "gte", 18, None, ("age",)), Cond("age", "lt", 65, None, ("age",))))


def test_star_means_exists_and_datetime_is_normalised() -> None:
    assert parse_filter({"agent_id": "*"}) == Cond("agent_id", "exists", True, None, ("agent_id",))
    node = parse_filter({"created_at": datetime(2026, 5, 4, 9, 30)})
    assert node == Cond("created_at", "eq", "2026-05-04T09:30:00.000000+00:00", "created_at", ())


@pytest.mark.parametrize("alias", ["AND", "and", "$and"])
def test_and_aliases(alias: str) -> None:
    assert parse_filter({alias: [{"a": 1}, {"b": 2}]}) == And(
        (Cond("a", "eq", 1, None, ("a",)), Cond("b", "eq", 2, None, ("b",)))
    )


@pytest.mark.parametrize("alias", ["OR", "or", "$or"])
def test_or_aliases(alias: str) -> None:
    assert parse_filter({alias: [{"a": 1}]}) == Or((Cond("a", "eq", 1, None, ("a",)),))


@pytest.mark.parametrize("alias", ["NOT", "not", "$not"])
def test_not_aliases_with_dict_and_list(alias: str) -> None:
    a, b = Cond("a", "eq", 1, None, ("a",)), Cond("b", "eq", 2, None, ("b",))
    assert parse_filter({alias: {"a": 1}}) == Not(a)
    assert parse_filter({alias: [{"a": 1}]}) == Not(a)
    assert parse_filter({alias: [{"a": 1}, {"b": 2}]}) == Not(And((a, b)))


def test_nesting_and_logical_beside_fields() -> None:
    node = parse_filter({"x": 1, "OR": [{"NOT": {"y": {"in": [1, 2]}}}, {"AND": [{"z": "*"}]}]})
    assert node == And(
        (
            Cond("x", "eq", 1, None, ("x",)),
            Or(
                (
                    Not(Cond("y", "in", (1, 2), None, ("y",))),
                    And((Cond("z", "exists", True, None, ("z",)),)),
                )
            ),
        )
    )


def test_field_resolution() -> None:
    assert parse_filter({"address.city": "Paris"}) == Cond("address.city", "eq", "Paris", None, ("address", "city"))
    assert parse_filter({"metadata.role": "x"}) == Cond("metadata.role", "eq", "x", None, ("role",))
    assert parse_filter({"metadata.a.b": 1}).path == ("a", "b")  # type: ignore[union-attr]
    assert parse_filter({"key with-dash_1": 1}).path == ("key with-dash_1",)  # type: ignore[union-attr]
    for name in RESERVED_FIELDS:
        assert parse_filter({name: "v"}) == Cond(name, "eq", "v", name, ())


def test_column_null_equality_is_allowed() -> None:
    assert parse_filter({"expires_at": None}) == Cond("expires_at", "eq", None, "expires_at", ())
    assert parse_filter({"role": {"in": ["user", None]}}).value == ("user", None)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ([{"a": 1}], "filters: expected a dict"),
        (
            {"OR": [{"a": 1}, {"age": {"gtt": 3}}]},
            "filters.OR[1].age: unknown operator 'gtt'; use one of eq, ne,",
        ),
        ({"a": {"$gt": 1}}, "filters.a: unknown operator '$gt'; write 'gt' without"),
        ({"address": {"city": "Paris"}}, "for a nested key write 'address.city'"),
        ({"a": {}}, "filters.a: empty operator dict"),
        ({"a": [1, 2]}, "filters.a: a list is not a value; use {'in': [...]}"),
        ({"a": {"eq": {"b": 1}}}, "filters.a.eq: an object is not a value"),
        ({"a": {"eq": [1]}}, "filters.a.eq: expected a string, number, bool, null or datetime, got a list"),
        ({"a": {"in": "x"}}, "filters.a.in: in takes a non-empty list of values, got string 'x'"),
        ({"a": {"nin": []}}, "filters.a.nin: nin takes a non-empty list of values, got an empty list"),
        ({"a": {"in": [1, [2]]}}, "filters.a.in[1]: expected a string"),
        ({"a": {"gt": True}}, "filters.a.gt: gt compares numbers, strings or datetimes, got bool True"),
        ({"a": {"lte": None}}, "filters.a.lte: lte compares numbers"),
        ({"a": {"gte": [1]}}, "filters.a.gte: expected a string"),
        ({"a": {"lt": {"x": 1}}}, "filters.a.lt: an object is not a value"),
        ({"a": {"exists": 1}}, "filters.a.exists: exists takes true or false, got number 1"),
        ({"a": {"icontains": 5}}, "filters.a.icontains: icontains takes a string"),
        ({"a": {"contains": {"x": 1}}}, "filters.a.contains: an object"),
        ({"a": {"eq": float("nan")}}, "filters.a.eq: nan is not a JSON number"),
        ({"a": {"eq": 2**64}}, "does not fit in 64 bits"),
        ({"a": {"eq": date(2026, 1, 1)}}, "filters.a.eq: got a date; pass a datetime"),
        ({"a": {"eq": b"x"}}, "got bytes"),
        ({"AND": []}, "filters.AND: AND needs a non-empty list"),
        ({"or": {"a": 1}}, "filters.or: or takes a list, got an object"),
        ({"NOT": []}, "filters.NOT: NOT needs a non-empty list"),
        ({"NOT": "x"}, "filters.NOT: NOT takes a dict or a non-empty list of dicts"),
        ({"AND": [{"a": 1}, "b"]}, "filters.AND[1]: expected a filter dict, got string 'b'"),
        ({"OR": [{}]}, "filters.OR[0]: empty filter dict"),
        ({"Or": [{"a": 1}]}, "filters.Or: unknown logical operator 'Or'; write 'OR'"),
        ({"": 1}, "filters.: invalid field name ''"),
        ({'a"b': 1}, "invalid field name 'a\"b'; names must be non-empty"),
        ({"a$": 1}, "filters.a$: invalid field name"),
        ({"a..b": 1}, "filters.a..b: empty segment"),
        ({"metadata.": 1}, "filters.metadata.: empty segment"),
        ({"metadata": 1}, "filters.metadata: name a metadata key"),
        (
            {"role.x": 1},
            "filters.role.x: 'role' is a reserved column without sub-fields; to reach a metadata",
        ),
        ({1: 1}, "filters: keys must be strings"),
        ({"role": 1}, "filters.role: 'role' is a text column; compare it with a string or datetime (or null"),
        ({"created_at": {"gt": 5}}, "filters.created_at.gt: 'created_at' is a text column"),
        ({"role": {"contains": None}}, "filters.role.contains: 'role' is a text column"),
        ({"role": {"in": ["a", 1]}}, "filters.role.in[1]: 'role' is a text column"),
        ({"x": {"AND": [{"a": 1}]}}, "filters.x: unknown operator 'AND'"),
        ({"NOT": {"a": {"in": [1, {"b": 2}]}}}, "filters.NOT.a.in[1]: an object is not a value"),
    ],
)
def test_errors_name_the_path(filters: Any, message: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        parse_filter(filters)
    assert message in str(info.value)
    assert isinstance(info.value, InvalidRequest)
    assert isinstance(info.value, ValueError)


def test_unknown_operator_lists_all_valid_ones() -> None:
    with pytest.raises(InvalidFilter, match="use one of " + ", ".join(OPERATORS)):
        parse_filter({"a": {"EQ": 1}})


# ------------------------------------------------------------------ SQL over a fixed dataset

T0 = datetime(2026, 1, 1)
RECORDS: list[dict[str, Any]] = [
    {
        "id": "r1",
        "memory": "Likes Paris",
        "role": "user",
        "actor_id": "alice",
        "created_at": to_iso(T0),
        "metadata": {
            "n": 1,
            "s": "hello World",
            "b": True,
            "tags": ["a", "b", 1],
            "addr": {"city": "Paris", "zip": "75001"},
            "x": None,
        },
    },
    {
        "id": "r2",
        "memory": "lives in LYON",
        "role": "assistant",
        "created_at": to_iso(T0 + timedelta(days=60)),
        "expires_at": to_iso(T0 + timedelta(days=365)),
        "metadata": {"n": 1.0, "s": "10", "b": False, "tags": [], "addr": {"city": "Lyon"}},
    },
    {
        "id": "r3",
        "role": "user",
        "created_at": to_iso(T0 - timedelta(days=1)),
        "metadata": {
            "n": 10,
            "s": "Straße",
            "b": 1,
            "tags": ["A", True, None],
            "role": "admin",
            "score": 2.5,
        },
    },
    {"id": "r4", "metadata": {"n": "10", "s": "", "tags": "a,b", "addr": "Paris", "x": 0}},
    {"id": "r5", "metadata": {}},
    {
        "id": "r6",
        "role": "User",
        "metadata": {
            "n": True,
            "s": ["hello"],
            "nested": {"deep": {"k": [1, 2]}},
            "key with space": "v",
            "dash-key": 3,
        },
    },
]


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    db = _db(RECORDS)
    yield db
    db.close()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # strict equality: bool vs 1, "10" vs 10, 1 vs 1.0
        ({"n": 1}, {"r1", "r2"}),
        ({"n": 1.0}, {"r1", "r2"}),
        ({"n": True}, {"r6"}),
        ({"b": True}, {"r1"}),
        ({"b": 1}, {"r3"}),
        ({"n": 10}, {"r3"}),
        ({"n": "10"}, {"r4"}),
        ({"s": "10"}, {"r2"}),
        # null vs missing
        ({"x": None}, {"r1"}),
        ({"x": {"ne": None}}, {"r2", "r3", "r4", "r5", "r6"}),
        ({"x": {"exists": True}}, {"r1", "r4"}),
        ({"x": "*"}, {"r1", "r4"}),
        ({"x": {"exists": False}}, {"r2", "r3", "r5", "r6"}),
        ({"x": {"eq": "*"}}, set()),
        # ne / nin match missing keys
        ({"n": {"ne": 1}}, {"r3", "r4", "r5", "r6"}),
        ({"n": {"nin": [1, "10"]}}, {"r3", "r5", "r6"}),
        ({"n": {"in": [10, True, "x"]}}, {"r3", "r6"}),
        ({"x": {"in": [None, 0]}}, {"r1", "r4"}),
        ({"b": {"in": [False, True]}}, {"r1", "r2"}),
        # ordering never crosses kinds
        ({"n": {"gt": 1}}, {"r3"}),
        ({"n": {"gte": 1}}, {"r1", "r2", "r3"}),
        ({"n": {"lt": 100}}, {"r1", "r2", "r3"}),
        ({"n": {"gt": "1"}}, {"r4"}),
        ({"s": {"lt": "a"}}, {"r2", "r3", "r4"}),
        ({"score": {"gt": 2, "lte": 2.5}}, {"r3"}),
        # contains / icontains
        ({"s": {"contains": "World"}}, {"r1"}),
        ({"s": {"contains": "world"}}, set()),
        ({"s": {"icontains": "WORLD"}}, {"r1"}),
        ({"s": {"icontains": "STRASSE"}}, set()),
        ({"s": {"icontains": "straß"}}, {"r3"}),
        ({"s": {"contains": ""}}, {"r1", "r2", "r3", "r4"}),
        ({"s": {"contains": "hello"}}, {"r1", "r6"}),
        ({"tags": {"contains": "a"}}, {"r1", "r4"}),
        ({"tags": {"contains": 1}}, {"r1"}),
        ({"tags": {"contains": True}}, {"r3"}),
        ({"tags": {"contains": None}}, {"r3"}),
        ({"tags": {"icontains": "a"}}, {"r4"}),
        ({"addr": {"contains": "city"}}, set()),
        # nested paths and odd key names
        ({"addr.city": "Paris"}, {"r1"}),
        ({"addr.city": {"ne": "Paris"}}, {"r2", "r3", "r4", "r5", "r6"}),
        ({"addr": "Paris"}, {"r4"}),
        ({"nested.deep.k": {"contains": 2}}, {"r6"}),
        ({"key with space": "v", "dash-key": {"gte": 3}}, {"r6"}),
        ({"metadata.role": "admin"}, {"r3"}),
        # reserved columns: NULL is missing
        ({"role": "user"}, {"r1", "r3"}),
        ({"role": {"ne": "user"}}, {"r2", "r4", "r5", "r6"}),
        ({"role": {"icontains": "USER"}}, {"r1", "r3", "r6"}),
        ({"role": {"in": ["assistant", None]}}, {"r2", "r4", "r5"}),
        ({"role": {"nin": ["user", None]}}, {"r2", "r6"}),
        ({"actor_id": "*"}, {"r1"}),
        ({"expires_at": None}, {"r1", "r3", "r4", "r5", "r6"}),
        ({"expires_at": {"ne": None}}, {"r2"}),
        ({"memory": {"contains": "Paris"}}, {"r1"}),
        ({"created_at": {"gte": T0}}, {"r1", "r2"}),
        ({"created_at": {"lt": T0 + timedelta(microseconds=1)}}, {"r1", "r3"}),
        ({"id": {"in": ["r1", "r6"]}}, {"r1", "r6"}),
        # logic
        ({"OR": [{"n": 1}, {"role": "User"}]}, {"r1", "r2", "r6"}),
        ({"NOT": {"OR": [{"n": 1}, {"role": "User"}]}}, {"r3", "r4", "r5"}),
        ({"NOT": [{"role": "user"}, {"n": 10}]}, {"r1", "r2", "r4", "r5", "r6"}),
        ({"$and": [{"role": "user"}], "or": [{"b": True}, {"b": 1}]}, {"r1", "r3"}),
        ({}, {"r1", "r2", "r3", "r4", "r5", "r6"}),
        # injection attempts are plain parameters
        ({"s": "x' OR 1=1 --"}, set()),
    ],
)
def test_sql_selects_expected_ids(conn: sqlite3.Connection, filters: dict[str, Any], expected: set[str]) -> None:
    node = parse_filter(filters)
    assert _sql_ids(conn, node) == expected
    assert _py_ids(RECORDS, node) == expected


def test_custom_column_expressions_and_metadata_column() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE m (mid TEXT, born TEXT, meta TEXT, value TEXT, type TEXT)")
    db.execute("INSERT INTO m VALUES ('a', '2026', ?, 'v', 't')", (json.dumps({"tags": ["x"]}),))
    db.execute("INSERT INTO m VALUES ('b', NULL, ?, 'v', 't')", (json.dumps({"tags": ["y"]}),))
    node = parse_filter({"created_at": {"gte": "2000"}, "tags": {"contains": "x"}, "id": {"ne": "z"}})
    sql, params = compile_sqlite(node, metadata_column="m.meta", columns={"created_at": "m.born", "id": "m.mid"})
    assert [r[0] for r in db.execute(f"SELECT m.mid FROM m WHERE {sql}", params)] == ["a"]


def test_compile_rejects_unknown_columns_and_unsafe_hand_built_paths() -> None:
    with pytest.raises(ValueError, match="not reserved fields"):
        compile_sqlite(And(()), columns={"user_id": "uid"})
    with pytest.raises(InvalidFilter, match="unsafe"):
        compile_sqlite(Cond("x", "eq", 1, None, ('a"b',)))
    with pytest.raises(InvalidFilter, match="unknown operator"):
        compile_sqlite(Cond("x", "like", 1, None, ("x",)))
    with pytest.raises(InvalidFilter, match="unknown operator"):
        evaluate(Cond("x", "like", 1, None, ("x",)), {"metadata": {"x": 1}})


def test_evaluate_accepts_json_text_and_missing_metadata() -> None:
    node = parse_filter({"a.b": 1})
    assert evaluate(node, {"metadata": '{"a": {"b": 1}}'})
    assert not evaluate(node, {"metadata": None})
    assert evaluate(parse_filter({"a": {"exists": False}}), {})
    with pytest.raises(TypeError):
        evaluate(node, {"metadata": [1]})


def test_sql_never_yields_null_so_not_is_exact(conn: sqlite3.Connection) -> None:
    cases: list[dict[str, Any]] = [
        {"n": {"gt": 1}},
        {"tags": {"contains": "a"}},
        {"role": "user"},
        {"x": {"nin": [None]}},
    ]
    for filters in cases:
        sql, params = compile_sqlite(parse_filter(filters))
        values = {r[0] for r in conn.execute(f"SELECT {sql} FROM mem", params)}
        assert values <= {0, 1}


# ------------------------------------------------------------------ property: SQL == evaluate

# Small shared pools: stored values and filter operands collide often, which is
# where type-strictness bugs (True vs 1, "1" vs 1, null vs missing) show up.
_NUMBERS = [0, 1, 2, 1.0, 2.5, -1.5, 2**53 + 1, float(2**53)]
_STRINGS = ["", "a", "A", "ab", "aB", "b a", "Aé", "É", "1", "10", "*"]
_NUMBER = st.sampled_from(_NUMBERS)
_TEXT = st.sampled_from(_STRINGS)
_SCALAR = st.sampled_from([None, True, False, *_NUMBERS, *_STRINGS])
_KEYS = ["a", "b", "c"]
_ARRAY = st.lists(_SCALAR, max_size=3)
_OBJECT = st.dictionaries(st.sampled_from(["a", "b"]), st.one_of(_SCALAR, _ARRAY), max_size=2)
# Mostly scalars: that is where the typing rules live. (st.one_of alone
# drew containers far more often than scalars.)
_VALUE = st.sampled_from(["scalar"] * 6 + ["array"] * 2 + ["object"]).flatmap(
    lambda kind: {"scalar": _SCALAR, "array": _ARRAY, "object": _OBJECT}[kind]
)
_STAMPS = [to_iso(T0 + timedelta(days=d)) for d in (-1, 0, 1)]
_COL_TEXT = st.one_of(st.none(), st.sampled_from(["user", "User", "assistant", "a", ""]), _TEXT)


# Every pool value under "a", "b" and "c.a", so each generated leaf meets each
# kind of stored value at least once whatever the random records hold.
_POOL_VALUES: list[Any] = [
    *[None, True, False, *_NUMBERS, *_STRINGS],
    *[[], _STRINGS[1::2], [None, False, *_NUMBERS[::2]], [True, *_STRINGS[::2], *_NUMBERS[1::2]], {"a": 1}],
]
_POOL_RECORDS: list[dict[str, Any]] = [
    {
        "id": f"p{i}",
        "role": _STRINGS[i % len(_STRINGS)],
        "metadata": {"a": v, "b": _POOL_VALUES[-1 - i], "c": {"a": v}},
    }
    for i, v in enumerate(_POOL_VALUES)
]


@st.composite
def _records(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(2, 8))
    return [
        {
            "id": f"r{i}",
            "role": draw(_COL_TEXT),
            "memory": draw(_COL_TEXT),
            "created_at": draw(st.one_of(st.none(), st.sampled_from(_STAMPS))),
            "metadata": draw(st.dictionaries(st.sampled_from(_KEYS), _VALUE, min_size=1, max_size=3)),
        }
        for i in range(count)
    ]


def _meta_leaf(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(["a", "b", "c", "c.a", "metadata.b", "zz"]))
    op = draw(st.sampled_from([*OPERATORS, "plain"]))
    if op == "plain":
        return {field: draw(_SCALAR)}
    if op in ("in", "nin"):
        value: Any = draw(st.lists(_SCALAR, min_size=1, max_size=3))
    elif op in ("gt", "gte", "lt", "lte"):
        value = draw(st.one_of(_NUMBER, _TEXT))
    elif op == "icontains":
        value = draw(_TEXT)
    elif op == "exists":
        value = draw(st.booleans())
    else:
        value = draw(_SCALAR)
    return {field: {op: value}}


def _column_leaf(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(["role", "memory", "created_at"]))
    text = st.sampled_from(_STAMPS) if field == "created_at" else _TEXT
    op = draw(st.sampled_from([*OPERATORS, "plain"]))
    if op == "plain":
        return {field: draw(st.one_of(st.none(), text, st.just("*")))}
    if op in ("eq", "ne"):
        value: Any = draw(st.one_of(st.none(), text))
    elif op in ("in", "nin"):
        value = draw(st.lists(st.one_of(st.none(), text), min_size=1, max_size=3))
    elif op == "exists":
        value = draw(st.booleans())
    else:
        value = draw(text)
    return {field: {op: value}}


@st.composite
def _leaves(draw: st.DrawFn) -> dict[str, Any]:
    return _column_leaf(draw) if draw(st.integers(0, 3)) == 0 else _meta_leaf(draw)


def _combine(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    items = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.builds(lambda k, xs: {k: xs}, st.sampled_from(["AND", "and", "$and", "OR", "or", "$or"]), items),
        st.builds(lambda k, x: {k: x}, st.sampled_from(["NOT", "not", "$not"]), st.one_of(children, items)),
        # a logical key beside field keys: the dict's entries are ANDed
        st.builds(lambda x, xs: {**x, "OR": xs}, _leaves(), items),
    )


_FILTERS = st.recursive(_leaves(), _combine, max_leaves=8)


@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=_records(), filters=_FILTERS)
def test_sql_agrees_with_evaluate(records: list[dict[str, Any]], filters: dict[str, Any]) -> None:
    root = parse_filter(filters)
    records = _POOL_RECORDS + records
    db = _db(records)
    try:
        # Every sub-tree is checked too: each leaf then gets its own chance to disagree.
        for node in _subtrees(root):
            assert _sql_ids(db, node) == _py_ids(records, node), node
        assert _sql_ids(db, Not(root)) == _py_ids(records, Not(root))
    finally:
        db.close()


def _subtrees(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, (And, Or)):
        for child in node.children:
            yield from _subtrees(child)
    elif isinstance(node, Not):
        yield from _subtrees(node.child)
