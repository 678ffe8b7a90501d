"""The store: names from date, time and a safe slug; atomic, never-clobbering publishes; the
fallback directory when the output directory cannot be written; one sidecar per image."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from imagegate.errors import StorageError
from imagegate.storage import SLUG_MAX, Store, slugify

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


def test_discard_removes_a_temporary_file(tmp_path):
    target = store(tmp_path)
    temp = target.write_bytes(b"unwanted")
    target.discard(temp)
    target.discard(temp)  # twice is fine
    assert leftovers(tmp_path) == []


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
