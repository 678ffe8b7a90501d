"""Input images that must never reach an upstream, over stdio against the emulator: paths that
are missing, folders or not images (a text file, a key, a copy of /etc/passwd renamed .png),
a decompression bomb, an image over the route's byte limit, too many references, a mismatched
mask, non-http(s) URLs, URLs the server would download from loopback or link-local
addresses, and paths outside IMAGEGATE_INPUT_ROOTS. Each is a clear `invalid_argument`
result naming the input, and the emulator sees no request. The same loopback URL and an
in-root path are then accepted where the settings allow them."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.support import base_env, error_of, image_bytes, serve, text_of
from tools.emulator import start_thread

from imagegate.catalog import load_catalog

pytestmark = pytest.mark.anyio

ROUTE = next(r for r in load_catalog().routes if (r.model, r.provider) == ("gpt-image-1", "openai"))
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def emulator():
    with start_thread() as emu:
        yield emu


class PictureServer:
    """A loopback web server that is not the provider: a real PNG at /cat.png, and a count of requests."""

    def __init__(self) -> None:
        body = image_bytes((64, 64))
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port


@pytest.fixture(scope="module")
def pictures() -> Iterator[PictureServer]:
    server = PictureServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(autouse=True)
def clean(emulator, pictures):
    emulator.reset()
    pictures.paths.clear()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG whose header claims width x height; its data covers a few rows (never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 8, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, pictures) -> dict[str, str]:
    """Every input a test refers to, by name; `root/` is the input root of the permissive server."""
    folder = tmp_path_factory.mktemp("inputs")
    root = folder / "root"
    root.mkdir()
    files = {
        "root/good.png": image_bytes((64, 64)),
        "good.png": image_bytes((64, 64)),
        "mask.png": image_bytes((64, 64), mode="RGBA"),
        "small-mask.png": image_bytes((32, 32), mode="RGBA"),
        "notes.png": b"meeting notes, renamed to look like a picture\n",
        "id_ed25519.png": PEM.encode(),
        "passwd.png": Path("/etc/passwd").read_bytes() if Path("/etc/passwd").is_file() else PASSWD.encode(),
        "bomb.png": bomb_png(20000, 20000),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    with (folder / "huge.png").open("wb") as sparse:  # over the byte limit without using the disk
        sparse.write(image_bytes((64, 64)))
        sparse.truncate((ROUTE.inputs.max_bytes or 0) + 1)
    (root / "escape.png").symlink_to(folder / "good.png")
    names = {name: str(folder / name) for name in [*files, "huge.png"]}
    loopback = f"http://127.0.0.1:{pictures.port}/cat.png"
    return names | {
        "folder": str(folder),
        "missing": str(folder / "no-such.png"),
        "root/escape.png": str(root / "escape.png"),
        "root/../good.png": f"{root}/../good.png",
        "file-url": "file:///etc/passwd",
        "ftp-url": "ftp://127.0.0.1/cat.png",
        "loopback-url": loopback,
        "localhost-url": f"http://localhost:{pictures.port}/cat.png",
        "metadata-url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/cat.png",
    }


def server_env(emulator, tmp: Path, **extra: str) -> dict[str, str]:
    return base_env(
        tmp,
        OPENAI_API_KEY="test-bad-input",
        OPENAI_BASE_URL=emulator.base_url("openai"),
        IMAGEGATE_MAX_RETRIES="0",
        **extra,
    )


@pytest.fixture(scope="module")
async def strict(emulator, tmp_path_factory):
    """A server with the default settings: any local path, public URLs only."""
    async with serve(server_env(emulator, tmp_path_factory.mktemp("strict"))) as client:
        yield client


@pytest.fixture(scope="module")
async def lenient(emulator, tmp_path_factory, inputs):
    """A server for a user with a local gateway and one picture folder."""
    root = str(Path(inputs["root/good.png"]).parent)
    env = server_env(
        emulator,
        tmp_path_factory.mktemp("lenient"),
        IMAGEGATE_ALLOW_PRIVATE_URLS="true",
        IMAGEGATE_INPUT_ROOTS=root,
    )
    async with serve(env) as client:
        yield client


def edit(inputs: dict[str, str], images: list[str], mask: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": "gpt-image-1",
        "prompt": "add a hat",
        "images": [inputs.get(i, i) for i in images],
    }
    if mask:
        args["mask"] = inputs[mask]
    return args


TOO_MANY = ["good.png"] * ((ROUTE.inputs.max_images or 16) + 1)
REFUSED = [
    # images, mask, argument named, fragments of the message
    pytest.param(["missing"], None, "images[0]", ["no-such.png", "does not exist"], id="missing-path"),
    pytest.param(["good.png", "folder"], None, "images[1]", ["is not a file"], id="directory"),
    pytest.param(
        ["notes.png"], None, "images[0]", ["notes.png", "is not a usable image"], id="text-renamed-png"
    ),
    pytest.param(["id_ed25519.png"], None, "images[0]", ["is not a usable image"], id="key-renamed-png"),
    pytest.param(["passwd.png"], None, "images[0]", ["is not a usable image"], id="passwd-renamed-png"),
    pytest.param(
        ["bomb.png"], None, "images[0]", ["is not a usable image", "too many pixels"], id="decompression-bomb"
    ),
    pytest.param(
        ["huge.png"], None, "images[0]", [f"the limit here is {ROUTE.inputs.max_bytes}"], id="over-byte-limit"
    ),
    pytest.param(
        TOO_MANY,
        None,
        "images",
        [f"images has {len(TOO_MANY)} items", f"1 to {len(TOO_MANY) - 1}"],
        id="too-many-references",
    ),
    pytest.param(
        ["good.png"],
        "small-mask.png",
        "mask",
        ["is 32x32", "must match images[0] (64x64)"],
        id="mask-other-size",
    ),
    pytest.param(
        ["file-url"],
        None,
        "images[0]",
        ["file:///etc/passwd", "file: scheme, which is not accepted"],
        id="file-url",
    ),
    pytest.param(["ftp-url"], None, "images[0]", ["ftp: scheme, which is not accepted"], id="ftp-url"),
    pytest.param(
        ["loopback-url"],
        None,
        "images[0]",
        ["points at 127.0.0.1", "IMAGEGATE_ALLOW_PRIVATE_URLS=true"],
        id="loopback-url",
    ),
    pytest.param(["localhost-url"], None, "images[0]", ["which is not a public address"], id="localhost-url"),
    pytest.param(
        ["good.png", "metadata-url"],
        None,
        "images[1]",
        ["points at 169.254.169.254", "allow_private_urls"],
        id="link-local-url",
    ),
]


@pytest.mark.parametrize(("images", "mask", "argument", "fragments"), REFUSED)
async def test_a_bad_input_is_a_clear_refusal_and_nothing_is_sent(
    strict, emulator, pictures, inputs, images, mask, argument, fragments
):
    result = await strict.call_tool("edit_image", edit(inputs, images, mask))

    error = error_of(result)
    assert (error["kind"], error["argument"]) == ("invalid_argument", argument), text_of(result)
    for fragment in fragments:
        assert fragment in text_of(result)
    assert emulator.requests() == [] and pictures.paths == []


async def test_a_refusal_never_shows_what_the_file_holds(strict, inputs):
    for name, secret in (
        ("passwd.png", "root:x:0"),
        ("id_ed25519.png", "PRIVATE KEY"),
        ("notes.png", "meeting"),
    ):
        result = await strict.call_tool("edit_image", edit(inputs, [name]))
        assert result.is_error and secret not in text_of(result)


async def test_the_default_server_reads_any_local_path(strict, emulator, inputs):
    result = await strict.call_tool("edit_image", edit(inputs, ["root/escape.png"], "mask.png"))
    assert not result.is_error, text_of(result)
    assert [r["endpoint"] for r in emulator.requests("openai")] == ["edits"]


async def test_a_loopback_url_is_downloaded_when_private_urls_are_allowed(
    lenient, emulator, pictures, inputs
):
    result = await lenient.call_tool("edit_image", edit(inputs, ["loopback-url"]))

    assert not result.is_error, text_of(result)
    assert pictures.paths == ["/cat.png"]
    (sent,) = emulator.requests("openai")
    assert [(p["name"], p["format"], p["width"]) for p in sent["form"] if "filename" in p] == [
        ("image", "PNG", 64)
    ]


async def test_a_path_inside_the_input_root_is_read(lenient, emulator, inputs):
    result = await lenient.call_tool("edit_image", edit(inputs, ["root/good.png"]))
    assert not result.is_error, text_of(result)
    assert len(emulator.requests("openai")) == 1


@pytest.mark.parametrize(
    ("name", "argument"),
    [
        ("good.png", "images[0]"),
        ("root/escape.png", "images[0]"),
        ("root/../good.png", "images[0]"),
        ("mask.png", "mask"),
    ],
    ids=["outside", "symlink-out-of-root", "dot-dot", "mask-outside"],
)
async def test_a_path_outside_the_input_root_is_refused(lenient, emulator, inputs, name, argument):
    images, mask = (["root/good.png"], name) if argument == "mask" else ([name], None)
    result = await lenient.call_tool("edit_image", edit(inputs, images, mask))

    error = error_of(result)
    assert (error["kind"], error["argument"]) == ("invalid_argument", argument)
    text = text_of(result)
    assert "is outside the folders input images may come from" in text and "IMAGEGATE_INPUT_ROOTS" in text
    assert emulator.requests() == []


async def test_both_servers_keep_serving_after_the_refusals(strict, lenient):
    for client in (strict, lenient):
        assert not (await client.call_tool("list_models", {})).is_error


def test_the_bomb_is_small_on_disk_and_claims_400_megapixels(inputs):
    data = Path(inputs["bomb.png"]).read_bytes()
    assert len(data) < 10_000 and struct.unpack(">II", data[16:24]) == (20000, 20000)
    assert os.stat(inputs["huge.png"]).st_blocks * 512 < 1_000_000  # sparse: the test does not fill the disk
