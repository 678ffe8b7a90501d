"""edit_image end to end over the OpenAI Images protocol: every input form (file, data: URL,
http URL), several references, masks, and the inputs refused before anything is sent."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.support import (
    EMULATED,
    data_url,
    emulator_env,
    error_of,
    metadata,
    open_image,
    serve,
    sidecar_of,
    text_of,
    write_image,
)

pytestmark = pytest.mark.anyio

PROMPT = "give the fox a hat"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class FileServer:
    """A loopback web server that is not the provider: /cat.png, /notes.txt, anything else 404."""

    def __init__(self) -> None:
        png = io.BytesIO()
        Image.new("RGB", (64, 64), "blue").save(png, "PNG")
        self.bodies = {
            "/cat.png": (png.getvalue(), "image/png"),
            "/notes.txt": (b"not an image", "image/png"),
        }
        self.seen: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append({k.lower(): v for k, v in self.headers.items()})
                body, mime = server.bodies.get(self.path, (b"gone", "text/plain"))
                self.send_response(200 if self.path in server.bodies else 404)
                self.send_header("content-type", mime)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(autouse=True)
def clean(emulator, files):
    emulator.reset()
    files.seen.clear()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, files) -> dict[str, str]:
    """Every input an edit test refers to, by name."""
    folder = tmp_path_factory.mktemp("inputs")
    made = {
        "png64": write_image(folder / "fox.png", (64, 64)),
        "jpg64": write_image(folder / "hat.jpg", (64, 64), fmt="JPEG"),
        "mask64": write_image(folder / "mask.png", (64, 64), "RGBA"),
        "mask32": write_image(folder / "small-mask.png", (32, 32), "RGBA"),
        "jpgmask64": write_image(folder / "mask.jpg", (64, 64), fmt="JPEG"),
        "wide": write_image(folder / "wide.png", (96, 64)),
    }
    fake = folder / "notes.png"
    fake.write_text("this is text, renamed")
    made |= {"fake": str(fake), "folder": str(folder), "missing": str(folder / "no-such.png")}
    made |= {
        "data_png": data_url(made["png64"]),
        "http_png": f"{files.url}/cat.png",
        "http_text": f"{files.url}/notes.txt",
    }
    made["http_gone"] = f"{files.url}/gone.png"
    return made


@pytest.fixture(scope="module")
async def client(emulator, tmp_path_factory):
    async with serve(
        emulator_env(emulator, tmp_path_factory.mktemp("edit"), IMAGEGATE_ALLOW_PRIVATE_URLS="true")
    ) as session:
        yield session


def arguments(inputs: dict[str, str], args: dict[str, Any]) -> dict[str, Any]:
    """Replace input names by the paths or URLs the `inputs` fixture made."""
    resolved = {"prompt": PROMPT, **args}
    if "images" in args:
        resolved["images"] = [inputs[name] for name in args["images"]]
    if "mask" in args:
        resolved["mask"] = inputs[args["mask"]]
    return resolved


def parts(record: dict[str, Any]) -> list[tuple[str, str | None, int | None, int | None]]:
    """The file parts of a multipart request the emulator logged: (field, format, width, height)."""
    return [(p["name"], p["format"], p["width"], p["height"]) for p in record["form"] if "filename" in p]


def fields(record: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in record["form"] if "value" in p}


PNG64, JPEG64 = ("image", "PNG", 64, 64), ("image", "JPEG", 64, 64)
EDITS = [
    # arguments (inputs by name), provider, file parts the upstream received, output size
    pytest.param(
        {"model": "gpt-image-1", "images": ["png64"], "size": "1536x1024"},
        "openai",
        [PNG64],
        (1536, 1024),
        id="local-file",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["png64", "jpg64", "wide"]},
        "openai",
        [("image[]", "PNG", 64, 64), ("image[]", "JPEG", 64, 64), ("image[]", "PNG", 96, 64)],
        (1024, 1024),
        id="several-references",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["png64"], "mask": "mask64"},
        "openai",
        [PNG64, ("mask", "PNG", 64, 64)],
        (1024, 1024),
        id="mask",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["data_png"]}, "openai", [PNG64], (1024, 1024), id="data-url"
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["http_png"]},
        "openai",
        [PNG64],
        (1024, 1024),
        id="http-url-uploaded",
    ),
    pytest.param(
        {"model": "dall-e-2", "images": ["png64"], "mask": "mask64", "size": "512x512"},
        "openai",
        [PNG64, ("mask", "PNG", 64, 64)],
        (512, 512),
        id="dall-e-2-square-png-and-mask",
    ),
    pytest.param(
        {
            "model": "gemini-3-pro-image-preview",
            "provider": "zhaotou",
            "images": ["jpg64"],
            "size": "1792x1024",
        },
        "zhaotou",
        [JPEG64],
        (1792, 1024),
        id="zhaotou-gemini",
    ),
    pytest.param(
        {"model": "gpt-image-1", "provider": "local", "images": ["png64"]},
        "local",
        [PNG64],
        (1024, 1024),
        id="compat-file",
    ),
    pytest.param(
        {"model": "gpt-image-1", "provider": "local", "images": ["http_png"]},
        "local",
        [PNG64],
        (1024, 1024),
        id="compat-http-url",
    ),
]


@pytest.mark.parametrize(("args", "provider", "expected_parts", "size"), EDITS)
async def test_each_input_form_reaches_the_upstream_as_an_uploaded_image(
    client, emulator, inputs, args, provider, expected_parts, size
):
    result = await client.call_tool("edit_image", arguments(inputs, args))
    assert not result.is_error, text_of(result)

    (sent,) = emulator.requests(EMULATED[provider])
    assert sent["endpoint"] == "edits" and parts(sent) == expected_parts
    assert fields(sent)["prompt"] == PROMPT and fields(sent)["model"] == args["model"]
    (entry,) = metadata(result)["images"]
    assert open_image(entry["path"]).size == size
    side = sidecar_of(entry["path"])
    assert side["tool"] == "edit_image" and len(side["inputs"]) == len(args["images"]) + ("mask" in args)
    assert all(len(shown) < 300 for shown in side["inputs"])  # a data: URL is abbreviated, never copied whole


@pytest.mark.parametrize(("model", "response_format"), [("gpt-image-1", None), ("dall-e-2", "b64_json")])
async def test_an_edit_sends_response_format_only_to_models_that_take_it(
    client, emulator, inputs, model, response_format
):
    result = await client.call_tool("edit_image", arguments(inputs, {"model": model, "images": ["png64"]}))
    assert not result.is_error, text_of(result)
    (sent,) = emulator.requests("openai")
    assert fields(sent).get("response_format") == response_format


async def test_an_input_url_on_another_host_is_fetched_without_the_key(client, inputs, files):
    result = await client.call_tool(
        "edit_image", arguments(inputs, {"model": "gpt-image-1", "images": ["http_png"]})
    )
    assert not result.is_error, text_of(result)
    (request,) = files.seen
    assert "authorization" not in request and not any("test-" in value for value in request.values())


REFUSED = [
    # arguments (inputs by name), argument named, fragments of the message
    pytest.param(
        {"model": "gpt-image-1", "images": ["png64"], "mask": "mask32"},
        "mask",
        ["is 32x32", "must match images[0] (64x64)"],
        id="mask-other-size",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["png64"], "mask": "jpgmask64"},
        "mask",
        ["image/jpeg", "takes png"],
        id="mask-not-png",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["fake"]},
        "images[0]",
        ["notes.png", "is not a usable image"],
        id="text-renamed-png",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["png64", "folder"]},
        "images[1]",
        ["is not a file"],
        id="directory",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["missing"]},
        "images[0]",
        ["no-such.png", "does not exist"],
        id="missing-path",
    ),
    pytest.param(
        {"model": "gpt-image-1", "images": ["http_text"]},
        "images[0]",
        ["notes.txt", "is not a usable image"],
        id="url-not-an-image",
    ),
    pytest.param(
        {"model": "dall-e-2", "images": ["jpg64"]},
        "images[0]",
        ["image/jpeg", "takes png"],
        id="dall-e-2-takes-png-only",
    ),
    pytest.param(
        {"model": "gemini-3-pro-image-preview", "provider": "zhaotou", "images": ["png64", "jpg64"]},
        "images",
        ["images has 2 items", "takes 1 to 1"],
        id="too-many-for-zhaotou",
    ),
    pytest.param(
        {"model": "imagen-3", "provider": "modelmax", "images": ["png64"]},
        "provider",
        ["imagen-3 via modelmax cannot edit"],
        id="modelmax-imagen",
    ),
    pytest.param(
        {"model": "gpt-image-1", "provider": "modelmax", "images": ["png64"]},
        "provider",
        [
            "gpt-image-1 via modelmax cannot edit images",
            "providers that can edit gpt-image-1: openai",
            "local",
        ],
        id="modelmax-names-editors",
    ),
    pytest.param(
        {"model": "imagen-3", "images": ["png64"]},
        "model",
        ["imagen-3 cannot edit images", "gpt-image-1"],
        id="model-cannot-edit",
    ),
]


@pytest.mark.parametrize(("args", "argument", "fragments"), REFUSED)
async def test_a_bad_input_is_refused_before_any_upstream_request(
    client, emulator, inputs, args, argument, fragments
):
    result = await client.call_tool("edit_image", arguments(inputs, args))

    error = error_of(result)
    assert (error["kind"], error["argument"]) == ("invalid_argument", argument)
    for fragment in fragments:
        assert fragment in text_of(result)
    assert emulator.requests() == []


async def test_an_input_url_that_does_not_answer_is_blamed_on_the_argument_not_the_provider(
    client, emulator, inputs
):
    result = await client.call_tool(
        "edit_image", arguments(inputs, {"model": "gpt-image-1", "images": ["http_gone"]})
    )

    error = error_of(result)
    assert (error["kind"], error.get("argument")) == ("invalid_argument", "images[0]"), text_of(result)
    assert inputs["http_gone"] in text_of(result) and "404" in text_of(result)
    assert emulator.requests() == []


async def test_the_server_keeps_serving_after_refused_edits(client, inputs):
    for name in ("fake", "folder", "missing"):
        assert (
            await client.call_tool(
                "edit_image", arguments(inputs, {"model": "gpt-image-1", "images": [name]})
            )
        ).is_error
    result = await client.call_tool(
        "edit_image", arguments(inputs, {"model": "gpt-image-1", "images": ["png64"]})
    )
    assert not result.is_error, text_of(result)
    assert Path(metadata(result)["images"][0]["path"]).is_file()
