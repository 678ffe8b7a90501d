"""Image bytes for the emulator: deterministic pictures of a given size and format, and a probe for uploads.

Owns every Pillow call in the emulator. Rendered images are cached per (size, format, transparency) so
benchmarks measure the server under test, not Pillow; nothing here knows HTTP or any wire protocol.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

__all__ = ["FORMATS", "ImageInfo", "prewarm", "probe", "render"]

# output_format → (Pillow format name, MIME type).
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
CACHE_SIZE = 128
TEXTURE = os.environ.get("IMAGEGATE_EMULATOR_TEXTURE", "smooth")
"""'noise' adds photo-like grain, so PNGs weigh what real results weigh (benchmarks); 'smooth' is cheap."""


@dataclass(frozen=True)
class ImageInfo:
    """What an uploaded file turned out to be once decoded."""

    format: str  # Pillow's name: "PNG", "JPEG", "WEBP", ...
    width: int
    height: int
    has_alpha: bool


@lru_cache(maxsize=CACHE_SIZE)
def render(width: int, height: int, fmt: str = "png", transparent: bool = False) -> bytes:
    """A gradient with "WxH" drawn on it, encoded as `fmt`; RGBA when `transparent` (not for jpeg)."""
    size = (width, height)
    ramp = Image.linear_gradient("L")
    picture = Image.merge("RGB", (ramp.resize(size), ramp.rotate(90).resize(size), Image.new("L", size, 160)))
    if TEXTURE == "noise":
        grain = Image.merge("RGB", [Image.effect_noise(size, 48 + 8 * band) for band in range(3)])
        picture = Image.blend(picture, grain, 0.35)
    if transparent and fmt != "jpeg":
        picture.putalpha(ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM).resize(size))
    font = ImageFont.load_default(size=max(10, min(width, height) // 8))
    ImageDraw.Draw(picture).text(
        (width / 2, height / 2),
        f"{width}x{height}",
        fill="white",
        anchor="mm",
        font=font,
        stroke_width=2,
        stroke_fill="black",
    )
    buffer = io.BytesIO()
    picture.save(buffer, format=FORMATS[fmt][0])
    return buffer.getvalue()


def prewarm(sizes: Iterable[str], formats: Iterable[str] = ("png",)) -> None:
    """Render each "WxH" size in each format now, so the first request does not pay for it."""
    for size in sizes:
        width, height = (int(edge) for edge in size.lower().split("x"))
        for fmt in formats:
            render(width, height, fmt)


def probe(data: bytes) -> ImageInfo | None:
    """Decode `data` fully; None when it is not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            alpha = image.mode in ALPHA_MODES or "transparency" in image.info
            return ImageInfo(image.format or "", image.width, image.height, alpha)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
