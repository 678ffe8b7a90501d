"""Bytes still arriving (a download, or an image's base64 decoded as its reply streams in),
readable as a file by a worker thread while they arrive: Pillow decodes the image at the same
time as the transfer instead of after it. Plain threading; no dependency.

The reader is a complete binary file (`io.RawIOBase`: read, readinto, readline, peek, seek, tell),
not only the read/seek/tell that the common formats use: `Image.open` tries every plugin until one
accepts the bytes, and several call other methods first (ImImagePlugin calls `readline` on any file
with a newline in its first 100 bytes, as many webp files have), so a partial file object made
Pillow refuse real images (see `io.RawIOBase`; `PIL/Image.py` `open`, `PIL/ImImagePlugin.py`).
A read blocks until all it asks for has arrived (or the transfer ended), as a disk file answers.
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["Incoming"]

PEEK_BYTES = 4096


class Incoming:
    """Bytes in flight: the event loop appends chunks, worker threads read them as a file,
    blocking until what they ask for has arrived."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._complete: bool | None = None  # None while arriving; then True, or False if it failed
        self._changed = threading.Condition()

    def append(self, chunk: bytes) -> None:
        with self._changed:
            self.buffer += chunk
            self._changed.notify_all()

    def end(self, complete: bool) -> None:
        """No more bytes; readers of a failed transfer get an error instead of a truncated file."""
        with self._changed:
            self._complete = complete
            self._changed.notify_all()

    def abandon(self) -> None:
        """End a transfer that is still open as failed (a reply that stopped inside it); no-op once ended."""
        with self._changed:
            if self._complete is None:
                self._complete = False
                self._changed.notify_all()

    def reader(self) -> BinaryIO:
        return _IncomingReader(self)  # type: ignore[return-value]

    def _read(self, start: int, size: int) -> bytes:
        with self._changed:
            self._changed.wait_for(lambda: self._complete is not None or len(self.buffer) >= start + size)
            if self._complete is False:
                raise OSError("the transfer failed")
            with memoryview(self.buffer) as view:
                return bytes(view[start : start + size])

    def _available(self, start: int, most: int) -> bytes:
        """Up to `most` bytes from `start`, waiting only until there is one (or the transfer ended)."""
        with self._changed:
            self._changed.wait_for(lambda: self._complete is not None or len(self.buffer) > start)
            if self._complete is False:
                raise OSError("the transfer failed")
            with memoryview(self.buffer) as view:
                return bytes(view[start : start + most])

    def _length(self) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._complete is not None)
            return len(self.buffer)


class _IncomingReader(io.RawIOBase):
    """A binary file over an `Incoming`, readable from another thread while the bytes arrive."""

    def __init__(self, incoming: Incoming):
        super().__init__()
        self._incoming = incoming
        self._position = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._incoming._length() - self._position)
        data = self._incoming._read(self._position, size)
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view, view.cast("B") as target:
            data = self.read(len(target))
            target[: len(data)] = data
        return len(data)

    def peek(self, size: int = 0) -> bytes:
        """Some of what has arrived from the position on (a byte at least, unless at the end),
        without moving: with it `readline` takes a line at a time instead of a byte at a time."""
        return self._incoming._available(self._position, max(size, PEEK_BYTES))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position}.get(whence)
        self._position = max(0, (self._incoming._length() if base is None else base) + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True
