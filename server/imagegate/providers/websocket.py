"""The HTTP layer's WebSocket side: one client connection (RFC 6455) for upstreams that report progress
on a socket (ComfyUI's `/ws?clientId=…`). Framing, the opening handshake, ping/pong and the closing
handshake are `wsproto`'s (sans-IO); this module owns the socket, the deadline and the error tree.

Like providers/http.py it is the only place its bytes touch the network: adapters get whole messages
(text or bytes) and never a socket. Every wait is bounded by the client's timeout; a failure becomes an
error of the tree, never a foreign exception. Credentials go only to the provider's own origin.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import UpstreamError, UpstreamTimeout
from .http import ProviderClient

__all__ = ["Message", "WebSocket", "connect"]

Message = str | bytes
"""One whole message: text (a JSON event, for ComfyUI) or bytes (ComfyUI's binary previews)."""
READ_BYTES = 65536
MAX_MESSAGE = 16 * 1024 * 1024
"""A message larger than this is a fault: ComfyUI's biggest are preview images of a few hundred KB."""
CONNECT_TIMEOUT = 5.0


class WebSocket:
    """An open client connection: receive whole messages until the caller has what it waits for."""

    def __init__(self, stream: anyio.abc.ByteStream, connection: WSConnection, provider: str) -> None:
        self._stream = stream
        self._ws = connection
        self._provider = provider
        self._parts: list[str | bytes | bytearray] = []
        self._size = 0
        self._pending: list[Message] = []
        self._closed = False

    async def receive(self) -> Message | None:
        """The next whole message; None once the server closed the connection."""
        while not self._pending:
            if self._closed:
                return None
            await self._read()
        return self._pending.pop(0)

    async def until(self, done: Callable[[Any], bool], on_event: Callable[[Any], Awaitable[None]]) -> Any:
        """Read JSON text messages (binary ones are skipped) until `done(event)`; `on_event` sees each.
        Raises UpstreamError when the server closes the connection first."""
        while (message := await self.receive()) is not None:
            if isinstance(message, bytes):
                continue
            try:
                event = json.loads(message)
            except ValueError:
                continue  # not an event of the protocol; nothing to act on
            await on_event(event)
            if done(event):
                return event
        raise UpstreamError(f"{self._provider} closed its progress socket before the task ended")

    async def _read(self) -> None:
        try:
            data = await self._stream.receive(READ_BYTES)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            data = None
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                await self._handle(event)
        except RemoteProtocolError:
            raise UpstreamError(f"{self._provider} broke the WebSocket protocol") from None
        if data is None:
            self._closed = True

    async def _handle(self, event: Event) -> None:
        if isinstance(event, (TextMessage, BytesMessage)):
            self._parts.append(event.data)
            self._size += len(event.data)
            if self._size > MAX_MESSAGE:
                raise UpstreamError(f"{self._provider} sent a WebSocket message over {MAX_MESSAGE} bytes")
            if event.message_finished:
                joined: Message = (
                    "".join(p for p in self._parts if isinstance(p, str))
                    if isinstance(event, TextMessage)
                    else b"".join(p for p in self._parts if not isinstance(p, str))
                )
                self._pending.append(joined)
                self._parts, self._size = [], 0
        elif isinstance(event, Ping):
            await self._send(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            await self._send(self._ws.send(event.response()))
            self._closed = True

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._closed = True

    async def aclose(self) -> None:
        """Say goodbye if the connection is still open, then drop the socket (never raises)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                if not self._closed:
                    await self._send(self._ws.send(CloseConnection(code=1000)))
            except LocalProtocolError:
                pass
            await self._stream.aclose()


def _address(url: str) -> tuple[str, int, bool, str]:
    """Host, port, TLS and the request target (path and query) of an http(s) or ws(s) URL."""
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname or "", port, secure, target


async def _open(client: ProviderClient, url: str) -> WebSocket:
    provider = client.profile.id
    host, port, secure, target = _address(url)
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    stream: anyio.abc.ByteStream = (
        await anyio.connect_tcp(host, port, tls=True, tls_standard_compatible=False)
        if secure
        else await anyio.connect_tcp(host, port)
    )
    connection = WSConnection(ConnectionType.CLIENT)
    auth = client.profile.auth_headers() if client.profile.trusts(url) else {}
    headers = [(k.lower().encode(), v.encode()) for k, v in auth.items()]
    try:
        await stream.send(connection.send(Request(host=netloc, target=target, extra_headers=headers)))
        while True:
            data = await stream.receive(READ_BYTES)
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, AcceptConnection):
                    return WebSocket(stream, connection, provider)
                if isinstance(event, (RejectConnection, RejectData)):
                    status = getattr(event, "status_code", None)
                    raise UpstreamError(
                        f"{provider} refused the WebSocket upgrade" + (f" (HTTP {status})" if status else ""),
                        provider=provider,
                        status=status,
                    )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        raise


@asynccontextmanager
async def connect(client: ProviderClient, path: str) -> AsyncIterator[WebSocket]:
    """A WebSocket to `path` under the provider's base URL, open for the block; the handshake within
    CONNECT_TIMEOUT (and the client's timeout), failures as UpstreamError / UpstreamTimeout."""
    url = client.url(path)
    provider = client.profile.id
    try:
        with anyio.fail_after(min(CONNECT_TIMEOUT, client.timeout)):
            socket = await _open(client, url)
    except TimeoutError:
        raise UpstreamTimeout(
            f"{provider} did not open its progress socket in time", provider=provider
        ) from None
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, RemoteProtocolError) as e:
        raise UpstreamError(
            f"could not open the progress socket of {provider} ({type(e).__name__})",
            provider=provider,
            retryable=True,
        ) from None
    try:
        yield socket
    finally:
        await socket.aclose()
