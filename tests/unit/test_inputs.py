"""How n splits into per-call batches, and how input images are loaded (files,
data: URLs, fetched URLs, URLs passed through), checked against the route and refused."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from imagegate.errors import InvalidRequest, UpstreamError
from imagegate.generation import batches
from imagegate.inputs import load_inputs
from imagegate.service import Service, build_service

pytestmark = pytest.mark.anyio

CONFIG = """
[providers.urlish]
base_url = "http://127.0.0.1:9/v1"
key_env = "URLISH_API_KEY"

[[providers.urlish.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
inputs = { forms = ["url", "file"] }

[providers.tight]
base_url = "http://127.0.0.1:9/v1"
key_env = "TIGHT_API_KEY"

[[providers.tight.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
inputs = { max_bytes = 3000, min_edge = 16, max_edge = 128, max_pixels = 10000, formats = ["png"] }

[providers.shaped]
base_url = "http://127.0.0.1:9/v1"
key_env = "SHAPED_API_KEY"

[[providers.shaped.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
inputs = { min_ratio = "1:2", max_ratio = "2:1", mask_max_bytes = 1000 }

[providers.square]
base_url = "http://127.0.0.1:9/v1"
key_env = "SQUARE_API_KEY"

[[providers.square.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
inputs = { min_ratio = "1:1", max_ratio = "1:1", max_total_bytes = 1 }
"""
URL = "https://images.example.test/cat.png"
OPENAI_LIMIT = 52428800


@pytest.mark.parametrize(
    ("n", "per_call", "plan"),
    [
        (1, 1, [1]),
        (3, 1, [1, 1, 1]),
        (5, 2, [2, 2, 1]),
        (4, 2, [2, 2]),
        (4, 10, [4]),
        (10, 10, [10]),
        (12, 10, [10, 2]),
        (10, 3, [3, 3, 3, 1]),
    ],
)
def test_n_splits_into_full_batches_then_the_remainder(n, per_call, plan):
    assert batches(n, per_call) == plan
    assert sum(plan) == n and all(0 < size <= per_call for size in plan)


def encode(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 200, 10, 128) if mode == "RGBA" else "green").save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    folder = tmp_path_factory.mktemp("planner")
    (folder / "config.toml").write_text(CONFIG)
    env = {
        "OPENAI_API_KEY": "test-x",
        "URLISH_API_KEY": "test-x",
        "TIGHT_API_KEY": "test-x",
        "SHAPED_API_KEY": "test-x",
        "SQUARE_API_KEY": "test-x",
        "IMAGEGATE_CONFIG": str(folder / "config.toml"),
        "IMAGEGATE_OUTPUT_DIR": str(folder / "out"),
    }
    return build_service(env)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("inputs")
    made = {
        "png": (40, 30, "PNG", "RGB"),
        "jpg": (40, 30, "JPEG", "RGB"),
        "mask": (40, 30, "PNG", "RGBA"),
        "small_mask": (20, 15, "PNG", "RGBA"),
        "tiny": (8, 8, "PNG", "RGB"),
        "wide": (200, 20, "PNG", "RGB"),
        "many_pixels": (120, 100, "PNG", "RGB"),
        "square": (30, 30, "PNG", "RGB"),
    }
    paths = {}
    for name, (w, h, fmt, mode) in made.items():
        path = folder / f"{name}.{fmt.lower()}"
        path.write_bytes(encode((w, h), fmt, mode))
        paths[name] = str(path)
    (folder / "text.png").write_text("not an image at all")
    with (folder / "huge.png").open("wb") as sparse:
        sparse.truncate(5000)
    paths |= {
        "text": str(folder / "text.png"),
        "huge": str(folder / "huge.png"),
        "folder": str(folder),
        "missing": str(folder / "gone.png"),
    }
    return paths


class Fetcher:
    """The service's URL fetch, replaced: serves bodies by URL and records what was asked."""

    def __init__(self, bodies: dict[str, bytes] | None = None) -> None:
        self.bodies = bodies or {}
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, url: str, limit: int, address: str | None) -> bytes:
        self.calls.append((url, limit))
        if url not in self.bodies:
            raise UpstreamError("the image URL answered HTTP 404")
        return self.bodies[url]


def request(
    service: Service, files: dict[str, str], provider: str, images: list[str], mask: str | None = None
):
    resolve = lambda ref: files.get(ref, ref)  # noqa: E731 - a name from the fixture, else the reference itself
    args = {
        "model": "gpt-image-1",
        "prompt": "x",
        "provider": provider,
        "images": [resolve(i) for i in images],
    }
    if mask:
        args["mask"] = resolve(mask)
    return service.validate("edit_image", args)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


async def test_a_file_a_data_url_and_a_fetched_url_all_become_checked_bytes(service, files):
    fetch = Fetcher({URL: encode((64, 48), "WEBP")})
    refs = ["png", data_url(encode((32, 32), "JPEG"), "image/jpeg"), URL]

    images, mask = await load_inputs(request(service, files, "openai", refs, "mask"), fetch)

    assert [(i.name, i.mime, i.width, i.height, i.url) for i in images] == [
        ("images[0]", "image/png", 40, 30, None),
        ("images[1]", "image/jpeg", 32, 32, None),
        ("images[2]", "image/webp", 64, 48, None),
    ]
    assert images[0].data == Path(files["png"]).read_bytes()
    assert mask is not None and (mask.name, mask.mime, mask.width, mask.height) == (
        "mask",
        "image/png",
        40,
        30,
    )
    assert fetch.calls == [(URL, OPENAI_LIMIT)]


async def test_a_url_goes_through_untouched_to_a_route_that_takes_urls(service, files):
    fetch = Fetcher()
    images, _ = await load_inputs(request(service, files, "urlish", [URL, "png"]), fetch)
    assert (images[0].url, images[0].data) == (URL, None)
    assert images[1].data is not None and fetch.calls == []


async def test_a_data_url_is_judged_by_its_bytes_not_its_label(service, files):
    images, _ = await load_inputs(
        request(service, files, "openai", [data_url(encode((16, 16), "PNG"), "image/jpeg")]), Fetcher()
    )
    assert images[0].mime == "image/png"


REFUSALS = [
    # provider, images, mask, argument named, fragment of the message
    pytest.param("openai", ["missing"], None, "images[0]", "does not exist", id="missing-file"),
    pytest.param("openai", ["folder"], None, "images[0]", "is not a file", id="directory"),
    pytest.param("openai", ["text"], None, "images[0]", "is not a usable image", id="text-named-png"),
    pytest.param(
        "openai", ["png", "text"], None, "images[1]", "is not a usable image", id="second-image-named"
    ),
    pytest.param(
        "openai",
        ["data:image/png,plain-text"],
        None,
        "images[0]",
        "is not a base64 data: URL",
        id="data-url-without-base64",
    ),
    pytest.param(
        "openai",
        ["data:image/png;base64,***"],
        None,
        "images[0]",
        "does not hold valid base64",
        id="data-url-bad-base64",
    ),
    pytest.param(
        "openai",
        [data_url(b"just some text")],
        None,
        "images[0]",
        "is not a usable image",
        id="data-url-not-an-image",
    ),
    pytest.param(
        "openai",
        ["https://images.example.test/notes.txt"],
        None,
        "images[0]",
        "is not a usable image",
        id="fetched-not-an-image",
    ),
    pytest.param(
        "openai",
        ["png"],
        "small_mask",
        "mask",
        "is 20x15; it must match images[0] (40x30)",
        id="mask-other-size",
    ),
    pytest.param("openai", ["png"], "jpg", "mask", "takes png", id="mask-not-png"),
    pytest.param(
        "tight",
        ["huge"],
        None,
        "images[0]",
        "is 5000 bytes; the limit here is 3000",
        id="file-over-byte-limit",
    ),
    pytest.param(
        "tight",
        [data_url(b"\0" * 4000)],
        None,
        "images[0]",
        "holds more than 3000 bytes",
        id="data-url-over-byte-limit",
    ),
    pytest.param(
        "tight",
        ["jpg"],
        None,
        "images[0]",
        "is image/jpeg; gpt-image-1 via tight takes png",
        id="format-not-taken",
    ),
    pytest.param(
        "tight",
        ["tiny"],
        None,
        "images[0]",
        "is 8x8; gpt-image-1 via tight takes 16–128 px a side",
        id="edge-too-short",
    ),
    pytest.param("tight", ["wide"], None, "images[0]", "is 200x20", id="edge-too-long"),
    pytest.param("tight", ["many_pixels"], None, "images[0]", "too many pixels", id="too-many-pixels"),
    pytest.param(
        "shaped",
        ["wide"],
        None,
        "images[0]",
        "is 200x20; gpt-image-1 via shaped takes width:height from 1:2 to 2:1",
        id="too-wide",
    ),
    pytest.param(
        "square",
        ["png"],
        None,
        "images[0]",
        "is 40x30; gpt-image-1 via square takes width:height 1:1",
        id="not-square",
    ),
    pytest.param(
        "shaped",
        ["png"],
        "huge",
        "mask",
        "is 5000 bytes; the limit here is 1000",
        id="mask-over-its-byte-limit",
    ),
    pytest.param(
        "square",
        ["square"],
        None,
        "images",
        "takes at most 1 bytes of input images in one request",
        id="request-over-its-byte-limit",
    ),
]


@pytest.mark.parametrize(("provider", "images", "mask", "argument", "fragment"), REFUSALS)
async def test_a_bad_input_is_refused_naming_the_argument(
    service, files, provider, images, mask, argument, fragment
):
    fetch = Fetcher({"https://images.example.test/notes.txt": b"hello"})
    with pytest.raises(InvalidRequest) as caught:
        await load_inputs(request(service, files, provider, images, mask), fetch)
    assert caught.value.argument == argument
    assert fragment in caught.value.agent_text()
    assert len(caught.value.agent_text()) < 400  # a long data: URL is shown abbreviated


async def test_a_url_that_cannot_be_fetched_is_refused_naming_the_input_and_fetched_once(service, files):
    fetch = Fetcher()
    with pytest.raises(InvalidRequest) as caught:
        await load_inputs(request(service, files, "openai", ["png", URL]), fetch)
    assert caught.value.argument == "images[1]"
    assert URL in caught.value.agent_text() and "404" in caught.value.agent_text()
    assert fetch.calls == [(URL, OPENAI_LIMIT)]


async def test_a_file_over_the_routes_byte_limit_is_refused(service, files, tmp_path):
    sparse = tmp_path / "enormous.png"
    with sparse.open("wb") as out:
        out.truncate(OPENAI_LIMIT + 1)  # a sparse file: reading it would take 50 MB of memory
    with pytest.raises(InvalidRequest, match="the limit here is 52428800"):
        await load_inputs(request(service, files, "openai", [str(sparse)]), Fetcher())
