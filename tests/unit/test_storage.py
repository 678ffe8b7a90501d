"""The store: names from date, time and a safe slug; atomic, never-clobbering publishes; the
fallback directory when the output directory cannot be written; one sidecar per image."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from imagegate.errors import StorageError
from imagegate.storage import ROOT_RETRY_SECONDS, SLUG_MAX, Store, slugify

NOW = datetime(2026, 3, 4, 5, 6, 7)


def store(tmp_path: Path, root: Path | None = None) -> Store:
    return Store(root or tmp_path / "out", clock=lambda: NOW, fallback=tmp_path / "fallback")


def publish(
    target: Store,
    prompt: str = "a red fox",
    extension: str = "png",
    index: int = 1,
    data: bytes = b"image bytes",
):
    return target.publish(target.write_bytes(data), prompt, extension, index)


def leftovers(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob(".partial-*")]


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("A red fox", "a-red-fox"),
        ("  Café au lait, s'il vous plaît!  ", "cafe-au-lait-s-il-vous-plait"),
        ("猫と犬", "image"),
        ("🦊🦊", "image"),
        ("", "image"),
        ("../../etc/passwd", "etc-passwd"),
        ("C:\\Windows\\system32 <con>", "c-windows-system32-con"),
        ("fox " * 30, ("fox-" * 10)[:SLUG_MAX].rstrip("-")),
        ("a" * 39 + " b", "a" * 39),
    ],
)
def test_a_slug_is_short_lowercase_ascii_and_never_a_path(prompt, slug):
    made = slugify(prompt)
    assert made == slug
    assert len(made) <= SLUG_MAX and not made.endswith("-") and "/" not in made and ".." not in made


@pytest.mark.parametrize(
    ("prompt", "extension", "index", "name"),
    [
        ("A red fox", "png", 1, "050607-a-red-fox-1.png"),
        ("A red fox", "jpg", 3, "050607-a-red-fox-3.jpg"),
        ("一只红狐狸", "webp", 2, "050607-image-2.webp"),
    ],
)
def test_an_image_is_published_under_the_date_folder_with_time_slug_and_index(
    tmp_path, prompt, extension, index, name
):
    saved = publish(store(tmp_path), prompt, extension, index)
    assert saved.path == (tmp_path / "out" / "2026-03-04" / name).resolve()
    assert (
        saved.path.read_bytes() == b"image bytes"
        and saved.bytes == len(b"image bytes")
        and not saved.fallback
    )


def test_two_publishes_of_the_same_name_in_the_same_second_never_overwrite(tmp_path):
    target = store(tmp_path)
    first = publish(target, data=b"first")
    second = publish(target, data=b"second")
    assert [first.path.name, second.path.name] == ["050607-a-red-fox-1.png", "050607-a-red-fox-2.png"]
    assert (first.path.read_bytes(), second.path.read_bytes()) == (b"first", b"second")


def test_a_later_image_of_a_call_skips_names_already_taken(tmp_path):
    target = store(tmp_path)
    names = [publish(target, index=k).path.name for k in (1, 2, 1, 2)]
    assert names == [f"050607-a-red-fox-{k}.png" for k in (1, 2, 3, 4)]


def test_publishing_is_atomic_and_leaves_no_partial_files(tmp_path):
    target = store(tmp_path)
    temp = target.write_bytes(b"pixels")
    assert temp.name.startswith(".partial-") and temp.parent == tmp_path / "out"
    saved = target.publish(temp, "fox", "png", 1)
    target.write_sidecar(saved, {"prompt": "fox"})
    assert not temp.exists() and leftovers(tmp_path) == []
    assert sorted(p.name for p in saved.path.parent.iterdir()) == ["050607-fox-1.json", "050607-fox-1.png"]


def test_the_sidecar_sits_next_to_its_image_and_holds_what_it_was_given(tmp_path):
    target = store(tmp_path)
    saved = publish(target)
    metadata = {
        "prompt": "a red fox",
        "model": "gpt-image-1",
        "provider": "openai",
        "image": {"width": 8, "height": 8},
        "note": "ünïcode",
    }
    target.write_sidecar(saved, metadata)
    assert saved.sidecar == saved.path.with_suffix(".json")
    assert json.loads(saved.sidecar.read_text(encoding="utf-8")) == metadata
    assert "ünïcode" in saved.sidecar.read_text(encoding="utf-8")


def test_images_of_different_formats_with_the_same_stem_keep_their_own_sidecars(tmp_path):
    # Two calls in one second with one prompt, one asking png and one jpeg: each image needs its own sidecar.
    target = store(tmp_path)
    png, jpg = publish(target, extension="png"), publish(target, extension="jpg")
    target.write_sidecar(png, {"format": "png"})
    target.write_sidecar(jpg, {"format": "jpeg"})
    assert png.sidecar != jpg.sidecar
    assert json.loads(png.sidecar.read_text()) == {"format": "png"}


def _blocked_by_a_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    return blocker / "out"


def _read_only(tmp_path: Path) -> Path:
    root = tmp_path / "read-only"
    root.mkdir()
    root.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(root, os.W_OK):  # root ignores the mode bits
        root.chmod(stat.S_IRWXU)
        pytest.skip("running as a user whom chmod does not stop from writing")
    return root


@pytest.mark.parametrize(
    "unwritable", [_blocked_by_a_file, _read_only], ids=["path-through-a-file", "read-only-folder"]
)
def test_the_fallback_folder_is_used_when_the_output_folder_cannot_be_written(tmp_path, unwritable):
    root = unwritable(tmp_path)
    try:
        target = store(tmp_path, root)
        saved = publish(target)
        target.write_sidecar(saved, {"prompt": "a red fox"})
        assert (
            saved.fallback
            and saved.path == (tmp_path / "fallback" / "2026-03-04" / "050607-a-red-fox-1.png").resolve()
        )
        assert saved.sidecar.is_file() and leftovers(tmp_path) == []
    finally:
        if root.exists():
            root.chmod(stat.S_IRWXU)


def test_nothing_writable_is_a_storage_error_naming_the_folders(tmp_path):
    target = Store(
        _blocked_by_a_file(tmp_path), clock=lambda: NOW, fallback=tmp_path / "not-a-folder" / "fallback"
    )
    with pytest.raises(StorageError) as caught:
        target.write_bytes(b"pixels")
    assert "not-a-folder/out" in caught.value.agent_text() and "fallback" in caught.value.agent_text()


def test_a_publish_that_cannot_land_anywhere_says_where_the_image_is(tmp_path):
    target = store(tmp_path)
    temp = target.write_bytes(b"pixels")
    (tmp_path / "out" / "2026-03-04").write_text("a file where the date folder should be")
    (tmp_path / "fallback").write_text("and one where the fallback should be")
    with pytest.raises(StorageError) as caught:
        target.publish(temp, "fox", "png", 1)
    assert str(temp) in caught.value.agent_text() and temp.read_bytes() == b"pixels"


# Disk faults: each image goes wherever it can still be written, and only there.


class FaultyDisk(Store):
    """A store whose writes under some folders fail part-way, as a full or broken disk fails them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.faults: dict[Path, OSError] = {}
        self.writes: list[Path] = []

    def _put(self, path, handle, data):
        self.writes.append(path)
        for folder, error in self.faults.items():
            if path.is_relative_to(folder):
                handle.write(data[: len(data) // 2])
                handle.flush()
                raise error
        super()._put(path, handle, data)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def faulty(tmp_path: Path, clock: Clock | None = None, **faults: int) -> FaultyDisk:
    """A store with `out` and `fallback` under tmp_path; faults={"out": errno.ENOSPC} fails writes there."""
    target = FaultyDisk(
        tmp_path / "out", clock=lambda: NOW, fallback=tmp_path / "fallback", monotonic=clock or Clock()
    )
    target.faults = {tmp_path / name: OSError(code, os.strerror(code)) for name, code in faults.items()}
    return target


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    "code",
    [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO],
    ids=errno.errorcode.get,
)
def test_an_image_the_output_folder_cannot_take_is_written_whole_to_the_fallback(tmp_path, code):
    target = faulty(tmp_path, out=code)
    saved = publish(target, data=b"all of the image")
    target.write_sidecar(saved, {"prompt": "a red fox"})
    assert saved.fallback and saved.path == tmp_path / "fallback" / "2026-03-04" / "050607-a-red-fox-1.png"
    assert saved.path.read_bytes() == b"all of the image" and saved.bytes == len(b"all of the image")
    assert json.loads(saved.sidecar.read_text()) == {"prompt": "a red fox"}
    assert files_in(tmp_path / "out") == [] and leftovers(tmp_path) == []  # the partial write is gone


def test_after_the_output_folder_fills_up_later_images_go_straight_to_the_fallback(tmp_path):
    clock = Clock()
    target = faulty(tmp_path, clock, out=errno.ENOSPC)
    publish(target, index=1)
    target.writes.clear()
    second = publish(target, index=2)
    assert second.fallback and [p.parent for p in target.writes] == [tmp_path / "fallback"]


def test_the_output_folder_is_tried_again_once_the_retry_delay_has_passed(tmp_path):
    clock = Clock()
    target = faulty(tmp_path, clock, out=errno.ENOSPC)
    assert publish(target, index=1).fallback
    del target.faults[tmp_path / "out"]  # room again
    clock.now += ROOT_RETRY_SECONDS - 1
    assert publish(target, index=2).fallback
    clock.now += 2
    assert not publish(target, index=3).fallback


@pytest.mark.parametrize("code", [errno.EFBIG, errno.EACCES, errno.EIO], ids=errno.errorcode.get)
def test_an_error_that_may_not_recur_does_not_keep_the_next_image_from_the_output_folder(tmp_path, code):
    target = faulty(tmp_path, out=code)
    assert publish(target, index=1).fallback
    del target.faults[tmp_path / "out"]
    assert not publish(target, index=2).fallback


def test_a_full_output_folder_is_still_tried_when_the_fallback_cannot_take_an_image(tmp_path):
    target = faulty(tmp_path, out=errno.ENOSPC)
    assert publish(target, index=1).fallback
    del target.faults[tmp_path / "out"]
    target.faults[tmp_path / "fallback"] = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert not publish(target, index=2).fallback  # skipped first, but not dropped while it can take one


def test_an_image_no_folder_can_take_is_a_storage_error_naming_both_and_leaving_nothing(tmp_path):
    target = faulty(tmp_path, out=errno.ENOSPC, fallback=errno.EROFS)
    with pytest.raises(StorageError) as caught:
        target.write_bytes(b"pixels")
    text = caught.value.agent_text()
    assert f"{tmp_path / 'out'} (No space left on device)" in text
    assert f"{tmp_path / 'fallback'} (Read-only file system)" in text
    assert leftovers(tmp_path) == []


def test_an_image_that_cannot_be_published_in_the_output_folder_is_moved_to_the_fallback(tmp_path):
    target = store(tmp_path)
    temp = target.write_bytes(b"pixels")
    (tmp_path / "out" / "2026-03-04").write_text("a file where the date folder should be")
    saved = target.publish(temp, "fox", "png", 1)
    assert saved.fallback and saved.path.read_bytes() == b"pixels"
    assert saved.sidecar.is_file() and saved.sidecar.stat().st_size == 0  # reserved for write_sidecar
    assert not temp.exists() and leftovers(tmp_path) == []


def test_an_image_written_to_the_fallback_is_published_there(tmp_path):
    target = faulty(tmp_path, out=errno.ENOSPC)
    temp = target.write_bytes(b"pixels")
    assert temp.parent == tmp_path / "fallback"
    target.faults.clear()
    saved = target.publish(temp, "fox", "png", 1)
    assert saved.fallback and saved.path.parent == tmp_path / "fallback" / "2026-03-04"
    assert files_in(tmp_path / "out") == []


def test_an_image_the_fallback_cannot_publish_goes_back_to_the_output_folder_if_it_has_room(tmp_path):
    target = faulty(tmp_path, out=errno.ENOSPC)
    temp = target.write_bytes(b"pixels")
    (tmp_path / "fallback" / "2026-03-04").write_text("a file where the date folder should be")
    target.faults.clear()
    saved = target.publish(temp, "fox", "png", 1)
    assert not saved.fallback and saved.path.read_bytes() == b"pixels"
    assert not temp.exists() and leftovers(tmp_path) == []


def test_a_publish_that_fails_in_both_folders_keeps_one_copy_and_names_it(tmp_path):
    target = faulty(tmp_path)
    temp = target.write_bytes(b"pixels")
    (tmp_path / "out" / "2026-03-04").write_text("a file where the date folder should be")
    target.faults[tmp_path / "fallback"] = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(StorageError) as caught:
        target.publish(temp, "fox", "png", 1)
    text = caught.value.agent_text()
    assert str(tmp_path / "out") in text and str(tmp_path / "fallback") in text
    assert f"the image is at {temp}" in text and leftovers(tmp_path) == [temp]


# The sidecar: beside its image, and never a reason to lose track of it.


def test_the_sidecar_is_written_in_the_image_s_own_folder(tmp_path):
    target = faulty(tmp_path)
    saved = publish(target)
    target.writes.clear()
    target.write_sidecar(saved, {"prompt": "a red fox"})
    assert [p.parent for p in target.writes] == [saved.path.parent]


def test_a_sidecar_that_cannot_be_written_removes_its_reservation_and_says_where_the_image_is(tmp_path):
    target = faulty(tmp_path)
    saved = publish(target, data=b"the image")
    target.faults[saved.path.parent] = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(StorageError) as caught:
        target.write_sidecar(saved, {"prompt": "a red fox"})
    text = caught.value.agent_text()
    assert f"the image itself is saved at {saved.path}" in text and "No space left on device" in text
    assert saved.path.read_bytes() == b"the image"
    assert not saved.sidecar.exists() and files_in(saved.path.parent) == [saved.path.name]


def test_a_sidecar_in_the_fallback_sits_beside_its_image(tmp_path):
    target = faulty(tmp_path, out=errno.ENOSPC)
    saved = publish(target)
    target.write_sidecar(saved, {"prompt": "a red fox"})
    assert files_in(tmp_path / "fallback") == [
        "2026-03-04",
        "2026-03-04/050607-a-red-fox-1.json",
        "2026-03-04/050607-a-red-fox-1.png",
    ]


# The fallback folder: one per user, private, never reached through a symlink.


def test_the_default_fallback_is_a_folder_of_this_user_in_the_temp_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what TMPDIR sets; documented as settable
    assert Store(tmp_path / "out").fallback == tmp_path / f"imagegate-{os.geteuid()}"


def test_the_fallback_is_created_private(tmp_path):
    target = faulty(tmp_path, out=errno.ENOSPC)
    saved = publish(target)
    for folder in (tmp_path / "fallback", saved.path.parent):
        assert stat.S_IMODE(folder.lstat().st_mode) == 0o700


def test_the_fallback_is_not_made_until_it_is_needed(tmp_path):
    publish(store(tmp_path))
    assert not (tmp_path / "fallback").exists()


def test_a_fallback_of_ours_open_to_others_is_closed_to_0700_before_use(tmp_path):
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    fallback.chmod(0o777)
    saved = publish(faulty(tmp_path, out=errno.ENOSPC))
    assert saved.fallback and stat.S_IMODE(fallback.lstat().st_mode) == 0o700


def test_a_fallback_that_is_a_symlink_is_refused_and_nothing_is_written_where_it_points(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "fallback").symlink_to(elsewhere)
    with pytest.raises(StorageError) as caught:
        faulty(tmp_path, out=errno.ENOSPC).write_bytes(b"pixels")
    assert f"refused: {tmp_path / 'fallback'} is a symbolic link" in caught.value.agent_text()
    assert files_in(elsewhere) == [] and leftovers(tmp_path) == []


def test_a_fallback_that_is_a_symlink_is_refused_even_when_the_output_folder_has_room_later(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "fallback").symlink_to(elsewhere)
    target = faulty(tmp_path)
    temp = target.write_bytes(b"pixels")
    (tmp_path / "out" / "2026-03-04").write_text("a file where the date folder should be")
    with pytest.raises(StorageError) as caught:
        target.publish(temp, "fox", "png", 1)
    assert "symbolic link" in caught.value.agent_text() and str(temp) in caught.value.agent_text()
    assert files_in(elsewhere) == []


def test_a_fallback_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "fallback").write_text("not a folder")
    with pytest.raises(StorageError) as caught:
        faulty(tmp_path, out=errno.ENOSPC).write_bytes(b"pixels")
    assert f"refused: {tmp_path / 'fallback'} is not a folder" in caught.value.agent_text()


def test_a_fallback_owned_by_someone_else_is_refused(tmp_path):
    fallback = tmp_path / "fallback"
    fallback.mkdir(mode=0o700)
    try:
        os.chown(fallback, os.geteuid() + 4242, -1)
    except PermissionError:
        pytest.skip("only root can give a folder away")
    with pytest.raises(StorageError) as caught:
        faulty(tmp_path, out=errno.ENOSPC).write_bytes(b"pixels")
    assert f"refused: {fallback} belongs to uid {os.geteuid() + 4242}" in caught.value.agent_text()
    assert files_in(fallback) == []


def test_a_date_folder_planted_as_a_symlink_in_the_fallback_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fallback = tmp_path / "fallback"
    fallback.mkdir(mode=0o700)
    (fallback / "2026-03-04").symlink_to(elsewhere)
    target = faulty(tmp_path, out=errno.ENOSPC)
    temp = target.write_bytes(b"pixels")
    with pytest.raises(StorageError) as caught:
        target.publish(temp, "fox", "png", 1)
    assert f"refused: {fallback / '2026-03-04'} is a symbolic link" in caught.value.agent_text()
    assert files_in(elsewhere) == [] and temp.read_bytes() == b"pixels"
