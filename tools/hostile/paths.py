"""Paths into a parsed JSON reply: enumerate them, read and replace the value at one, and find the
strings that carry images (base64, data URLs), so faults can aim at any protocol's reply shape.

A path is a tuple of keys and indexes; "*" matches every key or index at its level. Nothing here
touches bytes on the wire.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "IMAGE_MAGIC",
    "Path",
    "as_path",
    "image_format",
    "image_paths",
    "leaf_paths",
    "paths",
    "update",
    "value_at",
]

Path = tuple[str | int, ...]
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"RIFF": "webp", b"GIF8": "gif"}
MIN_IMAGE_CHARS = 64  # shorter base64 strings are ids or hashes, not images


def as_path(path: Path | str) -> Path:
    """A path from a tuple, or from "data.0.b64_json" (numeric parts become indexes)."""
    if isinstance(path, tuple):
        return path
    return tuple(int(part) if part.isdigit() else part for part in path.split(".") if part)


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every path in `value`, parents before children (the root, (), included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def leaf_paths(value: Any) -> list[Path]:
    """The paths of every non-container value."""
    return [p for p in paths(value) if not isinstance(value_at(value, p), (dict, list))]


def value_at(value: Any, path: Path) -> Any:
    """The value at `path` (no wildcards); raises KeyError/IndexError/TypeError when absent."""
    for part in path:
        value = value[part]
    return value


def update(value: Any, path: Path, change: Callable[[Any], Any], create: bool = False) -> tuple[Any, int]:
    """`value` with change(old) at `path` (old is None for a created key); returns it and how many
    places changed. `create` adds a missing last key to an existing object."""
    if not path:
        return change(value), 1
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if head == "*":
            keys: list[Any] = list(value)
        elif head in value or (create and not rest):
            keys = [head]
        else:
            return value, 0
    elif isinstance(value, list):
        if head == "*":
            keys = list(range(len(value)))
        elif isinstance(head, int) and -len(value) <= head < len(value):
            keys = [head]
        else:
            return value, 0
    else:
        return value, 0
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    total = 0
    for key in keys:
        old = copy.get(key) if isinstance(copy, dict) else copy[key]
        copy[key], changed = update(old, rest, change, create)
        total += changed
    return copy, total


def image_format(text: str) -> str | None:
    """ "png", "jpeg", ... when `text` is base64 (or a data URL) of an image; None otherwise."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) < MIN_IMAGE_CHARS:
        return None
    try:
        head = base64.b64decode(text[:64], validate=True)
    except (binascii.Error, ValueError):
        return None
    return next((fmt for magic, fmt in IMAGE_MAGIC.items() if head.startswith(magic)), None)


def image_paths(value: Any) -> list[Path]:
    """Paths of the strings that carry an image inline, in document order."""
    return [p for p in paths(value) if isinstance(v := value_at(value, p), str) and image_format(v)]
