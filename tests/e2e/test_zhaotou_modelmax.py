"""ZhaoTou (seeds/002) and ModelMax (seeds/003) end to end, as their documents say, against the emulator:
variations as edit_image without a prompt (and DALL·E 2's, openai.md §4), ZhaoTou's mask, its 500 "建议重试"
retried and its 413 turned into "send a smaller image", Flux's recommended 1792x1024, and ModelMax's sizes
and n left for ModelMax to judge. Fixtures in tests/fixtures/zhaotou/ and tests/fixtures/modelmax/ quote
the documents; the adapter-level checks of the same facts are in tests/providers/test_openai_images.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support import (
    VirtualTime,
    emulator_env,
    error_of,
    meta_of,
    open_image,
    serve,
    text_of,
    write_image,
)

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[1] / "fixtures"
ZHAOTOU = {"model": "gemini-3-pro-image-preview", "provider": "zhaotou"}


def quoted(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_emulator(emulator):
    emulator.reset()


@pytest.fixture(scope="module")
def time_() -> VirtualTime:
    return VirtualTime()


@pytest.fixture(scope="module")
async def client(emulator, tmp_path_factory, time_):
    env = emulator_env(emulator, tmp_path_factory.mktemp("zhaotou-modelmax"), IMAGEGATE_MAX_RETRIES="2")
    async with serve(env, **time_.hooks) as session:
        yield session


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("inputs")
    return {
        "png": write_image(folder / "original.png", (64, 64)),
        "mask": write_image(folder / "mask.png", (64, 64), "RGBA"),
    }


def form(record: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A logged multipart request's text fields and its file parts' names."""
    fields = {p["name"]: p["value"] for p in record["form"] if "value" in p}
    return fields, [p["name"] for p in record["form"] if "filename" in p]


# ---- variations: edit_image without a prompt


@pytest.mark.parametrize("prompt", [None, ""])
async def test_a_zhaotou_edit_without_a_prompt_is_its_documented_variations_call(
    client, emulator, images, prompt
):
    args = {**ZHAOTOU, "images": [images["png"]], "n": 2, **({} if prompt is None else {"prompt": prompt})}

    result = await client.call_tool("edit_image", args)

    assert len(meta_of(result)["images"]) == 2
    (sent,) = emulator.requests("zhaotou")
    fields, files = form(sent)
    assert sent["path"].endswith("/v1/images/variations") and files == ["image"]
    assert set(fields) <= set(quoted("zhaotou", "variations")["fields"]) and "prompt" not in fields
    assert (fields["model"], fields["n"], fields["size"]) == ("gemini-3-pro-image-preview", "2", "1024x1024")


async def test_dall_e_2_makes_variations_through_openais_strict_endpoint(client, emulator, images):
    result = await client.call_tool(
        "edit_image", {"model": "dall-e-2", "images": [images["png"]], "size": "256x256"}
    )

    (entry,) = meta_of(result)["images"]
    assert open_image(entry["path"]).size == (256, 256)
    (sent,) = emulator.requests("openai")
    assert sent["endpoint"] == "variations" and form(sent)[0]["model"] == "dall-e-2"


async def test_edit_image_advertises_where_an_empty_prompt_makes_variations(client):
    edit = next(t for t in (await client.list_tools()).tools if t.name == "edit_image").input_schema

    assert "prompt" not in edit["required"] and "minLength" not in edit["properties"]["prompt"]
    assert "variations" in edit["properties"]["prompt"]["description"]
    lines = edit["properties"]["model"]["description"]
    assert any(line.startswith("dall-e-2") and "+variations" in line for line in lines.splitlines())
    listed = await client.call_tool("list_models", {"capability": "variations"})
    assert "dall-e-2" in text_of(listed) and "gpt-4o-image" in text_of(listed)


@pytest.mark.parametrize(
    ("args", "argument", "fragments"),
    [
        pytest.param(
            {"model": "gpt-image-1", "prompt": ""},
            "prompt",
            ["prompt is empty", "gpt-image-1 via openai edits only with a prompt", "dall-e-2"],
            id="empty-prompt-where-no-variations",
        ),
        pytest.param(
            {"model": "gpt-image-1"},
            "prompt",
            ["prompt is required"],
            id="no-prompt-where-no-variations",
        ),
        pytest.param(
            {**ZHAOTOU, "mask": "mask"},
            "mask",
            ["mask needs a prompt", "variations"],
            id="variations-take-no-mask",
        ),
    ],
)
async def test_an_edit_without_a_prompt_is_refused_where_it_cannot_be_a_variation(
    client, emulator, images, args, argument, fragments
):
    call = {**args, "images": [images["png"]]} | ({"mask": images["mask"]} if "mask" in args else {})

    result = await client.call_tool("edit_image", call)

    error = error_of(result)
    assert (error["kind"], error["argument"]) == ("invalid_argument", argument)
    assert all(fragment in text_of(result) for fragment in fragments), text_of(result)
    assert emulator.requests() == []


# ---- ZhaoTou: mask, errors, Flux sizes


async def test_a_zhaotou_edit_sends_the_mask_its_doc_lists(client, emulator, images):
    args = {
        **ZHAOTOU,
        "prompt": "给这只猫戴上一顶红色的小帽子",
        "images": [images["png"]],
        "mask": images["mask"],
    }

    result = await client.call_tool("edit_image", args)

    assert meta_of(result)["images"]
    (sent,) = emulator.requests("zhaotou")
    assert sent["endpoint"] == "edits" and form(sent)[1] == ["image", "mask"]


async def test_a_zhaotou_500_is_retried_as_its_doc_advises(client, emulator):
    assert "建议重试" in quoted("zhaotou", "errors")["errors"]["500"]
    emulator.fault("zhaotou", "generations", "status", status=500)

    result = await client.call_tool("generate_image", {**ZHAOTOU, "prompt": "一只可爱的小猫"})

    assert len(meta_of(result)["images"]) == 1
    assert [r["status"] for r in emulator.requests("zhaotou")] == [500, 200]


async def test_a_zhaotou_413_tells_the_agent_to_send_a_smaller_image_and_is_not_retried(
    client, emulator, images
):
    emulator.fault("zhaotou", "edits", "status", count=3, status=413)

    result = await client.call_tool("edit_image", {**ZHAOTOU, "prompt": "a hat", "images": [images["png"]]})

    assert error_of(result)["kind"] == "upstream_error"
    assert "send a smaller image" in text_of(result) and "请压缩后重试" in text_of(result)
    assert len(emulator.requests("zhaotou")) == 1


async def test_flux_on_zhaotou_takes_the_1792x1024_its_section_recommends(client, emulator):
    assert "1792x1024" in quoted("zhaotou", "sizes")["flux_section"][1]
    args = {"model": "flux-2-pro", "provider": "zhaotou", "prompt": "a product shot", "size": "1792x1024"}

    result = await client.call_tool("generate_image", args)

    assert open_image(meta_of(result)["images"][0]["path"]).size == (1792, 1024)
    (sent,) = emulator.requests("zhaotou")
    assert (sent["json"]["model"], sent["json"]["size"]) == ("flux-2.0", "1792x1024")
    refused = await client.call_tool("generate_image", {**args, "size": "1024x1792"})
    assert error_of(refused)["argument"] == "size"  # the vertical one is in no Flux line of the doc


# ---- ModelMax: what the doc leaves open is ModelMax's to judge


async def test_modelmax_sends_any_pixel_size_and_imagen_s_own_n_per_call(client, emulator):
    assert "如" in quoted("modelmax", "generations")["parameters"]["size"]
    args = {
        "model": "imagen-3",
        "prompt": "A watercolor painting of a mountain lake",
        "size": "1408x768",
        "n": 5,
    }

    result = await client.call_tool("generate_image", args)

    assert [open_image(i["path"]).size for i in meta_of(result)["images"]] == [(1408, 768)] * 5
    sent = emulator.requests("modelmax")
    assert sorted(r["json"]["n"] for r in sent) == [1, 4] and {r["json"]["size"] for r in sent} == {
        "1408x768"
    }
    ratio = await client.call_tool("generate_image", {**args, "size": "16:9", "n": 1})
    assert error_of(ratio)["argument"] == "size" and "WxH" in text_of(ratio)
