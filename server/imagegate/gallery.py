"""Saved images as addressable resources: `imagegate://images/{date}/{name}` names a file under
the output directory. Lists the newest images and reads one back with its sidecar. Never
reaches outside the output directory and never serves a file that imagegate did not save
(an image with its JSON sidecar); it writes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidRequest, shown

__all__ = [
    "DEFAULT_LIMIT",
    "URI_PREFIX",
    "URI_TEMPLATE",
    "GalleryImage",
    "image_uri",
    "list_images",
    "read_image",
]

URI_PREFIX = "imagegate://images/"
URI_TEMPLATE = URI_PREFIX + "{date}/{name}"
DEFAULT_LIMIT = 50
DESCRIPTION_CHARS = 160
MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tiff": "image/tiff",
}
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Storage names files `HHMMSS-slug-k.ext` with a slug of [a-z0-9-]: anything else (dots, slashes,
# percent escapes, a leading dot of a `.partial-` temp file) is not one of ours.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\.[A-Za-z]{3,4}")


@dataclass(frozen=True, slots=True)
class GalleryImage:
    """A saved image as a resource: where it is, what it is, and what its sidecar says."""

    uri: str
    path: Path
    mime: str
    bytes: int
    sidecar: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    def description(self) -> str:
        """One short line from the sidecar: model, provider and the start of the prompt."""
        side = self.sidecar
        head = " via ".join(str(side[k]) for k in ("model", "provider") if side.get(k))
        prompt = str(side.get("prompt") or "")
        text = f"{head}: {prompt}" if head else prompt
        return text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 1] + "…"


def image_uri(root: Path, path: Path) -> str | None:
    """The resource URI of a saved file, or None when it is not in the output tree (a fallback save)."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    parts = relative.parts
    if len(parts) != 2 or not (DATE_RE.fullmatch(parts[0]) and _is_image_name(parts[1])):
        return None
    return URI_PREFIX + "/".join(parts)


def _is_image_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and Path(name).suffix.lower() in MIME_BY_SUFFIX


def list_images(root: Path, limit: int = DEFAULT_LIMIT) -> list[GalleryImage]:
    """The newest saved images (with their sidecars), newest first, at most `limit`."""
    found: list[GalleryImage] = []
    if not root.is_dir():
        return found
    days = [d for d in root.iterdir() if DATE_RE.fullmatch(d.name) and d.is_dir()]
    for day in sorted(days, key=lambda d: d.name, reverse=True):
        found += _images_of(root, day)
        if len(found) >= limit:
            break
    return found[:limit]


def _images_of(root: Path, day: Path) -> list[GalleryImage]:
    images = []
    for path in day.iterdir():
        uri = image_uri(root, path)
        image = _load(root, uri, path) if uri else None
        if image:
            images.append(image)
    return sorted(images, key=lambda i: i.name, reverse=True)  # names start with HHMMSS


def _load(root: Path, uri: str, path: Path) -> GalleryImage | None:
    try:
        resolved = path.resolve(strict=True)
        # Storage never makes links: a linked file, or a day folder linked out of the tree, is not ours.
        if path.is_symlink() or not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
            return None
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        size = resolved.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict):
        return None
    mime = MIME_BY_SUFFIX[path.suffix.lower()]
    return GalleryImage(uri=uri, path=resolved, mime=mime, bytes=size, sidecar=sidecar)


def read_image(root: Path, uri: str) -> tuple[GalleryImage, bytes]:
    """The saved image a URI names, and its bytes; InvalidRequest naming the URI for anything else."""
    relative = uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else ""
    date, _, name = relative.partition("/")
    if not (DATE_RE.fullmatch(date) and _is_image_name(name)):
        raise _refused(uri, f"is not a saved image; use a URI of the form {URI_TEMPLATE} from resources/list")
    image = _load(root, uri, root / date / name)
    if image is None:
        raise _refused(uri, "not found: no saved image with a sidecar at that name")
    try:
        data = image.path.read_bytes()
    except OSError as e:
        raise _refused(uri, f"cannot be read: {e.strerror}") from None
    return image, data


def _refused(uri: str, why: str) -> InvalidRequest:
    return InvalidRequest("uri", uri, URI_TEMPLATE, f"resource {shown(uri)} {why}")
