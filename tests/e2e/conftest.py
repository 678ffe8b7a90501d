"""Fixtures every e2e module shares: one emulator for the session, reset for each module and test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tools.emulator import EmulatorClient, start_thread


@pytest.fixture(scope="session")
def running_emulator() -> Iterator[EmulatorClient]:
    """Started once: stopping one waits out its open connections, a second or two per module."""
    with start_thread() as running:
        yield running


@pytest.fixture(scope="module")
def emulator(running_emulator: EmulatorClient) -> EmulatorClient:
    """The emulator as a module starts: defaults, no faults, an empty log, no files."""
    running_emulator.reset()
    return running_emulator


@pytest.fixture
def emu(emulator: EmulatorClient) -> EmulatorClient:
    emulator.reset()
    return emulator
