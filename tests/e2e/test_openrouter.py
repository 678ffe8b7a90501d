"""OpenRouter end to end: the real server against the emulator's chat-completions image output.

One chat completion per image with the route's `modalities` and `image_config`; the data-URL image saved;
edits as image_url parts after the text; refusals, replies without an image and documented errors mapped to
their kinds. The last part drives the emulator directly to show it checks requests as the docs describe.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.support import TEST_KEY_PREFIX, VirtualTime, base_env, image_file, kind_of, meta_of, serve, text_of
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = f"{TEST_KEY_PREFIX}openrouter"


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    return base_env(
        tmp_path, OPENROUTER_API_KEY=KEY, OPENROUTER_BASE_URL=emulator.base_url("openrouter"), **extra
    )


def chats(emulator: EmulatorClient) -> list[dict[str, Any]]:
    return [r["json"] for r in emulator.requests("openrouter") if r["endpoint"] == "chat"]


@pytest.mark.slow
async def test_generates_through_chat_completions_over_stdio(tmp_path, emulator):
    emulator.reset()
    async with serve(env_for(tmp_path, emulator), stdio=True) as client:
        result = await client.call_tool(
            "generate_image",
            {
                "model": "nano-banana-pro",
                "provider": "openrouter",
                "prompt": "a fox",
                "size": "16:9",
                "resolution": "2K",
            },
        )

    (image,) = meta_of(result)["images"]
    assert (image["width"], image["height"], image["mime_type"]) == (2688, 1536, "image/png")
    assert meta_of(result)["usage"] == [
        {"prompt_tokens": 12, "completion_tokens": 1290, "total_tokens": 1302, "cost": 0.039}
    ]
    (body,) = chats(emulator)
    assert body == {
        "model": "google/gemini-3-pro-image-preview",
        "messages": [{"role": "user", "content": "a fox"}],
        "modalities": ["image", "text"],
        "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
    }
    assert KEY not in text_of(result) and KEY not in Path(image["path"]).with_suffix(".json").read_text()


async def test_n_is_one_call_each_and_image_only_models_ask_for_image_alone(tmp_path, emulator):
    emulator.reset()
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        flux = await client.call_tool(
            "generate_image",
            {
                "model": "flux-2-pro",
                "provider": "openrouter",
                "prompt": "a kite",
                "n": 2,
                "size": "3:4",
                "seed": 3,
            },
        )
        nano = await client.call_tool(
            "generate_image",
            {"model": "nano-banana", "provider": "openrouter", "prompt": "a kite", "size": "21:9"},
        )

    assert meta_of(flux)["calls"] == 2 and len(meta_of(flux)["images"]) == 2
    assert (meta_of(nano)["images"][0]["width"], meta_of(nano)["images"][0]["height"]) == (1536, 672)
    first, _, last = chats(emulator)
    assert (first["modalities"], first["image_config"], first["seed"]) == (
        ["image"],
        {"aspect_ratio": "3:4"},
        3,
    )
    assert last["image_config"] == {"aspect_ratio": "21:9"} and "seed" not in last


async def test_edit_sends_the_text_first_then_each_image_as_an_image_url_part(tmp_path, emulator):
    emulator.reset()
    ref = Path(image_file(tmp_path / "ref.png", 600, 400))
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "edit_image",
            {
                "model": "nano-banana",
                "provider": "openrouter",
                "prompt": "make it night",
                "images": [str(ref), "https://example.com/b.png"],
            },
        )

    assert (meta_of(result)["images"][0]["width"], meta_of(result)["images"][0]["height"]) == (600, 400)
    (body,) = chats(emulator)
    text, local, remote = body["messages"][0]["content"]
    assert text == {"type": "text", "text": "make it night"}
    assert base64.b64decode(local["image_url"]["url"].split(",", 1)[1]) == ref.read_bytes()
    assert remote == {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}}


FAILURES = [
    ({"fault": ("status", {"status": 402})}, "insufficient_balance", "Insufficient credits"),
    ({"fault": ("status", {"status": 403})}, "content_refused", "violence"),
    ({"fault": ("status", {"status": 429, "count": 2, "retry_after": 0})}, "rate_limited", "Rate limit"),
    (
        {"fault": ("status", {"status": 400, "message": "Bad image_config"})},
        "upstream_error",
        "Bad image_config",
    ),
    ({"outcome": "refusal"}, "content_refused", "can't create"),
    ({"outcome": "text_only"}, "no_images", "Here is the image"),
    (
        {"outcome": "error_in_body", "count": 2},
        "upstream_error",
        "Provider returned error",
    ),  # 502: retried once
    ({"keys": ["test-another"]}, "auth_failed", "No auth credentials"),
]


async def test_each_documented_failure_maps_to_its_kind(tmp_path, emulator):
    async with serve(env_for(tmp_path, emulator, IMAGEGATE_MAX_RETRIES="1"), **VirtualTime().hooks) as client:
        for setup, kind, fragment in FAILURES:
            emulator.reset()
            if "fault" in setup:
                fault, params = setup["fault"]
                emulator.fault("openrouter", "chat", fault, **params)
            if "outcome" in setup:
                emulator.control(
                    "openrouter", "outcomes", outcome=setup["outcome"], count=setup.get("count", 1)
                )
            if "keys" in setup:
                emulator.configure("openrouter", keys=setup["keys"])
            result = await client.call_tool(
                "generate_image", {"model": "nano-banana", "provider": "openrouter", "prompt": "a fox"}
            )
            assert (kind_of(result), fragment in text_of(result)) == (kind, True), (setup, text_of(result))


# ---- the emulator checks requests as OpenRouter documents them


@pytest.fixture
def openrouter(emulator: EmulatorClient) -> Iterator[httpx2.Client]:
    emulator.reset()
    headers = {"Authorization": f"Bearer {KEY}"}
    base = emulator.base_url("openrouter")
    with httpx2.Client(base_url=base, headers=headers, trust_env=False, verify=False, timeout=10) as http:
        yield http


BASE = {
    "model": "google/gemini-2.5-flash-image",
    "messages": [{"role": "user", "content": "a fox"}],
    "modalities": ["image", "text"],
}
RULES = [
    ({"modalities": ["text"]}, "modalities including"),
    ({"model": "black-forest-labs/flux.2-pro"}, "output modalities"),
    ({"image_config": {"aspect_ratio": "1:4"}}, "aspect_ratio must be one of"),
    ({"image_config": {"image_size": "2K"}}, "image_size is not supported"),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,eA=="}}],
                }
            ]
        },
        "data URL",
    ),
    ({"model": "openai/dall-e-9"}, "not a valid model"),
]


@pytest.mark.parametrize(("fields", "fragment"), RULES)
def test_the_emulator_refuses_what_the_docs_do_not_allow(openrouter, fields, fragment):
    reply = openrouter.post("/chat/completions", json={**BASE, **fields})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == 400 and fragment in reply.json()["error"]["message"]


def test_the_emulator_answers_the_key_lookup_and_refuses_a_missing_key(openrouter, emulator):
    assert "usage" in openrouter.get("/key").json()["data"]
    url = emulator.base_url("openrouter") + "/chat/completions"
    anonymous = httpx2.post(url, json=BASE, trust_env=False, verify=False)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == 401
