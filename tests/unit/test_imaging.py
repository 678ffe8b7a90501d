"""Previews from a download still in flight: Pillow reads an Incoming as a file, waiting for bytes
that have not come yet, and the result is the same as from the finished bytes."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from imagegate.imaging import make_preview, probe
from imagegate.incoming import Incoming


def png(size: int = 512) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(out, "PNG")
    return out.getvalue()


def feed(
    incoming: Incoming, data: bytes, chunk: int = 4096, pause: float = 0.0005, complete: bool = True
) -> threading.Thread:
    def run() -> None:
        for start in range(0, len(data), chunk):
            incoming.append(data[start : start + chunk])
            time.sleep(pause)
        incoming.end(complete)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_preview_made_while_the_bytes_arrive_equals_one_made_from_the_whole_file():
    data = png()
    incoming = Incoming()
    feeder = feed(incoming, data)
    streamed = make_preview(incoming.reader(), 256, 64 * 1024)
    feeder.join()
    assert streamed == make_preview(data, 256, 64 * 1024)
    assert bytes(incoming.buffer) == data
    assert probe(incoming.reader()).width == 512


def test_a_failed_download_ends_the_decode_with_an_error_not_a_hang():
    data = png()
    incoming = Incoming()
    feeder = feed(incoming, data[: len(data) // 2], complete=False)
    with pytest.raises(OSError):
        make_preview(incoming.reader(), 256, 64 * 1024)
    feeder.join()


def test_a_truncated_download_is_not_an_image():
    data = png()
    incoming = Incoming()
    feed(incoming, data[: len(data) // 2]).join()
    with pytest.raises(OSError, match="truncated"):
        make_preview(incoming.reader(), 256, 64 * 1024)
