"""Fixtures every e2e module shares: one emulator per module, and the same emulator reset for a test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.emulator import EmulatorClient, start_thread


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorClient]:
    with start_thread() as running:
        yield running


@pytest.fixture
def emu(emulator: EmulatorClient) -> EmulatorClient:
    emulator.reset()
    return emulator
