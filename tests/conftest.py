"""Shared fixtures: a clean environment for the server, and an MCP client over stdio."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from imagegate.catalog import load_catalog

TEST_KEY_PREFIX = "test-sentinel-key-"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


def all_keys() -> dict[str, str]:
    """A distinct, greppable test key for every shipped provider."""
    cat = load_catalog()
    return {spec.key_env: f"{TEST_KEY_PREFIX}{pid}" for pid, spec in cat.providers.items() if spec.key_env}


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Only what a server needs: no keys leak in from the developer's shell."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp / "home"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "IMAGEGATE_OUTPUT_DIR": str(tmp / "out"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    env.update(extra)
    return env


@asynccontextmanager
async def stdio_client(env: Mapping[str, str], mode: str = "legacy") -> AsyncIterator[Client]:
    """The real server as a subprocess, spoken to by the SDK's client over stdio."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "imagegate"], env=dict(env))
    async with Client(params, mode=mode, read_timeout_seconds=60) as client:  # type: ignore[arg-type]
        yield client


def text_of(result) -> str:
    return "\n".join(b.text for b in result.content if getattr(b, "type", "") == "text")
