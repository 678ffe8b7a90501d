"""Fixtures of the team tests: a real redis-server of the test session's own (a free port, nothing
saved to disk), stopped at the end. Where the binary is missing the tests that need it skip, except
in CI (CI=true), where .ci/run installs it and its absence is a failure."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from tools.emulator import EmulatorClient, start_thread


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the redis-server process is a slow one (the fast subset starts no process)."""
    for item in items:
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed: .ci/run installs it with apt-get")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def running_emulator() -> Iterator[EmulatorClient]:
    with start_thread() as running:
        yield running


@pytest.fixture
def emu(running_emulator: EmulatorClient) -> EmulatorClient:
    running_emulator.reset()
    return running_emulator
