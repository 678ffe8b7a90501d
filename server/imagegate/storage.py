"""Saving images: atomic writes under the output directory, never-clobbering names, and a
JSON sidecar per image. Names come from the date, the time and a sanitised slug, never
from raw input; nothing is written outside the output directory or, when a disk error stops
it (full, quota, read-only, no permission), the per-user fallback folder in the temp dir.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import re
import stat
import tempfile
import time
import unicodedata
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from . import __version__
from .errors import StorageError

__all__ = ["ON_SAVED", "SavedFile", "Sidecar", "Store", "default_fallback", "slugify"]

SLUG_MAX = 40
MAX_NAME_TRIES = 1000
PRIVATE_MODE = 0o700
ROOT_RETRY_SECONDS = 60.0
"""After the output folder runs out of room (or turns read-only), it is skipped this long."""
LASTING_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""Errors the next image would meet too; any other OSError is retried per image."""
TEMP_PREFIX = ".partial-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
ON_SAVED: ContextVar[Callable[[Path], None] | None] = ContextVar("imagegate_on_saved", default=None)
"""Told each image's path the moment it is published, in the context that published it: a job records
its saved files as they arrive (jobs.py), so a worker that dies leaves them listed, not just on disk."""


def slugify(prompt: str) -> str:
    """A short, safe file-name fragment from a prompt ("image" when nothing ASCII is left)."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:SLUG_MAX].rstrip("-")
    return slug or "image"


def default_fallback() -> Path:
    """`<temp dir>/imagegate-<uid>` (the user name where there are no uids): one folder per user."""
    if hasattr(os, "geteuid"):
        owner = str(os.geteuid())
    else:
        owner = re.sub(r"[^A-Za-z0-9_.-]+", "_", getpass.getuser())
    return Path(tempfile.gettempdir()) / f"imagegate-{owner}"


@dataclass(frozen=True)
class Sidecar:
    """What an image's sidecar records, and nothing else (an allowlist: no secret can get in): what
    was asked, who served it, what came back. Inputs that are data: URLs are shown shortened."""

    tool: str
    prompt: str
    model: str
    provider: str
    upstream_model: str
    size_requested: str
    n: int
    index: int
    options: Mapping[str, Any]
    extra: Mapping[str, Any]
    inputs: list[str]
    mask: str | None
    width: int
    height: int
    mime_type: str
    bytes: int
    revised_prompt: str | None
    seed: int | None
    usage: Any
    cost: Mapping[str, Any] | None = None
    """This image's cost: the price table's estimate for one image and its share of what the
    upstream reported (pricing.Cost.record())."""

    def record(self) -> dict[str, Any]:
        """The sidecar's JSON object, in the order a person reads it."""
        return {
            "imagegate": __version__,
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "tool": self.tool,
            "prompt": self.prompt,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "size_requested": self.size_requested,
            "n": self.n,
            "index": self.index,
            "options": dict(self.options),
            "extra": dict(self.extra),
            "inputs": [_shown_input(r) for r in self.inputs]
            + ([f"mask: {_shown_input(self.mask)}"] if self.mask else []),
            "image": {
                "width": self.width,
                "height": self.height,
                "mime_type": self.mime_type,
                "bytes": self.bytes,
            },
            "revised_prompt": self.revised_prompt,
            "seed": self.seed,
            "usage": self.usage,
            "cost": dict(self.cost) if self.cost is not None else None,
        }


def _shown_input(ref: str) -> str:
    """An input as a sidecar shows it: a data: URL cut to its start (the bytes are the input's own)."""
    return ref if not ref.startswith("data:") else ref[:40] + "…"


class UnsafeFolder(OSError):
    """Raised (inside the store) for a fallback folder that is not ours alone; the text says why."""


@dataclass(frozen=True, slots=True)
class SavedFile:
    """An image on disk, complete and under its final name."""

    path: Path
    bytes: int
    fallback: bool = False

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")


@dataclass(frozen=True, slots=True)
class _Name:
    folder: str  # YYYY-MM-DD
    stem: str  # HHMMSS-slug
    extension: str
    index: int


class Store:
    """Writes images and sidecars; every method is synchronous (run it in a worker thread).

    A disk error (any OSError: no space, quota, file too big, no permission, read-only) while
    writing or publishing an image sends that image to the fallback folder. Once the output
    folder has run out of room or turned read-only, later images go straight to the fallback
    for `retry_root_after` seconds, so a full disk is not refilled by every partial write.
    StorageError only when neither folder can take the image; it names both, and the
    temporary file holding the image if there is one.
    """

    def __init__(
        self,
        root: Path,
        clock: Callable[[], datetime] = datetime.now,
        fallback: Path | None = None,
        retry_root_after: float = ROOT_RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.root = root
        self.clock = clock
        self.fallback = fallback or default_fallback()
        self.retry_root_after = retry_root_after
        self.monotonic = monotonic
        self._root_down_until = float("-inf")

    def temp_file(self) -> tuple[Path, BinaryIO]:
        """A new temporary file in the output folder (or the fallback): publishing it is a rename."""
        failures: list[str] = []
        for base in self._targets():
            try:
                return _open_temp(self._prepared(base))
            except OSError as e:
                failures.append(self._failed(base, e))
        raise self._nowhere(failures)

    def write_bytes(self, data: bytes | bytearray) -> Path:
        """Write bytes to a temporary file (the output folder's, else the fallback's); publish() names it."""
        failures: list[str] = []
        for base in self._targets():
            try:
                return self._write_in(self._prepared(base), data)
            except OSError as e:
                failures.append(self._failed(base, e))
        raise self._nowhere(failures)

    def publish(self, temp: Path, prompt: str, extension: str, index: int) -> SavedFile:
        """Move a finished temporary file to `YYYY-MM-DD/HHMMSS-slug-k.ext` without overwriting anything:
        in the folder that holds it or, if that fails, copied to the other one."""
        now = self.clock()
        stem = f"{now.strftime('%H%M%S')}-{slugify(prompt)}"
        name = _Name(now.strftime("%Y-%m-%d"), stem, extension, index)
        home = self.fallback if _same(temp.parent, self.fallback) else self.root
        failures: list[str] = []
        for base in (home, self.root if home is self.fallback else self.fallback):
            try:
                saved = self._publish_to(base, temp, name, copy=base is not home)
            except OSError as e:
                failures.append(self._failed(base, e))
                continue
            if (told := ON_SAVED.get()) is not None:
                told(saved.path)
            return saved
        raise self._nowhere(failures, temp)

    def write_sidecar(self, saved: SavedFile, sidecar: Sidecar | Mapping[str, Any]) -> None:
        """The sidecar beside its image (a `Sidecar`'s record, or a mapping already built). If it cannot
        be written, its reserved name is removed and the StorageError says where the image itself is."""
        metadata = sidecar.record() if isinstance(sidecar, Sidecar) else sidecar
        data = json.dumps(metadata, indent=2, ensure_ascii=False).encode()
        temp: Path | None = None
        try:
            temp = self._write_in(saved.path.parent, data)  # the image's own folder: a rename, never a copy
            os.replace(temp, saved.sidecar)
        except OSError as e:
            if temp is not None:
                temp.unlink(missing_ok=True)
            _remove_reservation(saved.sidecar)
            raise StorageError(
                f"cannot write the sidecar {saved.sidecar.name} ({_reason(e)}); "
                f"the image itself is saved at {saved.path}"
            ) from None

    # Targets and failures

    def _targets(self) -> list[Path]:
        # A root that just ran out of room is tried last, not dropped: it may have room again.
        if self.monotonic() < self._root_down_until:
            return [self.fallback, self.root]
        return [self.root, self.fallback]

    def _prepared(self, base: Path) -> Path:
        """`base` ready for a temporary file: the output folder made, the fallback checked to be ours."""
        if base is self.root:
            base.mkdir(parents=True, exist_ok=True)
        else:
            _close(_private_folder(self.fallback))
        return base

    def _failed(self, base: Path, error: OSError) -> str:
        """Note a failure in `base` (and that the output folder is down, for a lasting error)."""
        if base is self.root and error.errno in LASTING_ERRORS:
            self._root_down_until = self.monotonic() + self.retry_root_after
        return f"{base} ({_reason(error)})"

    def _nowhere(self, failures: list[str], temp: Path | None = None) -> StorageError:
        where = "; ".join(dict.fromkeys(failures))
        kept = f"; the image is at {temp}" if temp is not None and temp.exists() else ""
        return StorageError(f"cannot write the image to the output folder nor to the fallback: {where}{kept}")

    # Writing

    def _write_in(self, folder: Path, data: bytes | bytearray) -> Path:
        """A temporary file in `folder` holding `data`; on any failure no partial file is left."""
        path, handle = _open_temp(folder)
        try:
            with handle:
                self._put(path, handle, data)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        return path

    def _put(self, path: Path, handle: BinaryIO, data: bytes | bytearray) -> None:
        """The one place bytes reach a disk, in temporary file `path` (tests override it for disk faults)."""
        handle.write(data)

    # Publishing

    def _publish_to(self, base: Path, temp: Path, name: _Name, copy: bool) -> SavedFile:
        """Publish `temp` in `base`, through a copy there when it is in the other folder."""
        source = self._write_in(self._prepared(base), temp.read_bytes()) if copy else temp
        size = source.stat().st_size
        try:
            final = self._link_unique(source, self._folder(base, name.folder), name)
        except OSError:
            if copy:  # the original is still where it was: keep one copy, not two
                source.unlink(missing_ok=True)
            raise
        source.unlink(missing_ok=True)
        temp.unlink(missing_ok=True)
        if base is self.root:
            return SavedFile(path=final.resolve(), bytes=size)
        return SavedFile(path=Path(os.path.abspath(final)), bytes=size, fallback=True)

    def _folder(self, base: Path, day: str) -> Path:
        if base is self.root:
            folder = self.root / day
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        return self._fallback_folder(day)

    def _link_unique(self, temp: Path, folder: Path, name: _Name) -> Path:
        # A name is taken only if the image and its sidecar name are both free: the image is linked
        # (os.link fails if it exists: concurrent calls never overwrite each other), the sidecar
        # name reserved with O_EXCL (a .png and a .jpg of the same stem never share one).
        for k in range(name.index, name.index + MAX_NAME_TRIES):
            final = folder / f"{name.stem}-{k}.{name.extension}"
            if not self._claim(temp, final):
                continue
            try:
                _reserve(final.with_suffix(".json"))
            except OSError as e:
                _unclaim(temp, final)
                if isinstance(e, FileExistsError):
                    continue
                raise
            return final
        raise OSError(errno.EEXIST, f"no free name for {name.stem} in {folder}")

    @staticmethod
    def _claim(temp: Path, final: Path) -> bool:
        try:
            os.link(temp, final)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: reserve the name, then replace it
            try:
                _reserve(final)
            except FileExistsError:
                return False
            try:
                os.replace(temp, final)
            except OSError:
                final.unlink(missing_ok=True)
                raise
            return True

    def _fallback_folder(self, day: str) -> Path:
        """The fallback's date folder, each level made 0700 or checked, never through a symlink."""
        base = _private_folder(self.fallback)
        try:
            _close(_private_folder(self.fallback / day, base))
        finally:
            _close(base)
        return self.fallback / day


def _private_folder(path: Path, parent: int | None = None) -> int | None:
    """A descriptor on folder `path` (made 0700 if missing; `parent` is its parent's descriptor),
    never reached through a symlink, refused (UnsafeFolder) unless it is a folder of ours, with any
    group/other access removed. None where the platform has no O_DIRECTORY (the lstat checks)."""
    target: str | Path = path.name if parent is not None else path
    try:
        os.mkdir(target, PRIVATE_MODE, dir_fd=parent)
    except FileExistsError:
        pass
    info = os.lstat(target, dir_fd=parent)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFolder(f"refused: {path} is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"refused: {path} is not a folder")
    if not _DIRECTORY:
        return None
    try:
        fd = os.open(target, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=parent)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for something else since the lstat
            raise UnsafeFolder(f"refused: {path} is not a plain folder") from None
        raise
    try:
        _check_private(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_private(path: Path, fd: int) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise UnsafeFolder(f"refused: {path} belongs to uid {info.st_uid}, not to this user ({os.geteuid()})")
    if stat.S_IMODE(info.st_mode) & 0o077:  # only its owner (us) can have opened it up: close it again
        os.fchmod(fd, PRIVATE_MODE)


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _open_temp(folder: Path) -> tuple[Path, BinaryIO]:
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)  # O_EXCL: never an existing name or link
    return Path(name), os.fdopen(fd, "wb")


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _reserve(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW, 0o600))


def _unclaim(temp: Path, final: Path) -> None:
    if temp.exists():
        final.unlink()
    else:
        os.replace(final, temp)  # it was moved, not linked: put it back


def _remove_reservation(sidecar: Path) -> None:
    """Remove the 0-byte name publish() reserved for a sidecar that could not be written."""
    try:
        info = os.lstat(sidecar)
        if stat.S_ISREG(info.st_mode) and info.st_size == 0:
            sidecar.unlink()
    except OSError:
        pass


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
