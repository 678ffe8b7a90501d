"""Faults that rewrite a whole reply: a raw replacement, a redirect, deep nesting, and edits at a JSON
path of the upstream's real reply (huge strings, wrong types, extra items, bad images, an echoed key).

Each fault is a small frozen dataclass whose `apply(request, reply)` returns the reply to send (or,
for the byte-level faults in streams.py, a `Delivery`). Faults never do I/O themselves.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from tools.hostile.paths import IMAGE_MAGIC, Path, as_path, image_paths, update
from tools.hostile.wire import Reply, Request

__all__ = [
    "NOT_AN_IMAGE",
    "Chain",
    "DeepNesting",
    "Delivery",
    "EchoCredential",
    "ExtraItems",
    "Fault",
    "HugeString",
    "Mutate",
    "Raw",
    "Redirect",
    "ReplaceImage",
    "WrongType",
    "error_body",
    "spoil_base64",
]

JSON = (("content-type", "application/json"),)
NOT_AN_IMAGE = b"<html><body>this is not an image, it only claims to be one</body></html>\n" * 4
AUTO: Any = object()  # WrongType's default: a value of some other JSON type than the one found


@dataclass(frozen=True)
class Delivery:
    """How to put a reply on the wire when plain framing will not do (see streams.py)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: Callable[[], AsyncIterator[bytes]]  # bytes after the head, framing already applied
    length: int | None = None  # the Content-Length to declare (None: the headers frame the body)
    close: bool = True  # close the socket after the last chunk (else keep serving the connection)
    hold: float = 0.0  # seconds to keep the socket open after the last chunk, until the client leaves


class Fault:
    """Base: turns (request, the upstream's reply) into what the server under test receives."""

    needs_upstream: ClassVar[bool] = True  # False: the emulator is not asked at all

    def apply(self, request: Request, reply: Reply) -> Reply | Delivery:
        raise NotImplementedError


@dataclass(frozen=True)
class Raw(Fault):
    """This exact status, headers and body instead of the upstream's reply."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = JSON
    body: bytes = b""
    needs_upstream: ClassVar[bool] = False

    def apply(self, request: Request, reply: Reply) -> Reply:
        return Reply(self.status, self.headers, self.body)


@dataclass(frozen=True)
class Redirect(Fault):
    """A 30x pointing at `location` (any address: that is the point)."""

    location: str
    status: int = 302
    needs_upstream: ClassVar[bool] = False

    def apply(self, request: Request, reply: Reply) -> Reply:
        return Reply(self.status, (("location", self.location), ("content-type", "text/plain")), b"moved")


@dataclass(frozen=True)
class DeepNesting(Fault):
    """`[` × depth then `]` × depth ("list"), or `{"a":` × depth, 1, `}` × depth ("object")."""

    depth: int = 100_000
    shape: str = "list"
    status: int = 200
    needs_upstream: ClassVar[bool] = False

    def apply(self, request: Request, reply: Reply) -> Reply:
        if self.shape == "list":
            body = b"[" * self.depth + b"]" * self.depth
        else:
            body = b'{"a":' * self.depth + b"1" + b"}" * self.depth
        return Reply(self.status, JSON, body)


@dataclass(frozen=True)
class Mutate(Fault):
    """Any function of (request, reply) → reply."""

    function: Callable[[Request, Reply], Reply]

    def apply(self, request: Request, reply: Reply) -> Reply:
        return self.function(request, reply)


@dataclass(frozen=True)
class Chain(Fault):
    """Several faults in turn; only the last may return a Delivery."""

    faults: tuple[Fault, ...]

    @property
    def needs_upstream(self) -> bool:  # type: ignore[override]
        return any(f.needs_upstream for f in self.faults)

    def apply(self, request: Request, reply: Reply) -> Reply | Delivery:
        result: Reply | Delivery = reply
        for fault in self.faults:
            if isinstance(result, Delivery):
                raise TypeError(f"{type(fault).__name__} cannot follow a byte-level fault")
            result = fault.apply(request, result)
        return result


class _AtPath(Fault):
    """A change to the value at a JSON path of the reply; a reply that is not JSON passes unchanged."""

    path: Path | str
    create: ClassVar[bool] = False
    status: int | None = None

    def change(self, request: Request, old: Any) -> Any:
        raise NotImplementedError

    def apply(self, request: Request, reply: Reply) -> Reply:
        try:
            document = reply.json()
        except ValueError:
            return reply
        changed, count = update(
            document, as_path(self.path), lambda old: self.change(request, old), self.create
        )
        if not count:
            return reply
        edited = reply.with_json(changed)
        return edited if self.status is None else replace(edited, status=self.status)


@dataclass(frozen=True)
class HugeString(_AtPath):
    """A string of `size` × `char` at `path` (created if its object exists)."""

    path: Path | str
    size: int = 1 << 20
    char: str = "x"
    create: ClassVar[bool] = True

    def change(self, request: Request, old: Any) -> Any:
        return self.char * self.size


@dataclass(frozen=True)
class WrongType(_AtPath):
    """`value` at `path`; by default a value of another JSON type than the one there."""

    path: Path | str
    value: Any = AUTO

    def change(self, request: Request, old: Any) -> Any:
        if self.value is not AUTO:
            return self.value
        if isinstance(old, bool) or old is None:
            return {"unexpected": [1]}
        if isinstance(old, str):
            return 12345
        if isinstance(old, (int, float)):
            return "not a number"
        return ["unexpected"] if isinstance(old, dict) else {"unexpected": True}


@dataclass(frozen=True)
class ExtraItems(_AtPath):
    """The array at `path` grown to `total` items by repeating its item at `index`."""

    path: Path | str
    total: int = 10_000
    index: int = 0

    def change(self, request: Request, old: Any) -> Any:
        if not isinstance(old, list) or not old:
            return old
        return old + [old[self.index]] * max(0, self.total - len(old))


@dataclass(frozen=True)
class EchoCredential(_AtPath):
    """The request's own key written into the reply at `path` (created if its object exists)."""

    path: Path | str
    template: str = "echo {key}"
    status: int | None = None
    create: ClassVar[bool] = True

    def change(self, request: Request, old: Any) -> Any:
        return self.template.format(key=request.credential or "")


@dataclass(frozen=True)
class ReplaceImage(Fault):
    """The `index`-th image in the reply spoiled: inline base64/data URL in JSON, or a whole image
    body (a download). Kinds: not_image, invalid (not base64), truncated (half the bytes), empty, or
    `data`: these bytes instead (another format, say, for a wrong mime)."""

    kind: str = "not_image"
    index: int = 0
    path: Path | str | None = None
    data: bytes | None = field(default=None, repr=False)

    def apply(self, request: Request, reply: Reply) -> Reply:
        if any(reply.body.startswith(magic) for magic in IMAGE_MAGIC):
            return replace(reply, body=self._bytes(reply.body))
        try:
            document = reply.json()
        except ValueError:
            return reply
        found = [as_path(self.path)] if self.path is not None else image_paths(document)
        if not -len(found) <= self.index < len(found):
            return reply
        changed, count = update(document, found[self.index], self._text)
        return reply.with_json(changed) if count else reply

    def _bytes(self, image: bytes) -> bytes:
        if self.data is not None:
            return self.data
        return {"truncated": image[: len(image) // 2], "empty": b""}.get(self.kind, NOT_AN_IMAGE)

    def _text(self, old: Any) -> Any:
        if not isinstance(old, str):
            return old
        prefix, sep, text = old.partition(",") if old.startswith("data:") else ("", "", old)
        try:
            image = base64.b64decode(text)
        except (binascii.Error, ValueError):
            image = b""
        spoiled = (
            spoil_base64(text) if self.kind == "invalid" else base64.b64encode(self._bytes(image)).decode()
        )
        return prefix + sep + spoiled


def spoil_base64(text: str) -> str:
    """Not base64 for any decoder: a non-alphabet character, and a length of 4k+1 (as the emulator)."""
    text = text.rstrip("=")
    return "*" + text + "A" * ((1 - len(text)) % 4)


def error_body(message: str, **extra: Any) -> bytes:
    """An OpenAI-shaped error body carrying `message` (tests reach for this one often)."""
    return json.dumps({"error": {"message": message, "type": "server_error", **extra}}).encode()
