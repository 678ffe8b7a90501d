"""Saving images: atomic writes under the output directory, never-clobbering names, and a
JSON sidecar per image. Names come from the date, the time and a sanitised slug, never
from raw input; nothing is written outside the output directory (or, if that cannot be
written, the fallback directory in the system temp dir, which the reply then names).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import StorageError

__all__ = ["SavedFile", "Store", "slugify"]

SLUG_MAX = 40
MAX_NAME_TRIES = 1000


def slugify(prompt: str) -> str:
    """A short, safe file-name fragment from a prompt ("image" when nothing ASCII is left)."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:SLUG_MAX].rstrip("-")
    return slug or "image"


@dataclass(frozen=True, slots=True)
class SavedFile:
    """An image on disk, complete and under its final name."""

    path: Path
    bytes: int
    fallback: bool = False

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")


class Store:
    """Writes images and sidecars; every method is synchronous (run it in a worker thread)."""

    def __init__(self, root: Path, clock: Callable[[], datetime] = datetime.now, fallback: Path | None = None):
        self.root = root
        self.clock = clock
        self.fallback = fallback or Path(tempfile.gettempdir()) / "imagegate"

    def temp_file(self) -> tuple[Path, Any]:
        """A new temporary file inside the output tree (same filesystem, so publishing is a rename)."""
        for base, _ in self._targets():
            try:
                base.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix=".partial-", dir=base)
                return Path(name), os.fdopen(fd, "wb")
            except OSError:
                continue
        raise StorageError(f"cannot write to {self.root} nor to the fallback {self.fallback}")

    def _targets(self) -> list[tuple[Path, bool]]:
        return [(self.root, False), (self.fallback, True)]

    def write_bytes(self, data: bytes | bytearray) -> Path:
        """Write bytes to a temporary file; publish() gives it its final name."""
        path, handle = self.temp_file()
        try:
            with handle:
                handle.write(data)
        except OSError as e:
            path.unlink(missing_ok=True)
            raise StorageError(f"cannot write image to {path.parent}: {e.strerror}") from None
        return path

    def publish(self, temp: Path, prompt: str, extension: str, index: int) -> SavedFile:
        """Move a finished temporary file to `YYYY-MM-DD/HHMMSS-slug-k.ext` without overwriting anything."""
        now = self.clock()
        size = temp.stat().st_size
        for base, is_fallback in self._targets():
            folder = base / now.strftime("%Y-%m-%d")
            stem = f"{now.strftime('%H%M%S')}-{slugify(prompt)}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                final = self._link_unique(temp, folder, stem, extension, index)
            except OSError:
                continue
            temp.unlink(missing_ok=True)
            return SavedFile(path=final.resolve(), bytes=size, fallback=is_fallback)
        raise StorageError(f"cannot write to {self.root} nor to the fallback {self.fallback}; the image is at {temp}")

    def _link_unique(self, temp: Path, folder: Path, stem: str, extension: str, index: int) -> Path:
        # A name is taken only if the image and its sidecar name are both free: the image is linked
        # (os.link fails if it exists: concurrent calls never overwrite each other), the sidecar
        # name reserved with O_EXCL (a .png and a .jpg of the same stem never share one).
        for k in range(index, index + MAX_NAME_TRIES):
            final = folder / f"{stem}-{k}.{extension}"
            if not self._claim(temp, final):
                continue
            try:
                os.close(os.open(final.with_suffix(".json"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                if temp.exists():
                    final.unlink()
                else:
                    os.replace(final, temp)  # it was moved, not linked: put it back
                continue
            return final
        raise OSError(f"no free name for {stem} in {folder}")

    @staticmethod
    def _claim(temp: Path, final: Path) -> bool:
        try:
            os.link(temp, final)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: reserve the name, then replace it
            try:
                os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return False
            os.replace(temp, final)
            return True

    def write_sidecar(self, saved: SavedFile, metadata: Mapping[str, Any]) -> None:
        """The sidecar: request, route, revised prompt, seed, usage (an allowlist built by the caller)."""
        temp = self.write_bytes(json.dumps(metadata, indent=2, ensure_ascii=False).encode())
        os.replace(temp, saved.sidecar)

    def discard(self, temp: Path) -> None:
        temp.unlink(missing_ok=True)
