"""Base64, and JSON bodies that carry images as base64: the only module that imports pybase64.

An upstream returns a 4K image as ~50 MB of base64 inside a JSON body. `json.loads` would build a
str as large as the payload and the decoder would then read it again: two passes, an extra copy
the size of the body, and a few hundred milliseconds on the event loop. Inside a
`large_payloads()` scope, `loads` instead finds each long base64 string (or base64 `data:` URL)
in the raw bytes, decodes it from there and leaves a short token in its place, which
`b64decode` turns back into the bytes. Adapters see the same JSON shape and call `b64decode`
the same way, inside the scope or not.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import pybase64

__all__ = ["LARGE_STRING", "b64decode", "b64encode", "large_payloads", "loads"]

LARGE_STRING = 128 * 1024
"""Strings at least this long are decoded from the bytes when they are base64; shorter ones parse as usual."""
_DATA_URL = re.compile(rb"data:[\w/+.-]*(?:;[\w=.+-]+)*;base64,")
_TOKEN = "\x00imagegate-payload-{}"
_payloads: ContextVar[dict[str, bytes] | None] = ContextVar("imagegate_payloads", default=None)


@contextmanager
def large_payloads() -> Iterator[None]:
    """While open, `loads` decodes long base64 strings straight from the bytes; they are freed on exit."""
    reset = _payloads.set({})
    try:
        yield
    finally:
        _payloads.reset(reset)


def b64encode(data: bytes) -> str:
    return pybase64.b64encode(data).decode("ascii")


def b64decode(text: str | bytes | memoryview) -> bytes:
    """Strict base64 (a corrupt payload is an error, not garbage); line breaks are tolerated.

    Raises ValueError (binascii.Error is one) when `text` is not base64.
    """
    payloads = _payloads.get()
    if payloads and isinstance(text, str) and (decoded := payloads.get(text)) is not None:
        return decoded
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        stripped = re.sub(r"\s+", "", text) if isinstance(text, str) else re.sub(rb"\s+", b"", bytes(text))
        if len(stripped) == len(text):
            raise ValueError("not base64") from None
        return pybase64.b64decode(stripped, validate=True)


def loads(content: bytes | bytearray) -> Any:
    """`json.loads`; inside a `large_payloads()` scope, long base64 strings come out as tokens."""
    payloads = _payloads.get()
    if payloads is None or len(content) < LARGE_STRING:
        return json.loads(content)
    return json.loads(_extract(content, payloads))


def _extract(raw: bytes | bytearray, payloads: dict[str, bytes]) -> bytes:
    """The body with every long base64 string replaced by a token; the decoded bytes go in `payloads`.

    Only strings matter, and in JSON a quote outside a string always opens one, so walking from
    quote to unescaped quote with `find` (C speed) sees every string without parsing anything else.
    """
    body = memoryview(raw)
    parts: list[bytes | memoryview] = []
    kept = position = 0
    while (start := raw.find(b'"', position)) >= 0:
        end = _string_end(raw, start + 1)
        if end < 0:
            break  # unterminated: json.loads says so
        if end - start > LARGE_STRING and (found := _decode(raw, start + 1, end)) is not None:
            prefix, data = found
            token = _TOKEN.format(len(payloads))
            payloads[token] = data
            parts += [body[kept : start + 1], prefix, json.dumps(token)[1:-1].encode()]
            kept = end
        position = end + 1
    parts.append(body[kept:])
    return b"".join(parts)


def _string_end(raw: bytes | bytearray, position: int) -> int:
    """The index of the quote that closes the string whose text starts at `position` (-1: none)."""
    while (quote := raw.find(b'"', position)) >= 0:
        backslashes = 0
        while raw[quote - 1 - backslashes] == 0x5C:  # a backslash; the opening quote stops the walk
            backslashes += 1
        if backslashes % 2 == 0:
            return quote
        position = quote + 1
    return -1


def _decode(raw: bytes | bytearray, start: int, end: int) -> tuple[bytes, bytes] | None:
    """(the `data:` prefix or b"", decoded bytes) when raw[start:end] is base64, else None."""
    prefix = b""
    if raw.startswith(b"data:", start, end):
        match = _DATA_URL.match(raw, start, min(end, start + 256))
        if match is None:
            return None
        prefix, start = match.group(), match.end()
    text: bytes | bytearray | memoryview = memoryview(raw)[start:end]
    if raw.find(b"\\", start, end) >= 0:
        # The only escape base64 can carry is "\/" (PHP's json_encode); anything else parses as usual.
        text = raw[start:end].replace(b"\\/", b"/")
        if b"\\" in text:
            return None
    try:
        return prefix, pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
