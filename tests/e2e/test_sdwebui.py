"""Stable Diffusion WebUI / Forge end to end: the real server (in memory) against the emulator's WebUI over
loopback HTTP. The server's checkpoints become the `checkpoint` knob (sent as override_settings); img2img
carries the input and the mask as base64 with the transparent-is-repainted convention; /progress is
relayed while the call runs; a cancelled call interrupts the server; a login is sent as HTTP Basic."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.support import base_env, kind_of, meta_of, serve, text_of, write_image
from tools.emulator import EmulatorClient
from tools.emulator.sdwebui import CHECKPOINTS

pytestmark = pytest.mark.anyio


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    return base_env(tmp_path, SDWEBUI_URL=emulator.base_url("sdwebui"), **extra)


def calls(emulator: EmulatorClient, endpoint: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("sdwebui") if r["endpoint"] == endpoint]


async def fast(seconds: float) -> None:
    """The progress poll's wait, shortened: the emulator's steps take real (if short) time."""
    await anyio.sleep(min(seconds, 0.02))


async def test_generates_with_the_chosen_checkpoint_and_relays_progress(tmp_path, emu):
    emu.control("sdwebui", "run", step_seconds=0.01)
    said: list[str] = []

    async def record(progress: float, total: float | None, message: str | None) -> None:
        said.append(message or "")

    async with serve(env_for(tmp_path, emu), sleep=fast) as client:
        listing = text_of(await client.call_tool("list_models", {"provider": "sdwebui"}))
        assert CHECKPOINTS[1] in listing, listing
        result = await client.call_tool(
            "generate_image",
            {"model": "sdwebui", "prompt": "a harbour", "size": "16:9", "n": 3, "seed": 42,
             "checkpoint": CHECKPOINTS[1], "guidance_scale": 6.5},
            progress_callback=record,
        )  # fmt: skip
    meta = meta_of(result)
    assert [(i["width"], i["height"]) for i in meta["images"]] == [(1344, 768)] * 3
    assert [i["seed"] for i in meta["images"]] == [42, 43, 44]
    (call,) = calls(emu, "txt2img")
    body = call["json"]
    assert body["override_settings"] == {"sd_model_checkpoint": CHECKPOINTS[1]}
    assert (body["batch_size"], body["n_iter"], body["cfg_scale"]) == (3, 1, 6.5)
    assert any(m.startswith("sdwebui: step ") for m in said), said
    assert calls(emu, "progress")


async def test_an_edit_sends_the_image_and_the_mask_to_be_repainted_where_transparent(tmp_path, emu):
    image = write_image(tmp_path / "photo.png", (96, 64))
    mask = write_image(tmp_path / "mask.png", (96, 64), mode="RGBA")
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "edit_image", {"model": "sdwebui", "prompt": "a boat", "images": [image], "mask": mask}
        )
    assert [(i["width"], i["height"]) for i in meta_of(result)["images"]] == [(96, 64)]
    (call,) = calls(emu, "img2img")
    body = call["json"]
    assert base64.b64decode(body["init_images"][0]) == Path(image).read_bytes()
    assert base64.b64decode(body["mask"]) == Path(mask).read_bytes()
    assert body["inpainting_mask_invert"] == 1 and (body["width"], body["height"]) == (96, 64)


async def test_a_login_is_sent_as_basic_auth_and_a_wrong_one_names_the_variable(tmp_path, emu):
    emu.configure("sdwebui", keys=["test-user:right"])
    async with serve(env_for(tmp_path, emu, SDWEBUI_AUTH="test-user:right")) as client:
        meta_of(await client.call_tool("generate_image", {"model": "sdwebui", "prompt": "a fox"}))
    async with serve(env_for(tmp_path, emu, SDWEBUI_AUTH="test-user:wrong")) as client:
        result = await client.call_tool("generate_image", {"model": "sdwebui", "prompt": "a fox"})
    assert kind_of(result) == "auth_failed" and "SDWEBUI_AUTH" in text_of(result)
    assert "wrong" not in text_of(result)


async def test_a_cancelled_call_interrupts_the_server(tmp_path, emu):
    emu.control("sdwebui", "run", outcome="hold")
    async with serve(env_for(tmp_path, emu), sleep=fast) as client:
        with anyio.move_on_after(0.5):
            await client.call_tool("generate_image", {"model": "sdwebui", "prompt": "never"})
            pytest.fail("a held call should not finish")
        with anyio.fail_after(5):
            while not calls(emu, "interrupt"):
                await anyio.sleep(0.05)


async def test_a_malformed_field_is_the_servers_422_in_its_words(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "sdwebui", "prompt": "a fox", "extra": {"steps": "many"}}
        )
    assert kind_of(result) == "upstream_error" and "steps" in text_of(result)
