"""The trap: a listener on loopback addresses other than 127.0.0.1 (127.0.0.2 by default) that records
every connection made to it, to prove the server never fetched a URL it must refuse.

Owns only accepting and recording; it answers any request with a small valid PNG, so a server that
does fetch it visibly saves an image from the wrong place.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

__all__ = ["Hit", "Trap", "start_trap"]

STARTUP_TIMEOUT = 15.0
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Hit:
    """One connection to the trap: where it landed, from where, when, and its first bytes."""

    address: str
    peer: str
    time: float
    first_bytes: bytes


class Trap:
    """A running trap: the port it listens on (the same on every address) and what reached it."""

    def __init__(self, addresses: Sequence[str], port: int) -> None:
        self.addresses = tuple(addresses)
        self.port = port
        self._hits: list[Hit] = []
        self._lock = threading.Lock()

    def url(self, path: str = "/image.png", address: str | None = None) -> str:
        """http://<address>:<port><path> for the first address unless one is named."""
        return f"http://{address or self.addresses[0]}:{self.port}{path}"

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        local, peer = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        first = b""
        with suppress(Exception):
            first = await asyncio.wait_for(reader.read(2048), 2.0)
        with self._lock:
            self._hits.append(Hit(str(local[0]), f"{peer[0]}:{peer[1]}", time.time(), first))
        head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(PNG)}\r\n"
        head += "Connection: close\r\n\r\n"
        with suppress(Exception):
            writer.write(head.encode() + PNG)
            await writer.drain()
        writer.close()


@contextmanager
def start_trap(addresses: Sequence[str] = ("127.0.0.2",), port: int = 0) -> Iterator[Trap]:
    """Listen on every address (loopback only, same port) from a background thread until the block ends."""
    if not addresses or any(not a.startswith("127.") or a == "127.0.0.1" for a in addresses):
        raise ValueError("the trap listens on loopback addresses other than 127.0.0.1 only")
    ready, state = threading.Event(), {}

    async def main() -> None:
        servers = []
        chosen = port
        holder: list[Trap] = []
        for address in addresses:
            server = await asyncio.start_server(lambda r, w: holder[0].serve(r, w), address, chosen)
            chosen = server.sockets[0].getsockname()[1]
            servers.append(server)
        holder.append(Trap(addresses, chosen))
        stop = asyncio.Event()
        state.update(trap=holder[0], stop=stop, loop=asyncio.get_running_loop())
        ready.set()
        await stop.wait()
        for server in servers:
            server.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="trap", daemon=True)
    thread.start()
    if not ready.wait(STARTUP_TIMEOUT):
        raise RuntimeError("the trap did not start")
    try:
        yield state["trap"]  # type: ignore[misc]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)
