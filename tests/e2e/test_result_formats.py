"""What a result says of what came back. Every format an upstream returns is saved, exactly, with its
preview: png, jpeg and webp, from a URL (downloaded and decoded while it arrives) and as base64 (small,
and large enough to be decoded while the reply streams in). Replicate's FLUX models answer webp by
default; a webp whose first 100 bytes hold a newline (the emulator's 336x192 one does) was once refused
as "not an image". A note on a ratio made at other pixels is for calls that gave that ratio, and an
error code read from a 200 body is never called an HTTP status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support import (
    TEST_KEY_PREFIX,
    VirtualTime,
    base_env,
    decoded_previews,
    emulator_env,
    kind_of,
    meta_of,
    provider_env,
    serve,
    text_of,
)
from tools.emulator import EmulatorClient
from tools.emulator.images import render

pytestmark = pytest.mark.anyio

FORMATS = ("webp", "png", "jpeg")
MIMES = {"webp": "image/webp", "png": "image/png", "jpeg": "image/jpeg"}


def replicate_env(tmp_path: Path, emulator: EmulatorClient) -> dict[str, str]:
    base = emulator.base_url("replicate")
    return base_env(
        tmp_path,
        REPLICATE_API_TOKEN=f"{TEST_KEY_PREFIX}replicate",
        REPLICATE_BASE_URL=base,
        IMAGEGATE_ALLOW_PRIVATE_URLS="true",  # its outputs come from another loopback host
    )


PATHS: dict[str, tuple[str, dict[str, Any]]] = {
    "url-replicate": ("replicate", {"model": "flux-schnell", "size": "16:9"}),
    "url-local": ("openai", {"model": "gpt-image-1", "provider": "local", "size": "1024x1024"}),
    "base64": ("openai", {"model": "gpt-image-1", "provider": "openai", "size": "1024x1024"}),
    "base64-streamed": ("openai", {"model": "gpt-image-2", "provider": "openai", "size": "3840x2160"}),
}
"""How the image travels -> (environment, call). 3840x2160 is over the 128 KiB of base64 (for png
and jpeg) from which a payload is decoded as the body arrives and its preview begun on the stream."""


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", PATHS)
async def test_each_format_on_each_path_is_saved_exactly_with_its_preview(tmp_path, emu, path, fmt):
    kind, call = PATHS[path]
    env = replicate_env(tmp_path, emu) if kind == "replicate" else emulator_env(emu, tmp_path)
    async with serve(env, **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {**call, "prompt": "a fox", "output_format": fmt})

    meta = meta_of(result)
    (image,) = meta["images"]
    assert image["mime_type"] == MIMES[fmt] and image["path"].endswith("." + fmt.replace("jpeg", "jpg"))
    sent = render(image["width"], image["height"], fmt)
    assert Path(image["path"]).read_bytes() == sent
    if path == "url-replicate" and fmt == "webp":
        assert b"\n" in sent[:100]  # the bytes that were refused
    assert len(decoded_previews(result)) == 1


SHAPE_CALLS = [
    ("imagen-3", "modelmax", "1792x1024", None),  # a range: pixels are named by their nearest ratio
    ("dall-e-3", "openai", "1792x1024", None),
    ("dall-e-3", "openai", "16:9", "size 16:9 is made as 1792x1024 (1.75:1)"),
    ("flux-2-pro", "zhaotou", "1792x1024", None),
    ("flux-2-pro", "zhaotou", "16:9", None),  # made as 1280x720: the very shape
    ("dall-e-3", "openai", None, None),  # no size: the route's default, asked by nobody
]


@pytest.mark.parametrize(("model", "provider", "size", "note"), SHAPE_CALLS)
async def test_a_ratio_made_at_other_pixels_is_noted_only_when_the_call_gave_that_ratio(
    tmp_path, emu, model, provider, size, note
):
    sized = {"size": size} if size else {}
    async with serve(emulator_env(emu, tmp_path)) as client:
        result = await client.call_tool(
            "generate_image", {"model": model, "provider": provider, "prompt": "a fox", **sized}
        )

    shape = [w for w in meta_of(result)["warnings"] if "give pixels" in w]
    assert len(shape) == (note is not None) and all(note in w for w in shape), shape


IN_200 = [
    ("atalk", "flux-2-pro"),  # {code: 500, msg}
    ("openrouter", "flux-2-pro"),  # {error: {code: 500, message}}
    ("mixroute", "gpt-image-1"),  # {error: {message, code}} or {code, msg, data}
    ("modelgate", "seedream-4.0"),  # {status: error, code: 500, message}
]


@pytest.mark.parametrize(("provider", "model"), IN_200)
async def test_an_error_code_inside_a_200_body_is_not_called_an_http_status(tmp_path, emu, provider, model):
    emu.fault(provider, "*", "error_in_200", status=500, code=500, message="Internal error", count=8)
    env = provider_env(tmp_path, emu, provider, f"{TEST_KEY_PREFIX}{provider}")
    async with serve(env, **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": model, "provider": provider, "prompt": "x"}
        )

    assert result.is_error and kind_of(result) == "upstream_error"
    assert {r["status"] for r in emu.requests(provider)} == {200}
    assert "HTTP 500" not in text_of(result) and "500" in text_of(result), text_of(result)
