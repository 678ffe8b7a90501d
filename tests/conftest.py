"""Fixtures every test may use; the shared helpers live in tests/support."""

from __future__ import annotations

import pytest
from tests.support import server

from imagegate.catalog import load_catalog


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture (module-scoped ones too): the support helpers refuse a subprocess in a
    test not marked `slow`."""
    server.set_current_test(item)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    server.set_current_test(None)
