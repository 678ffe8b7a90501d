"""fal end to end: the real server against the emulator's fal queue API.

Submit to the route's endpoint, poll the returned status_url with `?logs=1` and the key, read the result at
response_url, download the images from another origin without the key; edits go to the edit endpoint with
`image_urls` (or one `image_url`); documented failures map to their kinds; a call that times out cancels the
request. The last part drives the emulator directly to show it checks inputs as fal's schemas say.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from tests.support import TEST_KEY_PREFIX, VirtualTime, base_env, image_file, kind_of, meta_of, serve, text_of
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = f"{TEST_KEY_PREFIX}fal"


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    # Results come from "localhost", another host than the API's 127.0.0.1 (fal.media stands apart from
    # queue.fal.run); as a loopback address it is fetched only with private URLs allowed.
    extra.setdefault("IMAGEGATE_ALLOW_PRIVATE_URLS", "true")
    return base_env(tmp_path, FAL_KEY=KEY, FAL_BASE_URL=emulator.base_url("fal"), **extra)


def control(emulator: EmulatorClient, **body: Any) -> Any:
    return emulator.control("fal", "requests", **body)


def submits(emulator: EmulatorClient) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("fal") if r["endpoint"] not in ("status", "result", "cancel", "cdn")]


@pytest.mark.slow
async def test_submits_polls_with_the_key_and_downloads_the_result_without_it(tmp_path, emulator):
    emulator.reset()
    control(emulator, queue_polls=2, progress_polls=1)
    async with serve(env_for(tmp_path, emulator), stdio=True) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "prompt": "a red fox", "size": "1024x768", "seed": 7}
        )

    (image,) = meta_of(result)["images"]
    assert (image["width"], image["height"], image["mime_type"], image["seed"]) == (
        1024,
        768,
        "image/jpeg",
        7,
    )
    log = emulator.requests("fal")
    assert [r["endpoint"] for r in log] == ["fal-ai/flux-2-pro", *["status"] * 4, "result", "cdn"]
    assert log[0]["json"] == {"prompt": "a red fox", "image_size": {"width": 1024, "height": 768}, "seed": 7}
    polls = [r for r in log if r["endpoint"] in ("status", "result")]
    assert all(r["auth_ok"] and r["path"].startswith("/fal/fal-ai/flux-2-pro/requests/") for r in polls)
    assert all(r["query"] == ["logs"] for r in polls if r["endpoint"] == "status")
    (cdn,) = [r for r in log if r["endpoint"] == "cdn"]
    assert cdn["host"] != urlsplit(emulator.base_url("fal")).netloc and "authorization" not in cdn["headers"]
    sidecar = Path(image["path"]).with_suffix(".json").read_text()
    for text in (text_of(result), sidecar):
        assert KEY not in text


async def test_status_and_result_use_the_owner_app_root_and_n_goes_as_num_images(tmp_path, emulator):
    emulator.reset()
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "seedream-4.0", "prompt": "a kite", "n": 7, "size": "16:9"}
        )

    meta = meta_of(result)
    assert meta["calls"] == 2 and len(meta["images"]) == 7
    assert {(i["width"], i["height"]) for i in meta["images"]} == {(2560, 1440)}
    bodies = [r["json"] for r in submits(emulator)]
    assert sorted(b["num_images"] for b in bodies) == [2, 5]
    assert all(
        r["path"].startswith("/fal/fal-ai/bytedance/requests/")
        for r in emulator.requests("fal")
        if r["endpoint"] in ("status", "result")
    )


async def test_edits_go_to_the_edit_endpoint_in_each_endpoints_input_form(tmp_path, emulator):
    emulator.reset()
    control(emulator, queue_polls=0, progress_polls=0)
    first = image_file(tmp_path / "a.png", 640, 480)
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        nano = await client.call_tool(
            "edit_image",
            {
                "model": "nano-banana-pro",
                "prompt": "night",
                "images": [first, "https://example.com/b.png"],
                "size": "16:9",
                "resolution": "2K",
                "safety_tolerance": 2,
                "output_format": "jpeg",
            },
        )
        qwen = await client.call_tool(
            "edit_image", {"model": "qwen-image-edit", "prompt": "red", "images": [first]}
        )

    assert (
        meta_of(nano)["images"][0]["width"] == 2688
        and meta_of(nano)["images"][0]["mime_type"] == "image/jpeg"
    )
    assert (meta_of(qwen)["images"][0]["width"], meta_of(qwen)["images"][0]["height"]) == (640, 480)
    nano_body, qwen_body = (r["json"] for r in submits(emulator))
    assert [r["endpoint"] for r in submits(emulator)] == [
        "fal-ai/nano-banana-pro/edit",
        "fal-ai/qwen-image-edit",
    ]
    assert nano_body["image_urls"][0].startswith("data:image/png;base64,")
    assert nano_body["image_urls"][1] == "https://example.com/b.png"
    assert {k: nano_body[k] for k in ("aspect_ratio", "resolution", "safety_tolerance", "output_format")} == {
        "aspect_ratio": "16:9",
        "resolution": "2K",
        "safety_tolerance": "2",
        "output_format": "jpeg",
    }
    assert set(qwen_body) == {"prompt", "image_url"}


FAILURES = [
    (
        {"fault": ("fal-ai/flux-2-pro", "status", {"status": 403})},
        "insufficient_balance",
        "Exhausted balance",
    ),
    ({"fault": ("fal-ai/flux-2-pro", "status", {"status": 422})}, "upstream_error", "prompt: Field required"),
    (
        {"fault": ("fal-ai/flux-2-pro", "status", {"status": 429, "count": 2, "retry_after": 0})},
        "rate_limited",
        "",
    ),
    ({"fault": ("status", "status", {"status": 500})}, "upstream_error", "Internal server error"),
    ({"outcome": "content_policy"}, "content_refused", "flagged by a content checker"),
    ({"outcome": "error"}, "upstream_error", "Internal server error"),
    ({"keys": ["test-another"]}, "auth_failed", "Authentication is required"),
]


async def test_each_documented_failure_maps_to_its_kind(tmp_path, emulator):
    env = env_for(tmp_path, emulator, IMAGEGATE_MAX_RETRIES="1")
    async with serve(env, **VirtualTime().hooks) as client:
        for setup, kind, fragment in FAILURES:
            emulator.reset()
            control(emulator, queue_polls=0, progress_polls=0)
            if "fault" in setup:
                where, fault, params = setup["fault"]
                emulator.fault("fal", where, fault, **params)
            if "outcome" in setup:
                control(emulator, outcome=setup["outcome"])
            if "keys" in setup:
                emulator.configure("fal", keys=setup["keys"])
            result = await client.call_tool("generate_image", {"model": "flux-2-pro", "prompt": "a fox"})
            assert (kind_of(result), fragment in text_of(result)) == (kind, True), (setup, text_of(result))
            assert KEY not in text_of(result)


async def test_a_flagged_image_is_kept_with_a_warning(tmp_path, emulator):
    emulator.reset()
    control(emulator, outcome="nsfw")
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "qwen-image", "prompt": "a fox"})
    assert len(meta_of(result)["images"]) == 1 and "flagged" in json.dumps(meta_of(result)["warnings"])


async def test_a_request_that_never_finishes_times_out_and_is_cancelled(tmp_path, emulator):
    emulator.reset()
    control(emulator, queue_polls=1000)
    async with serve(env_for(tmp_path, emulator, IMAGEGATE_TIMEOUT="2"), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "flux-2-pro", "prompt": "a slow fox"})

    assert kind_of(result) == "timeout"
    (cancel,) = [r for r in emulator.requests("fal") if r["endpoint"] == "cancel"]
    assert cancel["method"] == "PUT" and cancel["status"] == 202 and cancel["auth_ok"]


# ---- the emulator checks inputs as fal's schemas say


@pytest.fixture
def fal(emulator: EmulatorClient) -> Iterator[httpx2.Client]:
    emulator.reset()
    headers = {"Authorization": f"Key {KEY}"}
    with httpx2.Client(
        base_url=emulator.base_url("fal"), headers=headers, trust_env=False, timeout=10
    ) as http:
        yield http


RULES = [
    ("fal-ai/flux-2-pro", {"num_images": 2}, "num_images", "Extra inputs"),
    ("fal-ai/flux-2-pro", {"safety_tolerance": 2}, "safety_tolerance", "'1'"),
    ("fal-ai/flux-2-pro", {"output_format": "webp"}, "output_format", "'jpeg' or 'png'"),
    ("fal-ai/flux-2-pro/edit", {}, "image_urls", "Field required"),
    ("fal-ai/bytedance/seedream/v4/text-to-image", {"num_images": 7}, "num_images", "between 1 and 6"),
    (
        "fal-ai/bytedance/seedream/v4/text-to-image",
        {"image_size": {"width": 512, "height": 512}},
        "image_size",
        "960x960",
    ),
    ("fal-ai/nano-banana", {"aspect_ratio": "1:4"}, "aspect_ratio", "'21:9'"),
    ("fal-ai/qwen-image-edit", {"image_url": "bm90IGFuIGltYWdl"}, "image_url", "Could not load"),
]


@pytest.mark.parametrize(("endpoint", "fields", "param", "fragment"), RULES)
def test_the_emulator_refuses_what_fals_schemas_do_not_take(fal, endpoint, fields, param, fragment):
    reply = fal.post(f"/{endpoint}", json={"prompt": "a fox", **fields})
    assert reply.status_code == 422, reply.text
    (item,) = reply.json()["detail"]
    assert item["loc"] == ["body", param] and fragment in item["msg"]


def test_the_emulator_queue_answers_202_until_done_and_refuses_early_results_and_bearer_keys(fal, emulator):
    submitted = fal.post("/fal-ai/qwen-image", json={"prompt": "a fox"}).json()
    assert set(submitted) >= {"request_id", "status_url", "response_url", "cancel_url"}
    assert fal.get(submitted["response_url"]).json() == {"detail": "Request is still in progress"}
    assert fal.get(submitted["status_url"]).status_code == 202
    progress = fal.get(submitted["status_url"], params={"logs": "1"})
    assert (progress.status_code, progress.json()["status"], len(progress.json()["logs"])) == (
        202,
        "IN_PROGRESS",
        1,
    )
    assert fal.get(submitted["status_url"]).json()["status"] == "COMPLETED"
    assert fal.put(submitted["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
    bearer = httpx2.get(submitted["status_url"], headers={"Authorization": f"Bearer {KEY}"}, trust_env=False)
    assert bearer.status_code == 401


# ---- progress, Recraft and Ideogram


async def test_the_queue_position_and_the_runners_log_reach_the_agent_as_progress(tmp_path, emulator):
    emulator.reset()
    control(emulator, queue_polls=3, progress_polls=3)
    said: list[str] = []

    async def record(progress: float, total: float | None, message: str | None) -> None:
        said.append(message or "")

    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "prompt": "a fox"}, progress_callback=record
        )

    assert meta_of(result)["images"]
    relayed = [m for m in said if m.startswith("fal: ")]
    assert relayed[:3] == ["fal: queued, position 2", "fal: queued, position 1", "fal: queued, position 0"]
    assert "fal: in progress: Generating image: step 2/3" in relayed
    polls = [r for r in emulator.requests("fal") if r["endpoint"] == "status"]
    assert len(relayed) <= len(polls) and len(set(relayed)) == len(relayed)  # one a poll, none repeated


async def test_recraft_and_ideogram_go_to_their_endpoints_with_their_own_field_names(tmp_path, emulator):
    emulator.reset()
    control(emulator, queue_polls=0, progress_polls=0)
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        recraft = await client.call_tool(
            "generate_image",
            {"model": "recraft-v3", "prompt": "a logo", "size": "1820x1024",
             "style": "digital_illustration/pixel_art"},
        )  # fmt: skip
        ideogram = await client.call_tool(
            "generate_image",
            {"model": "ideogram-v3", "prompt": "a poster", "size": "1312x736", "quality": "TURBO",
             "prompt_extend": False, "negative_prompt": "blur", "seed": 5},
        )  # fmt: skip

    assert [(i["width"], i["height"], i["mime_type"]) for i in meta_of(recraft)["images"]] == [
        (1820, 1024, "image/webp")
    ]
    assert [(i["width"], i["height"]) for i in meta_of(ideogram)["images"]] == [(1312, 736)]
    recraft_body, ideogram_body = (r["json"] for r in submits(emulator))
    assert recraft_body == {
        "prompt": "a logo",
        "image_size": {"width": 1820, "height": 1024},
        "style": "digital_illustration/pixel_art",
    }
    assert ideogram_body == {
        "prompt": "a poster", "image_size": {"width": 1312, "height": 736}, "rendering_speed": "TURBO",
        "expand_prompt": False, "negative_prompt": "blur", "seed": 5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        ({"model": "recraft-v3", "size": "1024x1000"}, "size"),
        ({"model": "recraft-v3", "prompt": "x" * 1001}, "prompt"),
        ({"model": "recraft-v3", "seed": 1}, "seed"),
        ({"model": "recraft-v3", "style": "vivid"}, "style"),
        ({"model": "ideogram-v3", "size": "1024x1000"}, "size"),
        ({"model": "ideogram-v3", "quality": "FAST"}, "quality"),
        ({"model": "ideogram-v3", "seed": 2147483648}, "seed"),
        ({"model": "ideogram-v3", "n": 11}, "n"),
    ],
    ids=str,
)
async def test_recraft_and_ideogram_limits_are_refused_before_anything_is_sent(
    tmp_path, emulator, args, argument
):
    emulator.reset()
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", **args})

    assert kind_of(result) == "invalid_argument" and argument in text_of(result), text_of(result)
    assert emulator.requests("fal") == []
