"""Planning a call: how many upstream calls carry how many images, and the input images
loaded, checked (really an image, within the route's count, byte, pixel and format limits)
and put in the form the route takes. Nothing here talks to an upstream except through the
`fetch` callable the service passes in for URL inputs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from .catalog import Route
from .errors import ImagegateError, InvalidRequest
from .imaging import ImageInfo, NotAnImage, probe
from .providers.base import InputImage
from .validation import ImageRequest, input_form

__all__ = ["DEFAULT_MAX_INPUT_BYTES", "batches", "load_inputs"]

DEFAULT_MAX_INPUT_BYTES = 50 * 1024 * 1024
"""The cap for a route whose catalog entry names none (OpenAI's, the largest documented)."""
DATA_URL = re.compile(r"^data:([\w/+.-]+)?(;[\w=-]+)*;base64,(.*)$", re.DOTALL | re.IGNORECASE)
Fetch = Callable[[str, int], Awaitable[bytes]]


def batches(n: int, per_call: int) -> list[int]:
    """⌈n / per_call⌉ calls, full ones first, the remainder last: batches(5, 2) == [2, 2, 1]."""
    full, rest = divmod(n, per_call)
    return [per_call] * full + ([rest] if rest else [])


def _shown(ref: str) -> str:
    return ref if len(ref) <= 60 else ref[:57] + "…"


def _refuse(name: str, ref: str, allowed: object, why: str) -> InvalidRequest:
    return InvalidRequest(name, _shown(ref), allowed if isinstance(allowed, (str, list)) else None, f'{name} "{_shown(ref)}" {why}')


async def _read_file(name: str, ref: str, limit: int) -> bytes:
    path = Path(ref).expanduser()
    try:
        stat = await anyio.to_thread.run_sync(path.stat)
    except OSError:
        raise _refuse(name, ref, "an existing image file, an http(s) URL or a data: URL", "does not exist") from None
    if not path.is_file():
        raise _refuse(name, ref, "an image file", "is not a file")
    if stat.st_size > limit:
        raise _refuse(name, ref, f"at most {limit} bytes", f"is {stat.st_size} bytes; the limit here is {limit}")
    try:
        return await anyio.to_thread.run_sync(path.read_bytes)
    except OSError as e:
        raise _refuse(name, ref, "a readable file", f"cannot be read ({e.strerror})") from None


def _decode_data_url(name: str, ref: str, limit: int) -> bytes:
    match = DATA_URL.match(ref)
    if match is None:
        raise _refuse(name, ref, "data:image/<type>;base64,<data>", "is not a base64 data: URL")
    if len(match[3]) * 3 // 4 > limit:
        raise _refuse(name, ref, f"at most {limit} bytes", f"holds more than {limit} bytes")
    try:
        return base64.b64decode(match[3], validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(name, ref, "valid base64", "does not hold valid base64") from None


def _check_image(name: str, ref: str, data: bytes, route: Route, mask: bool) -> ImageInfo:
    try:
        info = probe(data)
    except NotAnImage as e:
        raise _refuse(name, ref, "an image", f"is not a usable image: it {e}") from None
    formats = route.inputs.mask_formats if mask else route.inputs.formats
    if formats and info.mime.split("/")[1] not in formats:
        raise _refuse(name, ref, list(formats), f"is {info.mime}; {route.where} takes {', '.join(formats)}")
    if route.inputs.max_pixels and info.width * info.height > route.inputs.max_pixels:
        raise _refuse(name, ref, f"at most {route.inputs.max_pixels} pixels", f"is {info.width}x{info.height}; too many pixels for {route.where}")
    for edge in (info.width, info.height):
        if (route.inputs.min_edge and edge < route.inputs.min_edge) or (route.inputs.max_edge and edge > route.inputs.max_edge):
            span = f"{route.inputs.min_edge or 1}–{route.inputs.max_edge or '∞'} px a side"
            raise _refuse(name, ref, span, f"is {info.width}x{info.height}; {route.where} takes {span}")
    return info


async def _load_one(name: str, ref: str, route: Route, fetch: Fetch, mask: bool = False) -> InputImage:
    form = input_form(ref)
    forms = route.inputs.forms or ["base64", "file"]  # a URL goes through only where a route lists "url"
    if form == "url" and "url" in forms:
        return InputImage(name=name, mime="", width=0, height=0, url=ref)  # the upstream fetches it itself
    limit = route.inputs.max_bytes or DEFAULT_MAX_INPUT_BYTES
    if form == "file":
        data = await _read_file(name, ref, limit)
    elif form == "base64":
        data = _decode_data_url(name, ref, limit)
    else:
        try:
            data = await fetch(ref, limit)
        except ImagegateError as e:  # the agent's URL, not the provider, failed: say which input
            raise _refuse(name, ref, "a reachable http(s) image URL", f"could not be downloaded: {e.message}") from None
    info = await anyio.to_thread.run_sync(_check_image, name, ref, data, route, mask)
    return InputImage(name=name, mime=info.mime, width=info.width, height=info.height, data=data)


async def load_inputs(request: ImageRequest, fetch: Fetch) -> tuple[tuple[InputImage, ...], InputImage | None]:
    """Load and check every input image and the mask, in order; the first problem is raised."""
    route = request.route
    images = tuple([await _load_one(f"images[{i}]", ref, route, fetch) for i, ref in enumerate(request.images)])
    if not request.mask:
        return images, None
    mask = await _load_one("mask", request.mask, route, fetch, mask=True)
    first = images[0] if images else None
    if first is not None and first.data is not None and route.inputs.mask_same_size and (mask.width, mask.height) != (first.width, first.height):
        size = f"{first.width}x{first.height}"
        raise _refuse("mask", request.mask, size, f"is {mask.width}x{mask.height}; it must match images[0] ({size})")
    return images, mask
