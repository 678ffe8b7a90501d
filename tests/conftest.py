"""Fixtures every test may use; the shared helpers live in tests/support."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.support import server

from imagegate.catalog import load_catalog


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers per core. Most of a test's time is a server or an upstream answering,
    so a core has room for a second worker while the first waits (on 2 cores: 4 workers, ~20 %
    faster than 2)."""
    return 2 * (os.cpu_count() or 1)


@pytest.fixture(autouse=True, scope="session")
def _processes_only_in_slow_tests() -> Iterator[None]:
    """Any process a test starts (subprocess, asyncio, anyio: all go through Popen) needs `slow`."""
    with server.guard_processes():
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture (module-scoped ones too): the support helpers refuse a subprocess in a
    test not marked `slow`."""
    server.set_current_test(item)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    server.set_current_test(None)
