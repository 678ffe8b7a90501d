"""The server under test, spoken to by the SDK's client: in memory by default, or as the real
subprocess over stdio where the process boundary is what a test is about.

In memory, `mcp.Client(server)` drives the same low-level `Server` that `imagegate` serves over
stdio, with the same legacy handshake, so a tool-level test sees what a stdio client sees. Two
things the subprocess got from its environment are given to it here instead:

- Settings read only the `env` mapping, except where a library reads the process environment
  at start-up: platformdirs (HOME, XDG_*: the default config file and output folder) and
  `tempfile.gettempdir()` (TMPDIR: the fallback folder). While the service is built, those
  variables are set as `env` has them (and unset where it has none), then restored.
- The CLI logs everything at WARNING and above to stderr. With `errlog`, the same records, in
  the CLI's format, are written to `errlog` while the session is open.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TextIO

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client as stdio_transport

from imagegate.app import create_server
from imagegate.providers.base import Adapter
from imagegate.service import Service, build_service

PROCESS_ENV = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_PICTURES_DIR", "XDG_CONFIG_DIRS", "TMPDIR")
"""What the server reads from the process environment rather than from its settings mapping."""
LOG_FORMAT = "imagegate %(levelname)s %(message)s"
LOG_LEVEL = logging.WARNING
"""As cli.main configures logging for the server process."""
NOT_THE_SERVER = ("uvicorn", "tools")
"""Loggers of the emulator running in the test process: what it logs is not the server's stderr."""
READ_TIMEOUT = 60
FORCE_STDIO = os.environ.get("IMAGEGATE_TEST_STDIO") == "1"
"""Set IMAGEGATE_TEST_STDIO=1 to run every in-memory session over stdio instead (to compare the two)."""

_current: list[pytest.Item] = []


def set_current_test(item: pytest.Item | None) -> None:
    """Called by the conftest around each test: stdio sessions are allowed only in `slow` tests."""
    _current[:] = [item] if item is not None else []


def require_slow(what: str) -> None:
    """Fail a test that starts a process without the `slow` mark (the fast subset must stay fast)."""
    if _current and _current[0].get_closest_marker("slow") is None:
        pytest.fail(f"{_current[0].nodeid} starts {what}: mark it @pytest.mark.slow")


@contextmanager
def guard_processes() -> Iterator[None]:
    """While the block runs, every process started through subprocess.Popen (which asyncio's and
    anyio's process APIs use too) passes `require_slow` first."""
    original = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
        require_slow(f"a process ({str(args)[:80]})")
        original(self, args, *rest, **kw)

    subprocess.Popen.__init__ = guarded  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]


@asynccontextmanager
async def serve(
    env: Mapping[str, str],
    errlog: TextIO | None = None,
    *,
    stdio: bool = False,
    mode: str = "legacy",
    transport: Any = None,
    adapters: Mapping[str, Adapter] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Client]:
    """A client session with imagegate serving `env`; its log (stderr) goes to `errlog` when given.

    `stdio=True` starts `python -m imagegate` as a subprocess; otherwise the server runs in this
    process, where `transport`, `adapters`, `sleep` and `clock` reach build_service.
    """
    hooks = (transport, adapters, sleep, clock) != (None, None, None, None)
    if stdio or (FORCE_STDIO and not hooks):
        if hooks:
            raise TypeError("a stdio server takes its whole configuration from env")
        if not FORCE_STDIO:
            require_slow("the server as a subprocess")
        params = StdioServerParameters(command=sys.executable, args=["-m", "imagegate"], env=dict(env))
        connection = stdio_transport(params, errlog=errlog or sys.stderr)
        async with Client(connection, mode=mode, read_timeout_seconds=READ_TIMEOUT) as client:  # type: ignore[arg-type]
            yield client
        return

    def service() -> Service:
        with process_env(env):
            return build_service(env, transport, adapters=adapters, sleep=sleep, clock=clock)

    with server_log(errlog):
        async with Client(create_server(service), mode=mode, read_timeout_seconds=READ_TIMEOUT) as client:  # type: ignore[arg-type]
            yield client


@contextmanager
def process_env(env: Mapping[str, str]) -> Iterator[None]:
    """The variables of PROCESS_ENV as `env` has them, for as long as the block runs."""
    saved = {name: os.environ.get(name) for name in PROCESS_ENV}
    saved_tempdir = tempfile.tempdir
    try:
        for name in PROCESS_ENV:
            _set(name, env.get(name))
        tempfile.tempdir = None  # gettempdir() caches its answer; let it read TMPDIR again
        yield
    finally:
        for name, value in saved.items():
            _set(name, value)
        tempfile.tempdir = saved_tempdir


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextmanager
def server_log(errlog: TextIO | None) -> Iterator[None]:
    """What the server process would print on stderr, written to `errlog` (nothing when None)."""
    if errlog is None:
        yield
        return
    handler = logging.StreamHandler(errlog)
    handler.setLevel(LOG_LEVEL)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(lambda record: not record.name.startswith(NOT_THE_SERVER))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.flush()
