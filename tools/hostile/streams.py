"""Faults at the byte level: a reply cut short under its real Content-Length, a drip, an endless (but
self-bounded) body, and a gzip bomb. They return a `Delivery` (or, for the bomb, a tiny Reply).

Every stream here stops by itself after a bounded number of bytes and seconds, so a server that
never gives up cannot take the test machine down with it.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from tools.hostile.faults import JSON, Delivery, Fault
from tools.hostile.wire import Reply, Request, encode_chunk

__all__ = ["Drip", "Endless", "GzipBomb", "Truncate", "gzip_bomb"]

MAX_HOLD = 300.0
BOMB_BLOCK = 1 << 20
IMAGE_PREFIX = b'{"data":[{"b64_json":"'


@dataclass(frozen=True)
class Truncate(Fault):
    """The reply cut at byte `at` (negative: from the end) or at `fraction` of it, while the head still
    declares the full Content-Length; then the socket closes (`close`) or stays open `hold` seconds.
    `honest`: declare the length actually sent instead, a well-framed body whose document is cut off."""

    at: int | None = None
    fraction: float = 0.5
    close: bool = False
    hold: float = 120.0
    honest: bool = False

    def cut(self, size: int) -> int:
        if self.at is not None:
            return max(0, min(size, self.at if self.at >= 0 else size + self.at))
        return max(0, min(size, int(size * self.fraction)))

    def apply(self, request: Request, reply: Reply) -> Delivery:
        sent = reply.body[: self.cut(len(reply.body))]

        async def chunks() -> AsyncIterator[bytes]:
            yield sent

        if self.honest:
            return Delivery(reply.status, reply.headers, chunks, len(sent), close=not request.keep_alive)
        hold = 0.0 if self.close else min(self.hold, MAX_HOLD)
        return Delivery(reply.status, reply.headers, chunks, len(reply.body), close=True, hold=hold)


@dataclass(frozen=True)
class Drip(Fault):
    """The whole reply, correctly framed, at `rate` bytes per second (`chunk` bytes at a time);
    gives up after `seconds`."""

    rate: float = 1.0
    chunk: int = 1
    seconds: float = 120.0

    def apply(self, request: Request, reply: Reply) -> Delivery:
        body, step, pause = reply.body, max(1, self.chunk), max(1, self.chunk) / self.rate
        stop = min(self.seconds, MAX_HOLD)

        async def chunks() -> AsyncIterator[bytes]:
            started = time.monotonic()
            for start in range(0, len(body), step):
                if time.monotonic() - started > stop:
                    return
                yield body[start : start + step]
                await asyncio.sleep(pause)

        return Delivery(reply.status, reply.headers, chunks, len(body), close=not request.keep_alive)


@dataclass(frozen=True)
class Endless(Fault):
    """A 200 whose body never ends: `prefix`, then `fill` forever, chunked (or close-delimited, with no
    length, when not `chunked`). Stops by itself after `total` bytes or `seconds`."""

    chunked: bool = True
    total: int = 1 << 30
    seconds: float = 60.0
    prefix: bytes = IMAGE_PREFIX
    fill: bytes = b"A"
    block: int = 64 * 1024
    status: int = 200
    needs_upstream: ClassVar[bool] = False

    def apply(self, request: Request, reply: Reply) -> Delivery:
        block = (self.fill * (self.block // len(self.fill) + 1))[: self.block]
        frame = encode_chunk if self.chunked else (lambda data: data)

        async def chunks() -> AsyncIterator[bytes]:
            started, sent = time.monotonic(), len(self.prefix)
            yield frame(self.prefix)
            while sent < self.total and time.monotonic() - started < min(self.seconds, MAX_HOLD):
                yield frame(block)
                sent += len(block)
            # bounded on purpose: the body ends unterminated, as a cut-off stream would

        headers = (*JSON, ("transfer-encoding", "chunked")) if self.chunked else JSON
        return Delivery(self.status, headers, chunks, None, close=True)


@dataclass(frozen=True)
class GzipBomb(Fault):
    """`Content-Encoding: gzip`, a small body inflating to `inflated` bytes of a JSON image reply
    (`{"data":[{"b64_json":"AAAA…"}]}`): valid, and enormous once decompressed."""

    inflated: int = 1 << 30
    status: int = 200
    needs_upstream: ClassVar[bool] = False

    def apply(self, request: Request, reply: Reply) -> Reply:
        headers = (*JSON, ("content-encoding", "gzip"))
        return Reply(self.status, headers, gzip_bomb(self.inflated))


@lru_cache(maxsize=4)
def gzip_bomb(inflated: int) -> bytes:
    """A gzip member inflating to exactly `inflated` bytes of JSON (≈1 KB per MB; cached per size).

    After a full flush deflate starts afresh, so every identical 1 MB block compresses to the same
    bytes: one block is compressed once and repeated, and the CRC is updated per block."""
    suffix = b'"}]}'
    fill = max(0, inflated - len(IMAGE_PREFIX) - len(suffix))
    whole, rest = divmod(fill, BOMB_BLOCK)
    block = b"A" * BOMB_BLOCK
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff", deflate.compress(IMAGE_PREFIX)]
    parts.append(deflate.flush(zlib.Z_FULL_FLUSH))
    crc = zlib.crc32(IMAGE_PREFIX)
    if whole:
        once = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
        parts += [once] * whole
        for _ in range(whole):
            crc = zlib.crc32(block, crc)
    tail = b"A" * rest + suffix
    parts += [deflate.compress(tail), deflate.flush(zlib.Z_FINISH)]
    crc = zlib.crc32(tail, crc)
    parts.append(struct.pack("<II", crc & 0xFFFFFFFF, inflated & 0xFFFFFFFF))
    return b"".join(parts)
