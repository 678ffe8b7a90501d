"""A client that gives up mid-call: upstream requests stop, images that already arrived are
kept (saving is shielded), no temporary file is left, and the server serves the next call."""

from __future__ import annotations

import time

import anyio
import pytest
from PIL import Image
from tests.support import base_env, serve, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_cancel_keeps_what_arrived_and_leaves_no_partial_files(tmp_path, emulator):
    emulator.reset()
    emulator.fault("openai", "generations", "slow", count=2, seconds=4)  # two of the four calls lag
    out = tmp_path / "out"
    env = base_env(tmp_path, OPENAI_API_KEY="test-key", OPENAI_BASE_URL=emulator.base_url("openai"))
    async with serve(env, stdio=True) as client:
        began = time.monotonic()
        with anyio.move_on_after(2):
            await client.call_tool("generate_image", {"model": "dall-e-3", "prompt": "a kept fox", "n": 4})
            pytest.fail("the call should still be waiting on the slow upstream")
        started = time.monotonic()
        listing = await client.call_tool("list_models", {})
        assert not listing.is_error and time.monotonic() - started < 5
        # Past the moment the slow calls would have answered: had they not been cancelled, their
        # images would be here now.
        await anyio.sleep(max(0.0, 5 - (time.monotonic() - began)))
        images = sorted(out.rglob("*.png"))
        assert len(images) == 2, images
        for path in images:
            with Image.open(path) as image:
                assert image.size == (1024, 1024)
            assert path.with_suffix(".json").is_file()
        assert not [p for p in out.rglob(".partial-*")]
        after = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "next"})
        assert not after.is_error, text_of(after)


async def test_cancel_stops_polling_an_async_task(tmp_path, emulator):
    emulator.reset()
    emulator.control("dashscope", "tasks", outcome="never")
    env = base_env(tmp_path, DASHSCOPE_API_KEY="test-key", DASHSCOPE_BASE_URL=emulator.base_url("dashscope"))

    def polls() -> int:
        return sum(1 for r in emulator.requests("dashscope") if r["method"] == "GET")

    async with serve(env, stdio=True) as client:
        with anyio.move_on_after(3):
            await client.call_tool("generate_image", {"model": "wan2.2-t2i-flash", "prompt": "never done"})
            pytest.fail("a task that never finishes should still be polling")
        await anyio.sleep(1)  # give an in-flight poll time to land
        after_cancel = polls()
        await anyio.sleep(6)  # longer than the poll interval grows to
        assert after_cancel >= 1 and polls() == after_cancel
        assert not (await client.call_tool("list_models", {})).is_error
