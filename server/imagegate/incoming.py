"""Bytes still arriving (a download, or an image's base64 decoded as its reply streams in),
readable as a file by a worker thread while they arrive: Pillow decodes the image at the same
time as the transfer instead of after it. Plain threading; no dependency.
"""

from __future__ import annotations

import io
import threading
from typing import BinaryIO

__all__ = ["Incoming"]


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

    def _length(self) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._complete is not None)
            return len(self.buffer)


class _IncomingReader:
    """The read/seek/tell that Pillow uses, over an `Incoming`."""

    def __init__(self, incoming: Incoming):
        self._incoming = incoming
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._incoming._length() - self._position
        data = self._incoming._read(self._position, size)
        self._position += len(data)
        return data

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
