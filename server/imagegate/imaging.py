"""Image inspection and previews: the only module that imports Pillow.

Everything here is synchronous and CPU-bound; callers run it in a worker thread
(`anyio.to_thread.run_sync`) so decoding never blocks the event loop. Pillow is imported
on first use, which keeps server start-up fast. An image can be read from bytes or from an
`Incoming` reader while the bytes are still arriving, so decoding overlaps the transfer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "MAX_INPUT_PIXELS",
    "ImageInfo",
    "NotAnImage",
    "Preview",
    "PreviewPolicy",
    "draw_placeholder",
    "make_preview",
    "probe",
]

MAX_INPUT_PIXELS = 8192 * 8192
"""Decompression-bomb cap: nothing larger is decoded, from an agent or from an upstream."""
QUALITY_LADDER = (80, 72, 64, 56)
MIN_PREVIEW_EDGE = 64
MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
EXTENSION = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
}


Source = bytes | bytearray | BinaryIO
"""Image bytes in hand, or a file-like reader (an `Incoming`'s)."""


class NotAnImage(ValueError):
    """Raised when bytes do not decode as a supported image, or exceed the pixel cap."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What a file really is, read from its bytes (never from its name)."""

    mime: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSION.get(self.mime, "bin")


@dataclass(frozen=True, slots=True)
class Preview:
    """A small inline rendition of a saved image (JPEG, or PNG when transparency was asked for)."""

    data: bytes
    mime: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PreviewPolicy:
    """How the previews of one result are made: caps per image, one byte budget for all of them
    (raw; about 96 KiB once base64-encoded, which is what a client receives and counts)."""

    max_edge: int
    max_bytes: int
    total_bytes: int = 72 * 1024
    min_bytes: int = 6 * 1024

    def plan(self, n: int) -> tuple[int, int]:
        """How many of n images get a preview, and the byte budget of each."""
        shown = min(n, self.total_bytes // self.min_bytes)
        return shown, min(self.max_bytes, self.total_bytes // max(shown, 1))


def _open(source: Source) -> PILImage.Image:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source)
        if image.width * image.height > MAX_INPUT_PIXELS:
            raise NotAnImage(f"is {image.width}x{image.height}, over the {MAX_INPUT_PIXELS}-pixel cap")
        return image
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise NotAnImage(f"has too many pixels ({e})") from None
    except Exception as e:  # Pillow raises many types for bad input; all mean "not an image"
        raise NotAnImage(f"does not decode as an image ({type(e).__name__})") from None


def probe(data: Source, verify: bool = True) -> ImageInfo:
    """Identify an image from its bytes: its real type and pixel size.

    With `verify`, the file's structure is checked without decoding pixels (PNG chunk CRCs and
    completeness), so a truncated or corrupt image is refused at a fraction of a decode's cost.
    """
    image = _open(data)
    mime = MIME.get(image.format or "")
    if mime is None:
        raise NotAnImage(f"unsupported image format {image.format}")
    info = ImageInfo(mime=mime, width=image.width, height=image.height)
    if verify:
        try:
            image.verify()
        except Exception as e:
            raise NotAnImage(f"is truncated or corrupt ({type(e).__name__})") from None
        if image.format == "JPEG" and not _jpeg_ends(data):  # Pillow's verify checks nothing in a JPEG
            raise NotAnImage("is a truncated JPEG (its last scan has no end marker)")
    return info


JPEG_TAIL = 64 * 1024


def _jpeg_ends(data: Source) -> bool:
    """Whether a JPEG's end-of-image marker follows its last scan. Inside scan data a 0xFF byte is
    always stuffed (FF 00), so FF D9 there is the real marker; an embedded thumbnail's own EOI comes
    before the main image's start-of-scan (FF DA). Looked for in the last 64 KB (a file with a larger
    trailer after its EOI, such as a motion photo, would be refused)."""
    if isinstance(data, bytes | bytearray):
        tail = bytes(memoryview(data)[-JPEG_TAIL:])
    else:
        data.seek(-JPEG_TAIL, io.SEEK_END)  # an Incoming reader clamps at 0
        tail = data.read()
    return tail.rfind(b"\xff\xd9") > tail.rfind(b"\xff\xda")


def _encode(image: PILImage.Image, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", optimize=True)
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _shrunk(image: PILImage.Image, edge: int) -> PILImage.Image:
    """Downscale to fit `edge`, in place: an integer reduce as far as it goes, then one box step of
    less than 2x (a quarter of the time of one pass over a 4096² image). Box: an area average, right
    for shrinking, and a third faster than bilinear."""
    from PIL import Image

    image.thumbnail((edge, edge), Image.Resampling.BOX, reducing_gap=1.0)
    return image


def make_preview(source: Source, max_edge: int, max_bytes: int, keep_alpha: bool = False) -> Preview | None:
    """A downscaled preview within `max_edge` and `max_bytes`: JPEG, or PNG when alpha is kept.

    One encode usually fits; if not, the next try shrinks the picture by the measured overshoot
    (bytes scale with area) and lowers quality, so a busy photo costs two or three encodes, not ten.
    """
    image = _open(source)
    image.draft("RGB", (max_edge, max_edge))  # JPEG decoders can downscale while decoding
    mode = "RGBA" if keep_alpha and image.mode in ("RGBA", "LA", "P") else "RGB"
    small = _shrunk(image if image.mode in ("RGB", "RGBA", "L", "LA") else image.convert(mode), max_edge)
    small = small if small.mode == mode else small.convert(mode)
    fmt, mime = ("PNG", "image/png") if mode == "RGBA" else ("JPEG", "image/jpeg")
    for quality in QUALITY_LADDER:
        encoded = _encode(small, fmt, quality)
        if len(encoded) <= max_bytes:
            return Preview(encoded, mime, small.width, small.height)
        edge = int(max(small.size) * min(0.9, (max_bytes / len(encoded)) ** 0.5 * 0.95))
        if edge < MIN_PREVIEW_EDGE:
            return None
        small = _shrunk(small, edge)
    return None


def draw_placeholder(
    width: int, height: int, prompt: str, label: str, seed: int, inputs: tuple[bytes, ...] = ()
) -> bytes:
    """A deterministic test picture: a seeded colour field, the prompt, the size and `label`,
    with thumbnails of the input images for edits. PNG bytes."""
    import random
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    top, bottom = (tuple(rng.randrange(40, 200) for _ in range(3)) for _ in range(2))
    picture = Image.linear_gradient("L").resize((width, height))
    picture = Image.composite(
        Image.new("RGB", (width, height), top), Image.new("RGB", (width, height), bottom), picture
    )
    for i, data in enumerate(inputs[:4]):
        thumb = _shrunk(_open(data).convert("RGB"), max(16, min(width, height) // 4))
        picture.paste(thumb, (8 + i * (thumb.width + 8), height - thumb.height - 8))
    draw = ImageDraw.Draw(picture)
    size = max(10, min(width, height) // 16)
    font = ImageFont.load_default(size=size)
    lines = [label, f"{width}x{height}", *textwrap.wrap(prompt, width=max(12, width // (size // 2 + 1)))[:6]]
    draw.multiline_text(
        (width / 2, height / 2),
        "\n".join(lines),
        fill="white",
        anchor="mm",
        align="center",
        font=font,
        stroke_width=2,
        stroke_fill="black",
    )
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()
