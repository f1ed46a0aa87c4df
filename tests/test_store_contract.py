"""The store contract (``memlane.testing.StoreContract``) run over every backend we ship.

Adding a backend is one entry in ``BACKENDS``: a function that, given a per-test temp dir,
returns a factory of new handles on one fresh database (a Postgres entry would create a schema
or database there and drop it in its teardown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memlane.stores.sqlite import SQLiteStore
from memlane.testing import StoreContract, StoreFactory, StoreUnderTest


def _sqlite(tmp_path: Path) -> StoreFactory:
    def make() -> StoreUnderTest:
        return SQLiteStore(tmp_path / "contract.db", busy_timeout=5.0, durability="normal")

    return make


BACKENDS: dict[str, Callable[[Path], StoreFactory]] = {
    "sqlite": _sqlite,
    # "postgres": _postgres,  (one line per backend)
}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """New handles on one fresh database of the backend; every handle is closed afterwards."""
    make = BACKENDS[request.param](tmp_path)
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
