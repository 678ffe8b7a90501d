"""Base64, and JSON bodies that carry images as base64: the only module that imports pybase64.

An upstream returns a 4K image as ~50 MB of base64 inside a JSON body. `json.loads` would build a
str as large as the payload and the decoder would then read it again: two passes, an extra copy
the size of the body, and a few hundred milliseconds on the event loop. Inside a
`large_payloads()` scope two things change, and adapters see neither (the same JSON shape, the
same `b64decode` calls):

- while a body arrives, a `BodyWatcher` decodes each long bare-base64 string as it streams into an
  `Incoming` buffer, and tells the scope's `on_stream` at once, so the image can be decoded for
  its preview during the transfer;
- `loads` finds each long base64 string (or base64 `data:` URL) in the raw bytes, takes its bytes
  (already decoded, or decoded now from a memoryview) and leaves a short token in its place, which
  `b64decode` turns back into those bytes.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pybase64

from .incoming import Incoming

__all__ = [
    "LARGE_STRING",
    "MAX_DEPTH",
    "BodyWatcher",
    "b64decode",
    "b64encode",
    "large_payloads",
    "loads",
    "plain",
    "watcher",
]

LARGE_STRING = 128 * 1024
MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a reply may have; no upstream's documented reply comes close,
and a body of 100,000 `[` must fail as a malformed reply, not as a RecursionError out of the parser."""
"""Strings at least this long are decoded from the bytes when they are base64; shorter ones parse as usual."""
_DATA_URL = re.compile(rb"data:[\w/+.-]*(?:;[\w=.+-]+)*;base64,")
_TOKEN = "\x00imagegate-payload-{}"
Spans = dict[int, tuple[int, bytearray]]
"""Strings decoded while their body arrived: text start -> (closing quote, decoded bytes)."""


@dataclass
class _Scope:
    on_stream: Callable[[Incoming], None] | None
    payloads: dict[str, bytes | bytearray] = field(default_factory=dict)
    streamed: dict[int, tuple[bytearray, Spans]] = field(default_factory=dict)
    """id(body) -> (the body, its spans), from a watched body until loads takes them."""


_scope: ContextVar[_Scope | None] = ContextVar("imagegate_payloads", default=None)


@contextmanager
def large_payloads(on_stream: Callable[[Incoming], None] | None = None) -> Iterator[None]:
    """While open, long base64 strings are decoded from the bytes (as they arrive, where they are
    bare, each `Incoming` handed to `on_stream` in the event loop); all is freed on exit."""
    reset = _scope.set(_Scope(on_stream))
    try:
        yield
    finally:
        _scope.reset(reset)


def b64encode(data: bytes) -> str:
    return pybase64.b64encode(data).decode("ascii")


def plain(text: str) -> str:
    """A string from a parsed body as the upstream sent it: a payload token (a long base64 string that
    was not an image at all, say a revised prompt) becomes its base64 text again."""
    scope = _scope.get()
    if scope and text.startswith("\x00") and (decoded := scope.payloads.get(text)) is not None:
        return b64encode(bytes(decoded))
    return text


def b64decode(text: str | bytes | memoryview) -> bytes | bytearray:
    """Strict base64 (a corrupt payload is an error, not garbage); line breaks are tolerated.

    Raises ValueError (binascii.Error is one) when `text` is not base64.
    """
    scope = _scope.get()
    if scope and isinstance(text, str) and (decoded := scope.payloads.get(text)) is not None:
        return decoded
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        stripped = re.sub(r"\s+", "", text) if isinstance(text, str) else re.sub(rb"\s+", b"", bytes(text))
        if len(stripped) == len(text):
            raise ValueError("not base64") from None
        return pybase64.b64decode(stripped, validate=True)


def watcher() -> BodyWatcher | None:
    """A watcher for the body about to arrive, inside a `large_payloads()` scope."""
    scope = _scope.get()
    return BodyWatcher(scope) if scope is not None else None


class BodyWatcher:
    """Follows a JSON body as it grows and decodes each long bare-base64 string while it streams.

    Only strings matter, and in JSON a quote outside a string always opens one, so walking from
    quote to unescaped quote with `find` (C speed) sees every string without parsing anything else.
    A string with a backslash, a `data:` prefix or a character base64 does not have is left to `loads`.
    """

    def __init__(self, scope: _Scope):
        self._scope = scope
        self._position = 0  # the next byte to look at
        self._start: int | None = None  # where the text of the open string starts; None between strings
        self._bare = True  # the open string has been plain base64 so far
        self._live: Incoming | None = None
        self._decoded = 0  # characters of the open string decoded into _live
        self._spans: Spans = {}

    def feed(self, body: bytearray) -> None:
        """Look at what has been appended to `body` since the last call."""
        while True:
            if self._start is None:
                quote = body.find(b'"', self._position)
                if quote < 0:
                    self._position = len(body)
                    return
                self._start, self._position, self._bare, self._decoded = quote + 1, quote + 1, True, 0
            quote = body.find(b'"', self._position)
            end = quote if quote >= 0 else len(body)
            if self._bare and body.find(b"\\", self._position, end) >= 0:
                self._drop()
            if self._bare:
                self._stream(body, end, closed=quote >= 0)
            if quote < 0:
                self._position = len(body)
                return
            self._position = quote + 1
            if self._bare or not _escaped(body, quote):
                if self._live is not None:
                    self._live.end(complete=True)
                    self._spans[self._start] = (quote, self._live.buffer)
                    self._live = None
                self._start = None

    def done(self, body: bytearray) -> None:
        """The body is complete: `loads` will take the decoded strings from the scope. A string still
        open is cut off (a body that ends inside it): its readers get an error, never a wait."""
        self._drop()
        if self._spans:
            self._scope.streamed[id(body)] = (body, self._spans)

    def fail(self) -> None:
        """The transfer broke off: a string still streaming ends as failed (its readers get an error)."""
        self._drop()

    def _stream(self, body: bytearray, end: int, closed: bool) -> None:
        assert self._start is not None
        length = end - self._start
        if self._live is None:
            if length < LARGE_STRING:
                return
            if body.startswith(b"data:", self._start, end):
                self._bare = False
                return
            self._live = Incoming()
            if self._scope.on_stream is not None:
                self._scope.on_stream(self._live)
        upto = length if closed else length - length % 4  # whole 4-character groups until the end
        if upto > self._decoded:
            try:
                self._live.append(
                    pybase64.b64decode(body[self._start + self._decoded : self._start + upto], validate=True)
                )
            except (binascii.Error, ValueError):
                self._drop()
                return
            self._decoded = upto

    def _drop(self) -> None:
        self._bare = False
        if self._live is not None:
            self._live.end(complete=False)
            self._live = None


def loads(content: bytes | bytearray, payloads: bool = True) -> Any:
    """`json.loads`, nested at most MAX_DEPTH deep; inside a `large_payloads()` scope (unless not
    `payloads`), long base64 strings come out as tokens.

    Raises ValueError for anything that is not such a document (UnicodeDecodeError is one).
    """
    scope = _scope.get() if payloads else None
    if scope is not None and len(content) >= LARGE_STRING:
        watched = scope.streamed.pop(id(content), None)
        spans = watched[1] if watched is not None and watched[0] is content else {}
        content = _extract(content, scope.payloads, spans)
    try:
        value = json.loads(content)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if _too_deep(value):
        raise ValueError(f"nested more than {MAX_DEPTH} deep")
    return value


def _too_deep(value: Any) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH (walked without recursion)."""
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH + 1):
        level = [
            child
            for node in level
            if isinstance(node, (list, dict))
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return any(isinstance(node, (list, dict)) for node in level)


def _extract(raw: bytes | bytearray, payloads: dict[str, bytes | bytearray], spans: Spans) -> bytes | bytearray:
    """The body with every long base64 string replaced by a token; the bytes go in `payloads`."""
    body = memoryview(raw)
    parts: list[bytes | memoryview] = []
    kept = position = 0
    while (start := raw.find(b'"', position)) >= 0:
        end = _string_end(raw, start + 1)
        if end < 0:
            break  # unterminated: json.loads says so
        streamed = spans.get(start + 1)
        found: tuple[bytes, bytes | bytearray] | None = (
            (b"", streamed[1]) if streamed and streamed[0] == end else None
        )
        if found or (end - start > LARGE_STRING and (found := _decode(raw, start + 1, end)) is not None):
            prefix, data = found
            token = _TOKEN.format(len(payloads))
            payloads[token] = data
            parts += [body[kept : start + 1], prefix, json.dumps(token)[1:-1].encode()]
            kept = end
        position = end + 1
    if not parts:
        return raw  # nothing replaced: no copy of the whole body
    parts.append(body[kept:])
    return b"".join(parts)


def _escaped(raw: bytes | bytearray, quote: int) -> bool:
    """Whether the quote at `quote` is escaped (an odd run of backslashes before it)."""
    backslashes = 0
    while raw[quote - 1 - backslashes] == 0x5C:  # the opening quote stops the walk
        backslashes += 1
    return backslashes % 2 == 1


def _string_end(raw: bytes | bytearray, position: int) -> int:
    """The index of the quote that closes the string whose text starts at `position` (-1: none)."""
    while (quote := raw.find(b'"', position)) >= 0:
        if not _escaped(raw, quote):
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
