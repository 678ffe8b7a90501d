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
  (already decoded, or decoded now from a memoryview) and hands it over as a `Payload` where the
  string was. A `Payload` is not a str: only image fields (`providers.base.Encoded`) take one, and a
  text field gets the original text back (`Payload.text()`), so no token ever reaches a result.
  Its bytes live until the scope ends.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
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
    "Payload",
    "b64decode",
    "b64encode",
    "large_payloads",
    "plain",
    "loads",
    "textual",
    "watcher",
]

LARGE_STRING = 128 * 1024
"""Strings at least this long are decoded from the bytes when they are base64; shorter ones parse as usual."""
MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a reply may have; no upstream's documented reply comes close,
and a body of 100,000 `[` must fail as a malformed reply, not as a RecursionError out of the parser."""
_DATA_URL = re.compile(rb"data:[\w/+.-]*(?:;[\w=.+-]+)*;base64,")
_MIME = re.compile(r"^data:([\w/+.-]+)")
_TOKEN = "\x00imagegate-payload-{}-{}"
"""Where a payload stood while `json.loads` ran: one nonce per body, so no upstream can forge one."""
Spans = dict[int, tuple[int, bytearray]]
"""Strings decoded while their body arrived: text start -> (closing quote, decoded bytes)."""


@dataclass
class _Scope:
    on_stream: Callable[[Incoming], None] | None
    payloads: list[bytes | bytearray] = field(default_factory=list)
    open: bool = True
    streamed: dict[int, tuple[bytearray, Spans]] = field(default_factory=dict)
    """id(body) -> (the body, its spans), from a watched body until loads takes them."""


_scope: ContextVar[_Scope | None] = ContextVar("imagegate_payloads", default=None)


@contextmanager
def large_payloads(on_stream: Callable[[Incoming], None] | None = None) -> Iterator[None]:
    """While open, long base64 strings are decoded from the bytes (as they arrive, where they are
    bare, each `Incoming` handed to `on_stream` in the event loop); all is freed on exit."""
    scope = _Scope(on_stream)
    reset = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(reset)
        scope.open = False
        scope.payloads.clear()  # a Payload that outlives its scope owns no bytes


@dataclass(frozen=True, slots=True, eq=False)
class Payload:
    """A long base64 string of a parsed body (or the base64 of a `data:` URL), already decoded.

    Not a str, so nothing can take it for text by mistake: image fields accept it, and `text()`
    gives back the string as the upstream sent it where it was text after all (a revised prompt).
    """

    _scope: _Scope = field(repr=False)
    _index: int
    prefix: str = ""
    """A `data:` URL's head ("data:image/png;base64,"), or "" for bare base64."""

    def data(self) -> bytes | bytearray:
        """The decoded bytes (those that streamed in, not a copy); ValueError once the scope has ended."""
        if not self._scope.open:
            raise ValueError("the payload's scope has ended")
        return self._scope.payloads[self._index]

    @property
    def mime(self) -> str | None:
        """The media type a `data:` URL names."""
        match = _MIME.match(self.prefix)
        return match[1] if match else None

    def text(self) -> str:
        """The string as it stood in the body (re-encoded: only for what turned out to be text)."""
        return self.prefix + b64encode(bytes(self.data()))


def b64encode(data: bytes) -> str:
    return pybase64.b64encode(data).decode("ascii")


def plain(text: str | Payload) -> str:
    """A string from a parsed body as the upstream sent it. Wire models already turn a `Payload` in a
    text field back into its text, so this only matters for a value that skipped them (the error reader)."""
    return text.text() if isinstance(text, Payload) else text


def textual(value: Any) -> Any:
    """`value` (a JSON value) with every `Payload` in it turned back into its text."""
    if isinstance(value, Payload):
        return value.text()
    if isinstance(value, dict):
        return {key: textual(item) for key, item in value.items()}
    if isinstance(value, list):
        return [textual(item) for item in value]
    return value


def b64decode(text: str | bytes | memoryview) -> bytes | bytearray:
    """Strict base64 (a corrupt payload is an error, not garbage); line breaks are tolerated.

    Raises ValueError (binascii.Error is one) when `text` is not base64.
    """
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
    `payloads`), long base64 strings come out as `Payload`s.

    Raises ValueError for anything that is not such a document (UnicodeDecodeError is one).
    """
    scope = _scope.get() if payloads else None
    found: dict[str, Payload] = {}
    if scope is not None and len(content) >= LARGE_STRING:
        watched = scope.streamed.pop(id(content), None)
        spans = watched[1] if watched is not None and watched[0] is content else {}
        content = _extract(content, scope, spans, found)
    try:
        value = json.loads(content)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if _too_deep(value):
        raise ValueError(f"nested more than {MAX_DEPTH} deep")
    return _placed(value, found) if found else value


def _placed(value: Any, found: dict[str, Payload]) -> Any:
    """The document with each token replaced by its Payload (in place, walked without recursion)."""
    if isinstance(value, str):
        return found.get(value, value)
    level: list[Any] = [value]
    while level:
        nested: list[Any] = []
        for node in level:
            if isinstance(node, dict) and any(key in found for key in node):
                # A key is text whatever it looks like (a long base64 key is absurd, not an image).
                renamed = {found[key].text() if key in found else key: item for key, item in node.items()}
                node.clear()
                node.update(renamed)
            keys = list(node) if isinstance(node, dict) else range(len(node))
            for key in keys:
                item = node[key]
                if isinstance(item, str):
                    if item in found:
                        node[key] = found[item]
                elif isinstance(item, (dict, list)):
                    nested.append(item)
        level = nested
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


def _extract(
    raw: bytes | bytearray, scope: _Scope, spans: Spans, payloads: dict[str, Payload]
) -> bytes | bytearray:
    """The body with every long base64 string replaced by a token; its Payload goes in `payloads`."""
    nonce = secrets.token_hex(8)
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
            token = _TOKEN.format(nonce, len(scope.payloads))
            payloads[token] = Payload(scope, len(scope.payloads), prefix.decode("ascii"))
            scope.payloads.append(data)
            parts += [body[kept : start + 1], json.dumps(token)[1:-1].encode()]
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
