"""The store contract (``memlane.testing.StoreContract``) run over every backend we ship.

Adding a backend is one entry in ``BACKENDS``: a function that, given the test's fixture request,
returns a factory of new handles on one fresh database (SQLite: a file in tmp_path; PostgreSQL: a
new database on the session's real server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memlane.stores.postgres import PostgresStore
from memlane.stores.sqlite import SQLiteStore
from memlane.testing import StoreContract, StoreFactory, StoreUnderTest


def _sqlite(tmp_path: Path) -> StoreFactory:
    def make() -> StoreUnderTest:
        return SQLiteStore(tmp_path / "contract.db", busy_timeout=5.0, durability="normal")

    return make


def _postgres(request: pytest.FixtureRequest) -> StoreFactory:
    # A fresh database per test on the session's real PostgreSQL (tests/conftest.py).
    url: str = request.getfixturevalue("postgres_url")

    def make() -> StoreUnderTest:
        return PostgresStore(url, min_size=1, max_size=4, timeout=10.0)

    return make


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], StoreFactory]] = {
    "sqlite": lambda request: _sqlite(request.getfixturevalue("tmp_path")),
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """New handles on one fresh database of the backend; every handle is closed afterwards."""
    make = BACKENDS[request.param](request)
    handles: list[StoreUnderTest] = []

    def factory() -> StoreUnderTest:
        handles.append(make())
        return handles[-1]

    yield factory
    for handle in handles:
        handle.close()


class TestStoreContract(StoreContract):
    """Every contract test, once per backend."""


def test_the_contract_is_not_vacuous() -> None:
    # Guards against the suite silently collecting nothing (e.g. a renamed base class).
    names = [n for n in dir(StoreContract) if n.startswith("test_")]
    assert len(names) >= 15
