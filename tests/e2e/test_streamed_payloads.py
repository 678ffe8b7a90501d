"""Large images, as upstreams send them at 1K and up (photo-like PNGs of megabytes): base64 replies are
decoded while the body streams in and their previews begun before it ends, URL results are decoded
while they download. Whatever the path, the saved file is exactly the upstream's image, and every
image has its preview."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx2
import pytest
from tests.support import KEYS, decoded_previews, emulator_env, metadata, serve
from tools.emulator import EmulatorClient, start_subprocess

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
SIZE = "1024x1024"


@pytest.fixture(scope="module")
def noisy() -> Iterator[EmulatorClient]:
    """An emulator whose PNGs weigh what real results weigh (megabytes of base64 each)."""
    with start_subprocess(env={"IMAGEGATE_EMULATOR_TEXTURE": "noise"}) as running:
        running.prewarm([SIZE])
        yield running


def upstream_image(emulator: EmulatorClient, fmt: str = "png") -> bytes:
    reply = httpx2.post(
        emulator.base_url("openai") + "/images/generations",
        json={"model": "gpt-image-1", "prompt": "reference", "size": SIZE, "output_format": fmt},
        headers={"Authorization": f"Bearer {KEYS['OPENAI_API_KEY']}"},
        timeout=60,
    )
    return base64.b64decode(reply.json()["data"][0]["b64_json"])


@pytest.mark.parametrize("provider", ["openai", "local"], ids=["base64-reply", "url-reply"])
async def test_large_images_are_saved_exactly_and_each_has_its_preview(noisy, tmp_path, provider):
    expected = upstream_image(noisy)
    assert len(base64.b64encode(expected)) > 1024 * 1024  # well past the streaming threshold
    async with serve(emulator_env(noisy, tmp_path)) as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "gpt-image-1", "provider": provider, "prompt": "grain", "size": SIZE, "n": 3},
        )
    assert not result.is_error, result.content
    meta = metadata(result)
    assert len(meta["images"]) == 3 and meta["warnings"] == []
    for image in meta["images"]:
        with open(image["path"], "rb") as saved:
            assert saved.read() == expected
    previews = decoded_previews(result)
    assert len(previews) == 3
    assert all(max(picture.size) <= 768 and len(data) <= 64 * 1024 for data, picture in previews)


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
@pytest.mark.parametrize("provider", ["openai", "local"], ids=["base64-reply", "url-reply"])
async def test_large_webp_and_jpeg_are_saved_exactly_with_their_previews(noisy, tmp_path, provider, fmt):
    async with serve(emulator_env(noisy, tmp_path)) as client:
        result = await client.call_tool(
            "generate_image",
            {
                "model": "gpt-image-1",
                "provider": provider,
                "prompt": "grain",
                "size": SIZE,
                "output_format": fmt,
            },
        )
    assert not result.is_error, result.content
    (image,) = metadata(result)["images"]
    assert image["mime_type"] == f"image/{fmt}" and image["bytes"] > 200 * 1024  # streamed, in many chunks
    with open(image["path"], "rb") as saved:
        assert saved.read() == upstream_image(noisy, fmt)
    assert len(decoded_previews(result)) == 1
