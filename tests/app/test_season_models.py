"""This season's models (issue 16 part 4) through the real server, in memory, against the emulator: each new
native route takes a valid call and sends its own upstream id, each limit broken is refused naming the
argument before any upstream request, and the Gemini preview ids resolve to the GA models.

Sources (catalog/data/models.toml names them per model): ai.google.dev models pages (GA Gemini image ids,
gemini-3.1-flash-lite-image), alibabacloud.com Model Studio API references (Qwen-Image 3.0, Qwen-Image 2.1
Pro's existence and 10 references, Wan 2.7 image, Wan 2.6 image), docs.bfl.ai/flux_3 (FLUX 3 Image); GPT
Image 2.5, the Seedream 5.0 family and Qwen-Image 2.0 only from gateways' docs and skills (UNCONFIRMED).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import (
    TEST_KEY_PREFIX,
    VirtualTime,
    error_of,
    meta_of,
    provider_env,
    serve,
    text_of,
    write_image,
)
from tools.emulator import EmulatorClient, start_thread

from imagegate.catalog import load_catalog

pytestmark = pytest.mark.anyio

KEY = f"{TEST_KEY_PREFIX}season"
CATALOG = load_catalog()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorClient]:
    with start_thread() as running:
        yield running


@pytest.fixture
def emu(emulator: EmulatorClient) -> EmulatorClient:
    emulator.reset()
    return emulator


def env_for(tmp_path: Path, emulator: EmulatorClient, provider: str) -> dict[str, str]:
    # BFL delivers samples from "localhost", a loopback host other than the API's: private URLs allowed.
    return provider_env(tmp_path, emulator, provider, KEY, IMAGEGATE_ALLOW_PRIVATE_URLS="true")


def inputs(tmp_path: Path, count: int, edge: int = 512) -> list[str]:
    path = write_image(tmp_path / f"ref-{edge}.png", (edge, edge))
    return [path] * count


def upstream_calls(emulator: EmulatorClient, provider: str) -> list[dict[str, Any]]:
    """Requests that reached the provider's API (not BFL's polls and sample downloads)."""
    return [r for r in emulator.requests(provider) if r["endpoint"] not in ("get_result", "delivery")]


async def call(tmp_path: Path, emulator: EmulatorClient, provider: str, args: dict[str, Any]) -> Any:
    tool = "edit_image" if "images" in args else "generate_image"
    async with serve(env_for(tmp_path, emulator, provider), **VirtualTime().hooks) as client:
        return await client.call_tool(tool, {"provider": provider, "prompt": "a lighthouse at dusk", **args})


# --- a valid call per new route --------------------------------------------------------------------

VALID = [
    ("gemini", {"model": "gemini-3-pro-image", "size": "16:9", "resolution": "2K"}, (2752, 1536)),
    ("gemini", {"model": "gemini-3.1-flash-image", "size": "1:1"}, (1024, 1024)),
    ("gemini", {"model": "gemini-3.1-flash-lite-image", "size": "16:9"}, (1376, 768)),
    ("gemini", {"model": "nano-banana-2-lite", "images": 2}, None),
    ("openai", {"model": "gpt-image-2.5-flare", "size": "2048x1152", "quality": "xhigh"}, (2048, 1152)),
    ("openai", {"model": "gpt-image-2.5-sunburst", "quality": "max", "images": 2}, None),
    ("dashscope", {"model": "qwen-image-3.0-pro", "size": "2048x1024", "n": 2}, (2048, 1024)),
    ("dashscope", {"model": "qwen-image-3.0", "images": 3, "size": "1024x1024"}, (1024, 1024)),
    ("dashscope", {"model": "wan2.7-image-pro", "size": "4096x4096"}, (4096, 4096)),
    ("dashscope", {"model": "wan2.7-image", "images": 2, "size": "1536x1536"}, (1536, 1536)),
    ("dashscope", {"model": "wan2.6-image", "images": 2, "size": "1280x1280"}, (1280, 1280)),
    ("bfl", {"model": "flux-3-image", "size": "7:5"}, None),
    ("bfl", {"model": "flux-3", "images": 3}, None),
    # only secondary sources have these (UNCONFIRMED in the catalog); the emulator holds the same limits
    ("ark", {"model": "seedream-5.0-pro", "size": "2048x1152"}, (2048, 1152)),
    ("ark", {"model": "seedream-5.0-pro", "images": 10, "size": "1024x1024"}, (1024, 1024)),
    ("ark", {"model": "seedream-5.0", "size": "3072x3072"}, (3072, 3072)),
    ("ark", {"model": "doubao-seedream-5-0-lite-260128", "images": 14, "size": "2560x1440"}, (2560, 1440)),
    ("ark", {"model": "seedream-5.0-flash", "size": "1280x720", "watermark": False}, (1280, 720)),
    ("dashscope", {"model": "qwen-image-2.1-pro", "images": 10, "size": "1024x1024", "n": 2}, (1024, 1024)),
    ("dashscope", {"model": "qwen-image-2.0-pro", "size": "2048x1024", "n": 6}, (2048, 1024)),
    ("dashscope", {"model": "qwen-image-2.0", "images": 3, "size": "512x512", "seed": 7}, (512, 512)),
]


@pytest.mark.parametrize(("provider", "args", "pixels"), VALID, ids=lambda v: str(v))
async def test_a_valid_call_reaches_the_upstream_under_its_own_id(tmp_path, emu, provider, args, pixels):
    args = dict(args)
    if "images" in args:
        args["images"] = inputs(tmp_path, args["images"])
    result = await call(tmp_path, emu, provider, args)

    assert not result.is_error, text_of(result)
    meta = meta_of(result)
    model = CATALOG.resolve_model(args["model"])
    assert (meta["model"], meta["provider"]) == (model, provider)
    assert len(meta["images"]) == args.get("n", 1)
    if pixels:
        assert {(i["width"], i["height"]) for i in meta["images"]} == {pixels}
    sent = upstream_calls(emu, provider)
    assert sent, "no upstream request was made"
    (route,) = [r for r in CATALOG.routes_for(model) if r.provider == provider]
    where = sent[0]["path"] + str(sent[0].get("json", "")) + str(sent[0].get("form", ""))
    assert route.upstream in where


# --- one call per limit broken: refused naming the argument, nothing sent -----------------------

BROKEN = [
    ("gemini", {"model": "gemini-3-pro-image", "size": "999x999"}, "size"),
    ("gemini", {"model": "gemini-3-pro-image", "n": 11}, "n"),
    ("gemini", {"model": "gemini-3-pro-image", "images": 15}, "images"),
    ("gemini", {"model": "gemini-3.1-flash-image", "size": "5:1"}, "size"),
    ("gemini", {"model": "gemini-3.1-flash-lite-image", "size": "1:1", "resolution": "2K"}, "resolution"),
    ("gemini", {"model": "gemini-3.1-flash-lite-image", "images": 15}, "images"),
    ("openai", {"model": "gpt-image-2.5-flare", "quality": "ultra"}, "quality"),
    ("openai", {"model": "gpt-image-2.5-flare", "size": "4096x4096"}, "size"),
    ("openai", {"model": "gpt-image-2.5-flare", "n": 11}, "n"),
    ("openai", {"model": "gpt-image-2.5-sunburst", "size": "1024x4096"}, "size"),
    ("openai", {"model": "gpt-image-2.5-sunburst", "images": 17}, "images"),
    ("dashscope", {"model": "qwen-image-3.0-pro", "size": "256x256"}, "size"),
    ("dashscope", {"model": "qwen-image-3.0-pro", "images": 4}, "images"),
    ("dashscope", {"model": "qwen-image-3.0", "size": "4096x4096"}, "size"),
    ("dashscope", {"model": "qwen-image-3.0", "negative_prompt": "x" * 501}, "negative_prompt"),
    ("dashscope", {"model": "wan2.7-image-pro", "images": 1, "size": "4096x4096"}, "size"),
    ("dashscope", {"model": "wan2.7-image-pro", "images": 10}, "images"),
    ("dashscope", {"model": "wan2.7-image", "size": "4096x4096"}, "size"),
    ("dashscope", {"model": "wan2.7-image", "seed": -1}, "seed"),
    ("dashscope", {"model": "wan2.6-image", "images": 10}, "images"),
    ("dashscope", {"model": "wan2.6-image", "images": 1, "size": "2048x2048"}, "size"),
    ("bfl", {"model": "flux-3-image", "size": "1024x1024"}, "size"),
    ("bfl", {"model": "flux-3-image", "size": "3:1"}, "size"),
    ("bfl", {"model": "flux-3-image", "images": 11}, "images"),
    ("bfl", {"model": "flux-3-image", "safety_tolerance": 5}, "safety_tolerance"),
    ("ark", {"model": "seedream-5.0-pro", "size": "1024x512"}, "size"),
    ("ark", {"model": "seedream-5.0-pro", "size": "2560x2560"}, "size"),
    ("ark", {"model": "seedream-5.0-pro", "size": "4096x240"}, "size"),
    ("ark", {"model": "seedream-5.0-pro", "images": 11}, "images"),
    ("ark", {"model": "seedream-5.0-pro", "n": 11}, "n"),
    ("ark", {"model": "seedream-5.0-pro", "resolution": "4K"}, "resolution"),
    ("ark", {"model": "seedream-5.0-pro", "seed": 3}, "seed"),
    ("ark", {"model": "seedream-5.0", "size": "2048x1024"}, "size"),
    ("ark", {"model": "seedream-5.0", "size": "4096x4096"}, "size"),
    ("ark", {"model": "seedream-5.0", "images": 15}, "images"),
    ("ark", {"model": "seedream-5.0", "resolution": "1K"}, "resolution"),
    ("ark", {"model": "seedream-5.0-flash", "size": "2880x1620"}, "size"),
    ("ark", {"model": "seedream-5.0-flash", "images": 11}, "images"),
    ("dashscope", {"model": "qwen-image-2.1-pro", "images": 11}, "images"),
    ("dashscope", {"model": "qwen-image-2.1-pro", "size": "4096x256"}, "size"),
    ("dashscope", {"model": "qwen-image-2.1-pro", "size": "4096x4096"}, "size"),
    ("dashscope", {"model": "qwen-image-2.0-pro", "size": "256x256"}, "size"),
    ("dashscope", {"model": "qwen-image-2.0-pro", "images": 4}, "images"),
    ("dashscope", {"model": "qwen-image-2.0-pro", "n": 11}, "n"),
    ("dashscope", {"model": "qwen-image-2.0", "negative_prompt": "x" * 501}, "negative_prompt"),
    ("dashscope", {"model": "qwen-image-2.0", "seed": -1}, "seed"),
]


@pytest.mark.parametrize(("provider", "args", "argument"), BROKEN, ids=lambda v: str(v)[:60])
async def test_each_limit_broken_is_refused_before_any_upstream_request(
    tmp_path, emu, provider, args, argument
):
    args = dict(args)
    if "images" in args:
        args["images"] = inputs(tmp_path, args["images"])
    result = await call(tmp_path, emu, provider, args)

    assert error_of(result)["kind"] == "invalid_argument", text_of(result)
    assert argument in text_of(result)
    assert upstream_calls(emu, provider) == []


async def test_an_edit_only_model_refuses_text_to_image(tmp_path, emu):
    result = await call(tmp_path, emu, "dashscope", {"model": "wan2.6-image"})

    assert error_of(result)["kind"] == "invalid_argument", text_of(result)
    assert "cannot generate" in text_of(result)
    assert upstream_calls(emu, "dashscope") == []


# --- the Gemini preview ids are aliases of the GA models --------------------------------------------


@pytest.mark.parametrize(
    ("preview", "ga"),
    [
        ("gemini-3-pro-image-preview", "gemini-3-pro-image"),
        ("gemini-3.1-flash-image-preview", "gemini-3.1-flash-image"),
    ],
)
async def test_a_preview_id_resolves_to_the_ga_model_and_its_ga_upstream(tmp_path, emu, preview, ga):
    assert CATALOG.resolve_model(preview) == ga
    result = await call(tmp_path, emu, "gemini", {"model": preview, "size": "1:1"})

    assert not result.is_error, text_of(result)
    assert meta_of(result)["model"] == ga
    (sent,) = upstream_calls(emu, "gemini")
    assert sent["path"].endswith(f"/models/{ga}:generateContent")


def test_the_gateways_keep_the_preview_upstream_they_document():
    routes = {r.provider: r.upstream for r in CATALOG.routes_for("gemini-3-pro-image")}
    assert routes["gemini"] == "gemini-3-pro-image"
    assert routes["zhaotou"] == routes["mixroute"] == "gemini-3-pro-image-preview"


def test_facts_only_secondary_sources_give_are_marked_unconfirmed():
    marked = {m: set(CATALOG.models[m].unconfirmed) for m in CATALOG.models}
    assert {"model", "upstream", "sizes", "knobs"} <= marked["gpt-image-2.5-flare"]
    assert {"model", "upstream"} <= marked["gpt-image-2.5-sunburst"]
    assert {"sizes", "inputs"} <= marked["flux-3-image"] and "model" not in marked["flux-3-image"]
    assert "per_call" in marked["qwen-image-3.0-pro"] and "sizes" in marked["wan2.7-image"]
    assert marked["gemini-3-pro-image"] - {"price"} == set()  # its limits are Google's own (prices aside)
    for model in (
        "seedream-5.0-pro",
        "seedream-5.0",
        "seedream-5.0-flash",
        "qwen-image-2.0-pro",
        "qwen-image-2.0",
    ):
        assert {"model", "upstream", "sizes", "inputs"} <= marked[model], model
    # the Model Studio reference names 2.1-pro and its 10 references; its other limits are 3p
    assert "model" not in marked["qwen-image-2.1-pro"] and "sizes" in marked["qwen-image-2.1-pro"]


@pytest.mark.parametrize("model", ["seedream-5.0-pro", "qwen-image-2.0"])
async def test_an_unconfirmed_route_says_so_to_the_agent(tmp_path, emu, model):
    provider = "ark" if model.startswith("seedream") else "dashscope"
    async with serve(env_for(tmp_path, emu, provider), **VirtualTime().hooks) as client:
        result = await client.call_tool("list_models", {"provider": provider})
    text = text_of(result)
    assert model in text and "UNCONFIRMED" in text.upper()
