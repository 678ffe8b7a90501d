"""Readers for the parts of a tool result: its text, the JSON metadata line, the error in `_meta`,
previews, and the sidecars of the images it saved."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

ERROR_META = "io.imagegate/error"


def text_of(result: Any) -> str:
    return "\n".join(b.text for b in result.content if getattr(b, "type", "") == "text")


def metadata(result: Any) -> dict[str, Any]:
    """The compact JSON object that ends the text block."""
    return dict(json.loads(text_of(result).splitlines()[-1]))


def meta_of(result: Any) -> dict[str, Any]:
    """A success's metadata (the call must have succeeded)."""
    assert not result.is_error, text_of(result)
    return metadata(result)


def summary_lines(result: Any) -> list[str]:
    """The human summary: the text block without its final JSON line."""
    return text_of(result).splitlines()[:-1]


def error_of(result: Any) -> dict[str, Any]:
    """An error's `_meta` detail (the call must have failed)."""
    assert result.is_error, text_of(result)
    return dict(result.meta[ERROR_META])


def kind_of(result: Any) -> str:
    """An error's kind (the call must have failed)."""
    return str(error_of(result)["kind"])


def error_kind(result: Any) -> str | None:
    """The error kind in `_meta`, or None for a success."""
    return ((result.meta or {}).get(ERROR_META) or {}).get("kind")


def blocks(result: Any, kind: str) -> list[Any]:
    return [b for b in result.content if b.type == kind]


def decoded_previews(result: Any) -> list[tuple[bytes, Image.Image]]:
    """Each preview block's raw bytes and decoded image (checked to match its declared mime)."""
    previews = []
    for block in blocks(result, "image"):
        data = base64.b64decode(block.data, validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
        assert Image.MIME[image.format] == block.mime_type
        previews.append((data, image))
    return previews


def sizes_of(meta: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Each saved image's real pixel size, checked against what the metadata says."""
    found = []
    for entry in meta["images"]:
        with Image.open(entry["path"]) as image:
            assert (image.width, image.height) == (entry["width"], entry["height"])
            found.append(image.size)
    return found


def sidecar_of(image: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The sidecar of a saved image, given its path or its metadata entry."""
    path = Path(image["path"] if isinstance(image, Mapping) else image)
    return dict(json.loads(path.with_suffix(".json").read_text()))
