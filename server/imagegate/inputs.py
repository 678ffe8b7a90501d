"""A call's input images, loaded, checked (really an image, within the route's count, byte,
pixel and format limits) and put in the form the route takes. Nothing here talks to an upstream
except through the `fetch` callable the generator passes in for URL inputs.

Where inputs may come from is the `InputPolicy`: local files only under the configured roots
(if any), and URLs this server downloads only from public addresses unless private ones are
allowed (addresses.py). Every refusal happens before a file is opened or a request is sent.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import anyio

from . import codec
from .addresses import AddressPolicy, checked_url, refusal
from .catalog import Route
from .catalog.sizes import ratio_value
from .errors import ImagegateError, InvalidRequest
from .imaging import ImageInfo, NotAnImage, probe
from .providers.base import InputImage
from .validation import ImageRequest, input_form

__all__ = ["DEFAULT_MAX_INPUT_BYTES", "TRUSTING", "InputPolicy", "load_inputs"]

DEFAULT_MAX_INPUT_BYTES = 50 * 1024 * 1024
"""The cap for a route whose catalog entry names none (OpenAI's, the largest documented)."""
DATA_URL = re.compile(r"^data:([\w/+.-]+)?(;[\w=-]+)*;base64,(.*)$", re.DOTALL | re.IGNORECASE)
SCHEME = re.compile(r"^([a-z][a-z0-9+.-]+):", re.IGNORECASE)
"""A URL scheme; a single letter before ":" is a Windows drive (C:\\…), not a scheme."""
OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
)
"""NOFOLLOW: a symlink swapped in after the roots check is not followed; NONBLOCK: a FIFO
cannot hang the open."""
ANY_INPUT = "an existing image file, an http(s) URL or a data: URL"
Fetch = Callable[[str, int, "str | None"], Awaitable[bytes]]
"""(URL, byte limit, the checked address to connect to or None) -> the body."""


@dataclass(frozen=True)
class InputPolicy(AddressPolicy):
    """Where input images may come from: local files under `roots` (empty: anywhere), and URLs
    this server downloads from non-public addresses only if `allow_private_urls`."""

    roots: tuple[Path, ...] = ()


TRUSTING = InputPolicy(allow_private_urls=True)
"""No roots and no address check: for callers whose `fetch` is not the network (tests)."""


def _allowed_path(name: str, ref: str, roots: tuple[Path, ...]) -> Path:
    """The path with every symlink and ".." resolved, refused if it lies outside every root."""
    try:
        path = Path(ref).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # unknown ~user, a symlink loop, a NUL byte
        raise refusal(name, ref, ANY_INPUT, "is not a usable path") from None
    if roots and not any(path.is_relative_to(root) for root in roots):
        where = ", ".join(str(r) for r in roots)
        why = (
            f"is outside the folders input images may come from ({where}); copy it there, "
            "or add its folder to IMAGEGATE_INPUT_ROOTS"
        )
        raise refusal(name, ref, [str(r) for r in roots], why)
    return path


def _read_file(name: str, ref: str, limit: int, roots: tuple[Path, ...]) -> bytes:
    """A local input's bytes, read from its resolved path (blocking: run it in a worker thread)."""
    path = _allowed_path(name, ref, roots)
    try:
        fd = os.open(path, OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        where = (
            ""
            if Path(ref).expanduser().is_absolute()
            else f" (looked for in the server's working directory, {Path.cwd()}; give an absolute path)"
        )
        raise refusal(name, ref, ANY_INPUT, f"does not exist{where}") from None
    except OSError as e:
        raise refusal(name, ref, "a readable file", f"cannot be read ({e.strerror})") from None
    try:
        status = os.fstat(fd)  # of what was opened: nothing can change between this check and the read
        if not stat.S_ISREG(status.st_mode):
            raise refusal(name, ref, "an image file", "is not a file")
        if status.st_size > limit:
            why = f"is {status.st_size} bytes; the limit here is {limit}"
            raise refusal(name, ref, f"at most {limit} bytes", why)
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)  # never more than the limit, even from a file that grows
    except OSError as e:
        raise refusal(name, ref, "a readable file", f"cannot be read ({e.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise refusal(name, ref, f"at most {limit} bytes", f"holds more than {limit} bytes")
    return data


def _decode_data_url(name: str, ref: str, limit: int) -> bytes:
    match = DATA_URL.match(ref)
    if match is None:
        raise refusal(name, ref, "data:image/<type>;base64,<data>", "is not a base64 data: URL")
    if len(match[3]) * 3 // 4 > limit:
        raise refusal(name, ref, f"at most {limit} bytes", f"holds more than {limit} bytes")
    try:
        return bytes(codec.b64decode(match[3]))  # outside a payload scope: bytes, not copied
    except ValueError:
        raise refusal(name, ref, "valid base64", "does not hold valid base64") from None


async def _load_bytes(name: str, ref: str, form: str, limit: int, fetch: Fetch, policy: InputPolicy) -> bytes:
    if form == "file":
        scheme = SCHEME.match(ref)
        if scheme:  # file:, ftp:, gopher:… were once read as odd relative paths; say what is taken instead
            hint = "; a file name with a colon can be given as ./name" if scheme[1].lower() != "file" else ""
            why = (
                f"uses the {scheme[1]}: scheme, which is not accepted; "
                f"give a plain local path, an http(s) URL or a data: URL{hint}"
            )
            raise refusal(name, ref, "a local path, an http(s) URL or a data: URL", why)
        return await anyio.to_thread.run_sync(_read_file, name, ref, limit, policy.roots)
    if form == "base64":
        return _decode_data_url(name, ref, limit)
    url, address = await checked_url(name, ref, policy)
    try:
        return await fetch(url, limit, address)
    except ImagegateError as e:  # the agent's URL, not the provider, failed: say which input
        raise refusal(
            name, ref, "a reachable http(s) image URL", f"could not be downloaded: {e.message}"
        ) from None


def _check_image(name: str, ref: str, data: bytes, route: Route, mask: bool) -> ImageInfo:
    try:
        info = probe(data)
    except NotAnImage as e:
        raise refusal(name, ref, "an image", f"is not a usable image: it {e}") from None
    formats = route.inputs.mask_formats if mask else route.inputs.formats
    if formats and info.mime.split("/")[1] not in formats:
        raise refusal(name, ref, list(formats), f"is {info.mime}; {route.where} takes {', '.join(formats)}")
    if route.inputs.max_pixels and info.width * info.height > route.inputs.max_pixels:
        raise refusal(
            name,
            ref,
            f"at most {route.inputs.max_pixels} pixels",
            f"is {info.width}x{info.height}; too many pixels for {route.where}",
        )
    for edge in (info.width, info.height):
        if (route.inputs.min_edge and edge < route.inputs.min_edge) or (
            route.inputs.max_edge and edge > route.inputs.max_edge
        ):
            span = f"{route.inputs.min_edge or 1}–{route.inputs.max_edge or '∞'} px a side"
            raise refusal(name, ref, span, f"is {info.width}x{info.height}; {route.where} takes {span}")
    low, high = route.inputs.min_ratio, route.inputs.max_ratio
    shape = Fraction(info.width, info.height)
    if (low and shape < ratio_value(low)) or (high and shape > ratio_value(high)):
        span = (
            f"width:height {low}" if low == high else f"width:height from {low or '0:1'} to {high or '1:0'}"
        )
        raise refusal(name, ref, span, f"is {info.width}x{info.height}; {route.where} takes {span}")
    return info


async def _load_one(
    name: str, ref: str, route: Route, fetch: Fetch, policy: InputPolicy, mask: bool = False
) -> InputImage:
    form = input_form(ref)
    forms = route.inputs.forms or ["base64", "file"]  # a URL goes through only where a route lists "url"
    if form == "url" and "url" in forms:
        # The upstream fetches it itself, from its own network: the private-address check guards
        # only downloads made from this machine, which can reach what the upstream cannot.
        return InputImage(name=name, mime="", width=0, height=0, url=ref)
    limit = (
        (route.inputs.mask_max_bytes if mask else None) or route.inputs.max_bytes or DEFAULT_MAX_INPUT_BYTES
    )
    data = await _load_bytes(name, ref, form, limit, fetch, policy)
    info = await anyio.to_thread.run_sync(_check_image, name, ref, data, route, mask)
    return InputImage(name=name, mime=info.mime, width=info.width, height=info.height, data=data)


async def load_inputs(
    request: ImageRequest, fetch: Fetch, policy: InputPolicy = TRUSTING
) -> tuple[tuple[InputImage, ...], InputImage | None]:
    """Load and check every input image and the mask, in order; the first problem is raised.

    The service passes the settings' policy; the default trusts every source (tests whose
    `fetch` is not the network).
    """
    route = request.route
    images = tuple(
        [await _load_one(f"images[{i}]", r, route, fetch, policy) for i, r in enumerate(request.images)]
    )
    mask = await _load_one("mask", request.mask, route, fetch, policy, mask=True) if request.mask else None
    first = images[0] if images else None
    if (
        mask
        and first is not None
        and first.data is not None
        and route.inputs.mask_same_size
        and (mask.width, mask.height) != (first.width, first.height)
    ):
        size = f"{first.width}x{first.height}"
        raise refusal(
            "mask",
            request.mask or "",
            size,
            f"is {mask.width}x{mask.height}; it must match images[0] ({size})",
        )
    total = sum(len(i.data) for i in (*images, mask) if i is not None and i.data is not None)
    if route.inputs.max_total_bytes and total > route.inputs.max_total_bytes:
        limit = route.inputs.max_total_bytes
        why = (
            f"hold {total} bytes together; {route.where} takes at most {limit} bytes "
            "of input images in one request"
        )
        raise InvalidRequest(
            "images", f"{len(request.images)} images", f"at most {limit} bytes in all", f"images {why}"
        )
    return images, mask
