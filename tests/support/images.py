"""Small real image files and bytes for inputs, and readers for saved images."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

HALF_RED = (200, 30, 30, 128)
"""The fill of an RGBA image: half transparent, so it serves as a mask."""


def image_bytes(
    size: tuple[int, int] = (16, 16), colour: Any = None, mode: str = "RGB", fmt: str = "PNG"
) -> bytes:
    """An encoded image of one colour (default: red, or half-transparent red for RGBA)."""
    out = io.BytesIO()
    Image.new(mode, size, colour if colour is not None else HALF_RED if mode == "RGBA" else "red").save(
        out, fmt
    )
    return out.getvalue()


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> str:
    """A small real image file; RGBA gets a half-transparent fill (a usable mask)."""
    path.write_bytes(image_bytes(size, mode=mode, fmt=fmt))
    return str(path)


def image_file(path: Path, width: int, height: int, fmt: str = "PNG") -> str:
    """A teal image file of the given size and format; its path as a string."""
    path.write_bytes(image_bytes((width, height), "teal", fmt=fmt))
    return str(path)


def data_url(path: str | Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def open_image(path: str | Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


def pixels(image: Mapping[str, Any]) -> tuple[int, int]:
    """The real pixel size of a saved image, given its metadata entry."""
    with Image.open(image["path"]) as saved:
        return saved.size
