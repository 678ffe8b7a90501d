"""HTTP/1.1 framing by hand, so the hostile upstream can break it at will: reading requests from the
server under test, reading the emulator's replies, and writing replies byte by byte.

Owns every byte-level detail (request line, headers, Content-Length, chunked coding). It knows no
faults and no providers; a `Reply` is plain data that faults transform.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "FRAMING",
    "Reply",
    "Request",
    "WireError",
    "encode_chunk",
    "fetch",
    "read_request",
    "reply_head",
]

MAX_HEAD = 64 * 1024
MAX_BODY = 512 * 1024 * 1024  # an edit uploads images; nothing legitimate comes near this
FRAMING = ("content-length", "transfer-encoding", "connection", "keep-alive")
"""Headers that describe framing: dropped from a parsed reply, set again when one is written."""
REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect"}
REASONS |= {308: "Permanent Redirect", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}
CREDENTIAL_HEADERS = ("x-key", "x-goog-api-key", "x-api-key", "api-key")


class WireError(Exception):
    """Raised when a peer's bytes are not HTTP/1.1 we can frame (or exceed our bounds)."""


@dataclass(frozen=True)
class Request:
    """One request from the server under test, body read whole."""

    method: str
    target: str  # path and query, as sent
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def credential(self) -> str | None:
        """The key this request carries: bearer token, a key header, or ?key= in the query."""
        scheme, _, token = (self.header("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        for name in CREDENTIAL_HEADERS:
            if value := self.header(name):
                return value
        keys = parse_qs(urlsplit(self.target).query).get("key")
        return keys[0] if keys else None

    @property
    def keep_alive(self) -> bool:
        return (self.header("connection") or "").lower() != "close"


@dataclass(frozen=True)
class Reply:
    """A whole reply as data: status, headers without framing (unless a fault sets them on purpose), body."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def with_header(self, name: str, value: str) -> Reply:
        kept = tuple((k, v) for k, v in self.headers if k.lower() != name.lower())
        return replace(self, headers=(*kept, (name, value)))

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.body)

    def with_json(self, value: Any) -> Reply:
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return replace(self, body=body).with_header("content-type", "application/json")


@dataclass
class _Head:
    first: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise WireError("connection closed inside a header block") from None
        return None
    except asyncio.LimitOverrunError:
        raise WireError("header block too long") from None
    if len(raw) > MAX_HEAD:
        raise WireError("header block too long")
    first, *lines = raw.decode("latin-1").split("\r\n")
    head = _Head(first)
    for line in filter(None, lines):
        name, sep, value = line.partition(":")
        if not sep:
            raise WireError(f"bad header line {line[:80]!r}")
        head.headers.append((name.strip(), value.strip()))
    return head


async def _read_body(reader: asyncio.StreamReader, head: _Head, until_close: bool) -> bytes:
    if "chunked" in (head.get("transfer-encoding") or "").lower():
        return await _read_chunked(reader)
    if (length := head.get("content-length")) is not None:
        size = int(length)
        if not 0 <= size <= MAX_BODY:
            raise WireError(f"Content-Length {size} out of bounds")
        return await reader.readexactly(size)
    if not until_close:
        return b""
    body = bytearray()
    while chunk := await reader.read(1 << 20):
        body += chunk
        if len(body) > MAX_BODY:
            raise WireError("body too long")
    return bytes(body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await _skip_trailers(reader)
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
        if len(body) > MAX_BODY:
            raise WireError("body too long")


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on a connection, or None when the client closed it cleanly."""
    head = await _read_head(reader)
    if head is None:
        return None
    parts = head.first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise WireError(f"bad request line {head.first[:80]!r}")
    body = await _read_body(reader, head, until_close=False)
    return Request(parts[0], parts[1], tuple(head.headers), body)


async def fetch(host: str, port: int, request: Request, timeout: float = 120.0) -> Reply:
    """Send `request` to the upstream at host:port on a fresh connection and read its whole reply."""
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD * 2)
    try:
        skip = {"host", "accept-encoding", *FRAMING}  # identity bodies only: faults edit them
        headers = [(k, v) for k, v in request.headers if k.lower() not in skip]
        lines = [f"{request.method} {request.target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(request.body)}", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + request.body)
        await writer.drain()
        return await asyncio.wait_for(_read_reply(reader), timeout)
    finally:
        writer.close()


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await _read_head(reader)
    if head is None:
        raise WireError("the upstream closed without a reply")
    status = int(head.first.split(" ")[1])
    body = await _read_body(reader, head, until_close=True)
    headers = tuple((k, v) for k, v in head.headers if k.lower() not in FRAMING)
    return Reply(status, headers, body)


def reply_head(status: int, headers: tuple[tuple[str, str], ...], length: int | None = None) -> bytes:
    """Status line and headers; adds `Content-Length: length` unless `headers` frame the body already."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)
    if length is not None and not framed:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (b"" gives the terminating zero chunk)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
