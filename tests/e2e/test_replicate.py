"""Replicate end to end: the real server (in memory; one stdio test) against the emulator's Replicate
protocol. Sync `Prefer: wait`, polling `urls.get`, the deadline and cancel, outputs downloaded from another
origin without the key, each documented failure mapped to its error kind with Replicate's own message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.support import TEST_KEY_PREFIX, VirtualTime, base_env, error_kind, meta_of, serve, text_of
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = f"{TEST_KEY_PREFIX}replicate"


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    # Outputs come from "localhost", another host than the API's 127.0.0.1 (replicate.delivery is not
    # api.replicate.com); as a loopback address it is fetched only with private URLs allowed.
    extra.setdefault("IMAGEGATE_ALLOW_PRIVATE_URLS", "true")
    base = emulator.base_url("replicate")
    return base_env(tmp_path, REPLICATE_API_TOKEN=KEY, REPLICATE_BASE_URL=base, **extra)


def predictions(emulator: EmulatorClient, endpoint: str = "predictions") -> list[dict[str, Any]]:
    return [r for r in emulator.requests("replicate") if r["endpoint"] == endpoint]


async def test_sync_wait_answers_the_images_in_the_create_reply_and_downloads_them_without_the_key(
    tmp_path, emu
):
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "flux-schnell", "prompt": "a fox", "n": 3, "size": "16:9", "output_format": "png"},
        )

    meta = meta_of(result)
    assert meta["calls"] == 1 and len(meta["images"]) == 3  # num_outputs 3 in one prediction
    assert {i["mime_type"] for i in meta["images"]} == {"image/png"}
    (create,) = predictions(emu)
    assert create["json"] == {
        "input": {"prompt": "a fox", "aspect_ratio": "16:9", "num_outputs": 3, "output_format": "png"}
    }
    assert create["path"].endswith("/v1/models/black-forest-labs/flux-schnell/predictions")
    assert (create["prefer"], create["cancel_after"]) == ("wait", "5m")
    assert [r["endpoint"] for r in emu.requests("replicate")] == ["predictions"]  # nothing polled
    assert emu.files()["downloads"] == 3
    assert meta["usage"] == [{"predict_time": 0.42}]
    assert KEY not in text_of(result)


async def test_a_prediction_still_processing_is_polled_at_urls_get(tmp_path, emu):
    emu.control("replicate", "predictions", processing_polls=2)
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "flux-1.1-pro", "prompt": "a fox", "size": "1024x768", "output_format": "jpeg"},
        )

    (image,) = meta_of(result)["images"]
    assert (image["width"], image["height"], image["mime_type"]) == (1024, 768, "image/jpeg")
    log = emu.requests("replicate")
    assert [r["endpoint"] for r in log] == ["predictions", "get", "get", "get"]
    assert log[0]["json"]["input"] == {
        "prompt": "a fox", "width": 1024, "height": 768, "aspect_ratio": "custom", "output_format": "jpg"
    }  # fmt: skip
    assert all(r["auth_ok"] for r in log)


async def test_edit_sends_references_as_the_models_list_field(tmp_path, emu):
    image = "https://example.com/cat.png"
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "edit_image", {"model": "nano-banana", "prompt": "a hat", "images": [image, image], "size": "3:2"}
        )

    assert meta_of(result)["images"]
    (create,) = predictions(emu)
    assert create["json"]["input"] == {
        "prompt": "a hat",
        "aspect_ratio": "3:2",
        "image_input": [image, image],
    }


async def test_a_wait_that_ends_first_cancels_the_prediction(tmp_path, emu):
    emu.control("replicate", "predictions", processing_polls=1000)
    env = env_for(tmp_path, emu, IMAGEGATE_TIMEOUT="30", IMAGEGATE_MAX_RETRIES="0")
    async with serve(env, **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "flux-schnell", "prompt": "a fox"})

    assert error_kind(result) == "timeout"
    (create,) = predictions(emu)
    assert (create["prefer"], create["cancel_after"]) == ("wait=24", "30s")
    (cancel,) = predictions(emu, "cancel")
    assert cancel["auth_ok"] and cancel["method"] == "POST"


@pytest.mark.parametrize(
    ("outcome", "error", "kind"),
    [
        ("failed", "NSFW content detected. Try a different prompt.", "content_refused"),
        ("failed", "CUDA out of memory", "upstream_error"),
        ("aborted", None, "timeout"),
    ],
)
async def test_a_prediction_that_fails_is_its_error_with_replicates_message(
    tmp_path, emu, outcome, error, kind
):
    emu.control("replicate", "predictions", outcome=outcome, **({"error": error} if error else {}))
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "flux-schnell", "prompt": "a fox"})

    assert error_kind(result) == kind
    if error:
        assert error in text_of(result)


@pytest.mark.parametrize(("status", "kind"), [(401, "auth_failed"), (402, "insufficient_balance")])
async def test_status_errors_map_to_their_kinds(tmp_path, emu, status, kind):
    emu.fault("replicate", "predictions", "status", status=status)
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "flux-schnell", "prompt": "a fox"})
    assert error_kind(result) == kind


async def test_429_is_retried_after_its_retry_after(tmp_path, emu):
    emu.fault("replicate", "predictions", "status", status=429, retry_after="3")
    time = VirtualTime()
    async with serve(env_for(tmp_path, emu), **time.hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-schnell", "prompt": "a fox", "output_format": "png"}
        )
    assert meta_of(result)["images"] and 3.0 in time.sleeps


async def test_the_models_422_validation_detail_reaches_the_agent(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-schnell", "prompt": "a fox", "extra": {"megapixels": "2"}}
        )
    assert error_kind(result) == "upstream_error"
    assert "input.megapixels" in text_of(result) and "422" in text_of(result)


@pytest.mark.slow
async def test_over_stdio_the_key_stays_off_the_output_host(tmp_path, emulator):
    emulator.reset()
    async with serve(env_for(tmp_path, emulator), stdio=True) as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "nano-banana-pro", "prompt": "a fox", "size": "1:1", "resolution": "2K"},
        )

    (image,) = meta_of(result)["images"]
    sidecar = Path(image["path"]).with_suffix(".json").read_text()
    assert KEY not in sidecar and KEY not in text_of(result)
    (create,) = predictions(emulator)
    assert create["json"]["input"] == {"prompt": "a fox", "aspect_ratio": "1:1", "resolution": "2K"}
    api = urlsplit(emulator.base_url("replicate")).netloc
    assert all(urlsplit(u).netloc != api for u in [json.loads(sidecar).get("source_url") or ""] if u)


async def test_a_polled_predictions_status_and_logs_reach_the_agent_as_progress(tmp_path, emu):
    emu.control("replicate", "predictions", processing_polls=3)
    said: list[str] = []

    async def record(progress: float, total: float | None, message: str | None) -> None:
        said.append(message or "")

    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-schnell", "prompt": "a fox"}, progress_callback=record
        )

    assert meta_of(result)["images"]
    relayed = [m for m in said if m.startswith("replicate: ")]
    assert relayed == [
        "replicate: processing: 33%| step 1/3",
        "replicate: processing: 66%| step 2/3",
        "replicate: processing: 100%| step 3/3",
    ]
    assert len(predictions(emu, "get")) == 4  # three polls processing, the fourth finished: one report each


async def test_recraft_and_ideogram_take_pixels_as_one_wxh_field(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        recraft = await client.call_tool(
            "generate_image", {"model": "recraft-v3", "prompt": "a logo", "size": "16:9", "style": "any"}
        )
        ideogram = await client.call_tool(
            "generate_image", {"model": "ideogram-v3", "prompt": "a poster", "size": "1:2", "seed": 9}
        )

    assert [(i["width"], i["height"]) for i in meta_of(recraft)["images"]] == [(1820, 1024)]
    assert [(i["width"], i["height"]) for i in meta_of(ideogram)["images"]] == [(704, 1408)]
    recraft_create, ideogram_create = predictions(emu)
    assert recraft_create["path"].endswith("/v1/models/recraft-ai/recraft-v3/predictions")
    assert recraft_create["json"]["input"] == {"prompt": "a logo", "size": "1820x1024", "style": "any"}
    assert ideogram_create["path"].endswith("/v1/models/ideogram-ai/ideogram-v3-balanced/predictions")
    assert ideogram_create["json"]["input"] == {"prompt": "a poster", "resolution": "704x1408", "seed": 9}


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        ({"model": "recraft-v3", "style": "digital_illustration/pixel_art"}, "style"),
        ({"model": "ideogram-v3", "negative_prompt": "blur"}, "negative_prompt"),
        ({"model": "ideogram-v3", "quality": "TURBO"}, "quality"),
        ({"model": "ideogram-v3", "size": "2048x2048"}, "size"),
    ],
    ids=str,
)
async def test_what_replicates_recraft_and_ideogram_lack_is_refused_before_a_prediction(
    tmp_path, emu, args, argument
):
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", **args})

    assert error_kind(result) == "invalid_argument" and argument in text_of(result), text_of(result)
    assert emu.requests("replicate") == []
