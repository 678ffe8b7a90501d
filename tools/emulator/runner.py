"""Running the emulator: uvicorn in a background thread or a subprocess, and a client for its control API.

Owns every uvicorn detail, including the connection tracking that lets the `drop_connection` fault close a
socket without a reply (ASGI has no such operation). Clients reach a running emulator only over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from tools.emulator.core import ABORT_KEY, base_path, create_app

__all__ = ["ControlError", "EmulatorClient", "build_server", "server_url", "start_subprocess", "start_thread"]

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0
READY_LINE = "EMULATOR"

# (server address, client address) → transport of each open connection, across all emulators in this process.
_TRANSPORTS: dict[tuple[Any, Any], asyncio.BaseTransport] = {}


class TrackingProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, remembering each connection's transport by its addresses."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        _TRANSPORTS[(self.server, self.client)] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        _TRANSPORTS.pop((self.server, self.client), None)
        super().connection_lost(exc)


def _with_abort(app: ASGIApp) -> ASGIApp:
    """Give each HTTP request a scope[ABORT_KEY] that closes its connection at once."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        transport = _TRANSPORTS.get((scope.get("server"), scope.get("client")))
        if transport is not None:
            scope[ABORT_KEY] = transport.abort  # type: ignore[attr-defined]
        await app(scope, receive, send)

    return wrapped


def build_server(
    host: str, port: int, log_level: str = "warning", own_logging: bool = True
) -> tuple[uvicorn.Server, socket.socket]:
    """A uvicorn server for a fresh emulator app, and its socket, already listening (port 0 → a free one)."""
    sock = _listen(host, port)
    config = uvicorn.Config(
        _with_abort(create_app()),
        http=TrackingProtocol,
        lifespan="off",
        access_log=False,
        log_level=log_level,
        log_config=LOGGING_CONFIG if own_logging else None,  # in a test process, leave its logging alone
    )
    return uvicorn.Server(config), sock


class ControlError(RuntimeError):
    """Raised when the control API refuses a call (unknown provider, endpoint, fault kind or setting)."""


class EmulatorClient:
    """A running emulator: its URL, and one method per control-API call."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxies

    def base_url(self, provider: str) -> str:
        """The base URL imagegate should use for `provider`, e.g. http://127.0.0.1:PORT/openai/v1."""
        return self.url + base_path(provider)

    def fault(self, provider: str, endpoint: str, kind: str, count: int = 1, **params: Any) -> int:
        """Queue a fault for the next `count` requests to `endpoint` ("*": any); return the queue length."""
        body = {"provider": provider, "endpoint": endpoint, "kind": kind, "count": count, **params}
        return int(self._call("POST", "/_emulator/faults", body)["queued"])

    def configure(self, provider: str | None = None, **settings: Any) -> dict[str, Any]:
        """Global (`latency`) or per-provider settings (`keys`, `latency`, `models`, `url_ttl`)."""
        body = settings if provider is None else {"provider": provider, **settings}
        return dict(self._call("POST", "/_emulator/config", body))

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first, optionally for one provider."""
        records: list[dict[str, Any]] = self._call("GET", "/_emulator/requests")
        return [record for record in records if provider in (None, record["provider"])]

    def files(self) -> dict[str, int]:
        """Download counters for served image URLs."""
        return dict(self._call("GET", "/_emulator/files"))

    def control(self, provider: str, route: str, **body: Any) -> Any:
        """POST to a provider's own control route (/<provider>/_emulator/<route>: BFL and DashScope
        tasks, Gemini outcomes) and return its JSON answer."""
        return self._call("POST", f"/{provider}/_emulator/{route}", body)

    def reset(self) -> None:
        """Defaults again: no faults, empty log, no files."""
        self._call("POST", "/_emulator/reset", {})

    def prewarm(self, sizes: Iterable[str], formats: Iterable[str] = ("png",)) -> None:
        """Render these "WxH" sizes now, in the emulator's process."""
        self._call("POST", "/_emulator/prewarm", {"sizes": list(sizes), "formats": list(formats)})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data, {"content-type": "application/json"}, method=method
        )
        try:
            with self._opener.open(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                raise ControlError(error.read().decode(errors="replace")) from None


@contextmanager
def start_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[EmulatorClient]:
    """Serve a fresh emulator from a background thread of this process until the block ends."""
    server, sock = build_server(host, port, own_logging=False)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="emulator", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator thread did not start")
            time.sleep(0.005)
        yield EmulatorClient(server_url(sock))
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT)
        sock.close()


@contextmanager
def start_subprocess(
    host: str = "127.0.0.1", port: int = 0, log_level: str = "warning", env: dict[str, str] | None = None
) -> Iterator[EmulatorClient]:
    """Serve a fresh emulator from `python -m tools.emulator` until the block ends (`env` adds variables)."""
    command = [
        sys.executable,
        "-m",
        "tools.emulator",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        log_level,
    ]
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    child_env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(paths)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().split()
            if line[:1] != [READY_LINE]:
                raise RuntimeError(f"the emulator did not start (exit code {process.poll()})")
            yield EmulatorClient(line[1])
        finally:
            process.terminate()
            try:
                process.wait(SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()


def _listen(host: str, port: int) -> socket.socket:
    # Spell out proto=IPPROTO_TCP (getaddrinfo does; socket.create_server leaves 0): asyncio sets TCP_NODELAY
    # on accepted sockets only then, and without it each keep-alive reply waits ~40 ms on delayed ACKs.
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    if os.name == "posix":  # as socket.create_server does: on Windows it would let others steal the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(socket.SOMAXCONN)
    return sock


def server_url(sock: socket.socket) -> str:
    """The http:// URL of a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
