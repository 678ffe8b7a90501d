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


def encoded(fmt: str, size: tuple[int, int] = (266, 150)) -> bytes:
    """A picture in `fmt`; 266 px wide puts a newline byte (0x0A, the width's low byte) in a webp's
    first 100 bytes, as in many real webp files."""
    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["WEBP", "PNG", "JPEG", "GIF", "BMP", "TIFF"])
def test_every_format_reads_from_a_download_in_flight_as_from_its_bytes(fmt):
    data = encoded(fmt)
    if fmt == "WEBP":
        assert b"\n" in data[:100]  # what made Pillow's IM plugin call readline on the reader
    incoming = Incoming()
    feeder = feed(incoming, data, chunk=1999)
    info = probe(incoming.reader())
    streamed = make_preview(incoming.reader(), 128, 32 * 1024)
    feeder.join()
    assert info == probe(data) and (info.width, info.height) == (266, 150)
    assert streamed is not None and streamed == make_preview(data, 128, 32 * 1024)


def test_the_reader_is_a_whole_binary_file_while_the_bytes_arrive():
    data = b"first line\nsecond line\n" + bytes(range(256)) * 40
    incoming = Incoming()
    feeder = feed(incoming, data, chunk=7, pause=0.00005)
    reader = incoming.reader()
    assert isinstance(reader, io.RawIOBase) and reader.readable() and reader.seekable()
    assert reader.readline() == b"first line\n"
    assert reader.peek(1)[:1] == b"s" and reader.tell() == 11  # peek does not move
    assert reader.readline() == b"second line\n"
    target = bytearray(300)
    assert reader.readinto(target) == 300 and bytes(target) == data[23:323]
    assert reader.read() == data[323:]
    assert reader.read(10) == b"" and reader.readline() == b""  # at the end
    reader.seek(-4, io.SEEK_END)
    assert reader.read() == data[-4:]
    feeder.join()
