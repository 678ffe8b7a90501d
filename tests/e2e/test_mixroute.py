"""The real server (in memory; one test over stdio) against the emulated MixRoute gateway: each family
(Gemini, Seedream, GPT Image, Qwen) generating and editing in its own dialect, the size rules at their edges,
both reply shapes (bare and the `{code, msg, data}` envelope), every failure mapped to its error kind with the
gateway's own message, and usage carried into the result and the sidecar. Timeouts are the fault matrix's.

The last section drives the emulator directly: it must be as strict as shared/seeds/001 implies.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image
from tests.support import (
    data_url,
    image_file,
    kind_of,
    meta_of,
    pixels,
    provider_env,
    serve,
    sidecar_of,
    text_of,
)
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = "test-sentinel-key-mixroute"
WRAPPED_KEY = "test-wrapped-sentinel-key-mixroute"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "mixroute"
DOC_IMAGE = "data:image/png;base64,iVBORw0KGgoAAxxxx..."


def env_for(tmp_path: Path, emulator: EmulatorClient, key: str = KEY, **extra: str) -> dict[str, str]:
    return provider_env(tmp_path, emulator, "mixroute", key, **extra)


def sent(emulator: EmulatorClient) -> list[dict[str, Any]]:
    return [r["json"] for r in emulator.requests("mixroute")]


# --- text to image, one family at a time ------------------------------------------------------------

FAMILIES = [
    (
        {"model": "gemini-3-pro-image-preview", "size": "16:9", "resolution": "2K"},
        (2752, 1536, "image/png"),
        {"size": "16:9", "image_size": "2K", "response_format": "b64_json", "n": 1, "prompt": "a fox"},
    ),
    (
        {"model": "seedream-4.0", "size": "16:9", "watermark": False, "seed": 42},
        (2560, 1440, "image/jpeg"),
        {"size": "2560x1440", "watermark": False, "seed": 42, "prompt": "a fox"},
    ),
    (
        {"model": "gpt-image-1", "size": "1536x1024", "quality": "low"},
        (1536, 1024, "image/png"),
        {"size": "1536x1024", "quality": "low", "n": 1, "prompt": "a fox"},
    ),
    (
        {"model": "qwen-image-plus", "size": "928x1664", "seed": 7, "prompt_extend": False},
        (928, 1664, "image/png"),
        {"parameters": {"size": "928*1664", "seed": "7", "prompt_extend": False}},
    ),
]


@pytest.mark.parametrize(("args", "made", "wire"), FAMILIES, ids=["gemini", "seedream", "gpt-image", "qwen"])
async def test_each_family_generates_in_its_own_dialect_at_the_asked_size(tmp_path, emu, args, made, wire):
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", "provider": "mixroute", **args})
    meta = meta_of(result)
    (image,) = meta["images"]
    assert (image["width"], image["height"], image["mime_type"]) == made
    assert pixels(image) == made[:2]
    (body,) = sent(emu)
    assert {key: body.get(key) for key in wire} == wire
    assert sidecar_of(image)["upstream_model"] == body["model"]


async def test_qwen_sends_the_prompt_as_the_single_message_text(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        await client.call_tool(
            "generate_image", {"model": "qwen-image-plus", "prompt": "對聯", "negative_prompt": "1"}
        )
    (body,) = sent(emu)
    assert body["input"] == {"messages": [{"role": "user", "content": [{"text": "對聯"}]}]}
    assert body["parameters"] == {"negative_prompt": "1"}  # no size asked, none sent (the doc sends none)
    assert "prompt" not in body and "n" not in body


@pytest.mark.slow
async def test_usage_is_carried_into_the_result_and_every_sidecar(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), stdio=True) as client:
        result = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "a fox", "n": 2})
    meta = meta_of(result)
    assert meta["calls"] == 1 and len(meta["images"]) == 2
    (body,) = sent(emu)
    assert body["n"] == 2 and body["size"] == "1024x1024"
    usage = {"input_tokens": 3, "output_tokens": 2 * 1056, "total_tokens": 3 + 2 * 1056}
    assert meta["usage"] == [usage]
    assert all(sidecar_of(image)["usage"] == usage for image in meta["images"])


async def test_one_image_families_fan_out_over_single_calls(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        gemini = await client.call_tool(
            "generate_image", {"model": "gemini-2.5-flash-image", "prompt": "x", "n": 3}
        )
        qwen = await client.call_tool("generate_image", {"model": "qwen-image-plus", "prompt": "x", "n": 2})
        seedream = await client.call_tool(
            "generate_image", {"model": "seedream-4.0", "prompt": "a set of 4 posters", "n": 2}
        )
    assert (meta_of(gemini)["calls"], len(meta_of(gemini)["images"])) == (3, 3)
    assert (meta_of(qwen)["calls"], len(meta_of(qwen)["images"])) == (2, 2)
    assert (meta_of(seedream)["calls"], len(meta_of(seedream)["images"])) == (2, 2)
    assert not meta_of(seedream)["warnings"]  # nothing extra came back to be dropped
    bodies = sent(emu)
    assert [b.get("n") for b in bodies if b["model"] == "gemini-2.5-flash-image"] == [1, 1, 1]
    assert all("n" not in b for b in bodies if b["model"] == "qwen-image-plus")
    # Group mode would let the model pick 1-4 images per call (here: the 4 the prompt names): never asked.
    assert all("sequential_image_generation" not in b for b in bodies if b["model"].startswith("doubao"))


async def test_extra_fields_reach_the_gateway_as_is_and_its_refusal_comes_back(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0")) as client:
        ok = await client.call_tool(
            "generate_image",
            {"model": "gemini-2.5-flash-image", "prompt": "x", "extra": {"temperature": 1.1, "top_p": 0.95}},
        )
        bad = await client.call_tool(
            "generate_image", {"model": "gemini-2.5-flash-image", "prompt": "x", "extra": {"temperature": 5}}
        )
    meta_of(ok)
    assert sent(emu)[0]["temperature"] == 1.1 and sent(emu)[0]["top_p"] == 0.95
    assert kind_of(bad) == "upstream_error"
    assert "Invalid temperature '5'" in text_of(bad)


# --- editing with references ----------------------------------------------------------------------


async def test_gemini_edit_sends_the_text_then_every_reference_in_contents(tmp_path, emu):
    first = image_file(tmp_path / "a.png", 640, 480)
    last = image_file(tmp_path / "b.jpg", 300, 600, "JPEG")
    async with serve(env_for(tmp_path, emu)) as client:
        args = {"model": "gemini-2.5-flash-image", "prompt": "merge them", "images": [first, last]}
        result = await client.call_tool("edit_image", args)
    (image,) = meta_of(result)["images"]
    assert pixels(image) == (768, 1344)  # no size: the last input's aspect (1:2) at its nearest ratio, 9:16
    (body,) = sent(emu)
    parts = [
        {"text": "merge them"},
        {"image": data_url(first)},
        {"image": data_url(last, "image/jpeg")},
    ]
    assert body["contents"] == [{"role": "user", "parts": parts}]
    assert "prompt" not in body and "size" not in body


async def test_seedream_edit_sends_the_references_before_the_text(tmp_path, emu):
    ref = image_file(tmp_path / "in.png", 400, 300)
    async with serve(env_for(tmp_path, emu)) as client:
        args = {
            "model": "seedream-4.5",
            "prompt": "oil painting",
            "images": [ref],
            "size": "1:1",
            "resolution": "2K",
        }
        result = await client.call_tool("edit_image", args)
    (image,) = meta_of(result)["images"]
    assert (image["width"], image["height"], image["mime_type"]) == (2048, 2048, "image/jpeg")
    (body,) = sent(emu)
    assert body["prompt"] == "oil painting" and body["size"] == "2048x2048"
    assert body["contents"] == [
        {"role": "user", "parts": [{"image": data_url(ref)}, {"text": "oil painting"}]}
    ]


async def test_gpt_image_fuses_several_references_sent_as_a_list_of_data_urls(tmp_path, emu):
    refs = [image_file(tmp_path / "a.png", 256, 256), image_file(tmp_path / "b.jpg", 300, 200, "JPEG")]
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "edit_image", {"model": "gpt-image-1", "prompt": "fuse", "images": refs}
        )
    assert len(meta_of(result)["images"]) == 1
    (body,) = sent(emu)
    assert body["image"] == [data_url(refs[0]), data_url(refs[1], "image/jpeg")]


async def test_gpt_image_edit_sends_the_reference_as_a_data_url_with_its_fidelity(tmp_path, emu):
    ref = image_file(tmp_path / "in.webp", 256, 256, "WEBP")
    async with serve(env_for(tmp_path, emu)) as client:
        args = {"model": "gpt-image-1", "prompt": "oil", "images": [ref], "input_fidelity": "medium"}
        result = await client.call_tool("edit_image", args)
    assert pixels(meta_of(result)["images"][0]) == (1024, 1024)
    (body,) = sent(emu)
    assert body["image"] == data_url(ref, "image/webp")
    assert body["input_fidelity"] == "medium"


async def test_qwen_edit_keeps_the_last_inputs_aspect_and_sends_images_before_the_text(tmp_path, emu):
    refs = [image_file(tmp_path / "a.png", 400, 400), image_file(tmp_path / "b.png", 800, 600)]
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "edit_image", {"model": "qwen-image-edit-plus", "prompt": "swap", "images": refs}
        )
    width, height = pixels(meta_of(result)["images"][0])
    assert abs(width / height - 4 / 3) < 0.02 and abs(width * height / 1024**2 - 1) < 0.05
    (body,) = sent(emu)
    content = [{"image": data_url(refs[0])}, {"image": data_url(refs[1])}, {"text": "swap"}]
    assert body["input"]["messages"][0]["content"] == content


async def test_seededit_follows_the_input_image_with_size_adaptive(tmp_path, emu):
    ref = image_file(tmp_path / "in.jpg", 512, 384, "JPEG")
    async with serve(env_for(tmp_path, emu)) as client:
        args = {
            "model": "seededit-3.0",
            "prompt": "make it snow",
            "images": [ref],
            "size": "auto",
            "guidance_scale": 5.5,
        }
        result = await client.call_tool("edit_image", args)
    assert pixels(meta_of(result)["images"][0]) == (512, 384)
    (body,) = sent(emu)
    assert (body["size"], body["guidance_scale"]) == ("adaptive", 5.5)


# --- the size rules at their edges ----------------------------------------------------------------

ACCEPTED = [
    ({"model": "seedream-4.0", "size": "1280x720"}, (1280, 720)),  # exactly the 921,600-pixel minimum
    ({"model": "seedream-4.0", "resolution": "2K"}, (2048, 2048)),  # a bare tier the doc names: "(2K/4K)"
    ({"model": "seedream-3.0", "size": "512x2048"}, (512, 2048)),
    ({"model": "gemini-2.5-flash-image", "size": "21:9", "resolution": "2K"}, (3072, 1344)),  # doc's tier
    ({"model": "gemini-3-pro-image-preview", "size": "1:1", "resolution": "3K"}, (3072, 3072)),
    (
        {"model": "gemini-3-pro-image-preview", "resolution": "1K"},
        (1024, 1024),
    ),  # a tier alone (1:1 upstream)
    ({"model": "qwen-image-plus", "size": "1664x928"}, (1664, 928)),
    ({"model": "gpt-image-1-mini", "size": "1024x1536"}, (1024, 1536)),
]
REFUSED = [
    ({"model": "gemini-3-pro-image-preview", "size": "1024x1024"}, "takes only aspect ratios"),
    ({"model": "gemini-2.5-flash-image", "size": "2:1"}, "ratios 1:1,3:2"),
    ({"model": "gemini-2.5-flash-image", "size": "1:1", "resolution": "8K"}, "1K, 2K, 3K, 4K"),
    ({"model": "seedream-4.0", "size": "1279x720"}, "has fewer than 921600 pixels"),
    ({"model": "seedream-4.5", "size": "1920x1080"}, "has fewer than 3686400 pixels"),
    ({"model": "seedream-4.0", "resolution": "1K"}, "use one of 2K, 4K"),  # the doc names no 1K for 4.x
    ({"model": "seedream-3.0", "size": "511x1024"}, "is narrower than 512"),
    ({"model": "gpt-image-1", "size": "auto"}, "1024x1024, 1024x1536, 1536x1024"),
    ({"model": "gpt-image-1", "size": "1792x1024"}, "is not offered by gpt-image-1 via mixroute"),
    ({"model": "qwen-image-plus", "size": "1024x1024"}, "1664x928"),
    ({"model": "gpt-image-1", "n": 11}, "1 to 10"),
]


async def test_size_rules_hold_at_their_edges_and_the_gateway_agrees(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        for args, size in ACCEPTED:
            result = await client.call_tool("generate_image", {"prompt": "x", **args})
            assert pixels(meta_of(result)["images"][0]) == size, args
        for args, fragment in REFUSED:
            result = await client.call_tool("generate_image", {"prompt": "x", **args})
            assert kind_of(result) == "invalid_argument", args
            assert fragment in text_of(result), (args, text_of(result))
    assert len(sent(emu)) == len(ACCEPTED)  # nothing refused was sent


# --- the {code, msg, data} envelope ---------------------------------------------------------------


async def test_wrapped_replies_are_read_for_every_family(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, key=WRAPPED_KEY)) as client:
        for model, size in [
            ("gemini-2.5-flash-image", (1024, 1024)),
            ("seedream-4.0", (2048, 2048)),
            ("gpt-image-1", (1024, 1024)),
            ("qwen-image-plus", (1664, 928)),  # no size sent: the gateway's own default
        ]:
            result = await client.call_tool("generate_image", {"model": model, "prompt": "x"})
            (image,) = meta_of(result)["images"]
            assert pixels(image) == size, model
            assert "revised_prompt" not in image  # the envelope's "" means none
    assert emu.files()["downloads"] == 2  # Seedream and Qwen answer with URLs unasked


WRAPPED_FAILURES = [
    ("status", {"status": 402}, "insufficient_balance", "餘額不足"),
    ("status", {"status": 401}, "auth_failed", "無效的令牌"),
    ("error_in_200", {"status": 429}, "rate_limited", "Rate limit exceeded"),
    ("error_in_200", {"status": 400}, "content_refused", "safety system"),
    ("error_in_200", {"status": 500, "message": "上游服務異常"}, "upstream_error", "上游服務異常"),
]


async def test_a_wrapped_error_maps_by_its_code_with_the_gateways_msg(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, key=WRAPPED_KEY, IMAGEGATE_MAX_RETRIES="0")) as client:
        for kind, params, expected, fragment in WRAPPED_FAILURES:
            emu.fault("mixroute", "generations", kind, **params)
            result = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "x"})
            assert kind_of(result) == expected, (kind, params, text_of(result))
            assert fragment in text_of(result), (kind, params, text_of(result))
            assert WRAPPED_KEY not in text_of(result)


# --- failures -------------------------------------------------------------------------------------

FAILURES = [
    ("status", {"status": 401}, "auth_failed", "Invalid token"),
    ("status", {"status": 402}, "insufficient_balance", "Insufficient balance"),
    ("status", {"status": 429}, "rate_limited", "Rate limit exceeded"),
    ("status", {"status": 500}, "upstream_error", "Internal server error"),
    ("status", {"status": 502}, "upstream_error", "Bad gateway"),
    ("status", {"status": 503}, "upstream_error", "No channel is available"),
    ("status", {"status": 400}, "content_refused", "safety system"),
    ("error_in_200", {"status": 400}, "content_refused", "safety system"),
    ("malformed_json", {}, "upstream_error", "malformed JSON"),
    ("bad_base64", {}, "upstream_error", "does not decode"),
    ("partial", {"keep": 0}, "no_images", "without any image"),
    ("drop_connection", {}, "upstream_error", "could not reach mixroute"),
]


async def test_each_failure_maps_to_its_error_kind_with_the_gateways_message(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0")) as client:
        for kind, params, expected, fragment in FAILURES:
            emu.fault("mixroute", "generations", kind, **params)
            result = await client.call_tool(
                "generate_image", {"model": "gemini-2.5-flash-image", "prompt": "x"}
            )
            assert kind_of(result) == expected, (kind, params, text_of(result))
            assert fragment in text_of(result), (kind, params, text_of(result))
            assert result.meta["io.imagegate/error"]["provider"] == "mixroute"


async def test_an_expired_seedream_url_is_reported(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0")) as client:
        emu.fault("mixroute", "generations", "expired_url")
        expired = await client.call_tool("generate_image", {"model": "seedream-4.0", "prompt": "x"})
    assert kind_of(expired) == "upstream_error" and "expired" in text_of(expired)


async def test_a_busy_gateway_is_retried_and_then_served(tmp_path, emu):
    emu.fault("mixroute", "generations", "status", status=503, retry_after="0")
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", {"model": "qwen-image-plus", "prompt": "x"})
    assert len(meta_of(result)["images"]) == 1
    assert [r["status"] for r in emu.requests("mixroute")] == [503, 200]


async def test_a_wrong_key_is_refused_and_no_key_appears_in_results_or_sidecars(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, key="sk-wrong-sentinel-key")) as client:
        refused = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "x"})
    assert kind_of(refused) == "auth_failed" and "sk-wrong-sentinel-key" not in text_of(refused)
    async with serve(env_for(tmp_path, emu)) as client:
        made = await client.call_tool("generate_image", {"model": "seedream-4.0", "prompt": "x"})
    (image,) = meta_of(made)["images"]
    assert KEY not in text_of(made) and KEY not in Path(image["path"]).with_suffix(".json").read_text()


# --- the emulator itself: as strict as the doc implies --------------------------------------------


def doc_body(name: str, image: str) -> dict[str, Any]:
    text = (FIXTURES / f"{name}.json").read_text().replace(DOC_IMAGE, image)
    return dict(json.loads(text))


def png_url(width: int, height: int) -> str:
    from io import BytesIO

    buffer = BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def post(emulator: EmulatorClient, body: dict[str, Any], key: str = KEY) -> httpx2.Response:
    headers = {"authorization": f"Bearer {key}"}
    with httpx2.Client(headers=headers, trust_env=False, verify=False, timeout=30) as http:
        return http.post(emulator.base_url("mixroute") + "/images/generations", json=body)


@pytest.mark.parametrize(
    "name",
    [
        "request_gemini",
        "request_gemini_edit",
        "request_seedream",
        "request_seedream_edit",
        "request_gpt_image",
        "request_gpt_image_edit",
        "request_qwen",
        "request_seedream_base",
    ],
)
def test_the_emulator_accepts_every_example_of_the_doc(emu, name):
    response = post(emu, doc_body(name, png_url(64, 48)))
    assert response.status_code == 200, response.text
    assert response.json()["data"]


def qwen(
    text: str = "x", images: tuple[str, ...] = (), model: str = "qwen-image-plus", **rest: Any
) -> dict[str, Any]:
    content = [*({"image": i} for i in images), {"text": text}]
    return {"model": model, "input": {"messages": [{"role": "user", "content": content}]}, **rest}


GEMINI = {"model": "gemini-2.5-flash-image", "prompt": "x"}
SEEDREAM = {"model": "doubao-seedream-4-0-250828", "prompt": "x"}
GPT = {"model": "gpt-image-1", "prompt": "x"}
STRICT = [
    ({**GEMINI, "size": "1024x1024"}, "take an aspect ratio"),
    ({**GEMINI, "response_format": "url"}, "b64_json only"),
    ({**GEMINI, "n": 2}, "one image per request"),
    ({**GEMINI, "image_size": "8K"}, "Invalid image_size"),
    ({**GEMINI, "mime_type": "image/webp"}, "Invalid mime_type"),
    ({**GEMINI, "seed": 1}, "Unknown parameter 'seed'"),
    ({**GEMINI, "contents": [{"role": "user", "parts": [{"image": "https://x/y.png"}]}]}, "data:image"),
    ({**GEMINI, "contents": [{"role": "user", "parts": [{"image": png_url(8, 8)}] * 4}]}, "0-3 reference"),
    ({**SEEDREAM, "size": "1279x720"}, "Invalid size"),
    ({**SEEDREAM, "n": 2}, "group mode"),
    ({**SEEDREAM, "image_size": "2K"}, "Unknown parameter 'image_size'"),
    ({**SEEDREAM, "size": "1K"}, "Invalid size '1K'"),  # the doc: 4.0/4.5 sizes are "(2K/4K)"
    (  # the doc's group mode is a switch: no count field
        {**SEEDREAM, "sequential_image_generation": "auto", "sequential_image_generation_options": {}},
        "Unknown parameter 'sequential_image_generation_options'",
    ),
    (
        {**SEEDREAM, "model": "doubao-seedream-3-0-t2i-250415", "sequential_image_generation": "auto"},
        "disabled",
    ),
    ({**SEEDREAM, "model": "doubao-seededit-3-0-i2i-250628"}, "takes 1 reference"),
    ({**SEEDREAM, "guidance_scale": 11}, "Invalid guidance_scale"),
    ({**GPT, "size": "auto"}, "Invalid size"),
    ({**GPT, "quality": "auto"}, "Invalid quality"),
    ({**GPT, "n": 11}, "Invalid n 11"),
    ({**GPT, "response_format": "url"}, "b64_json only"),
    ({**GPT, "image": "https://x/y.png"}, "data:image"),
    ({**GPT, "input_fidelity": "max"}, "Invalid input_fidelity"),
    (qwen(n=2), "one image per request"),
    (qwen(parameters={"n": 2}), "one image per request"),
    ({**qwen(), "prompt": "x"}, "Unknown parameter 'prompt'"),
    (qwen(parameters={"size": "1328x1328"}), "Invalid parameters.size"),
    (qwen(parameters={"seed": -1}), "Invalid seed -1"),
    (qwen(parameters={"negative_prompt": "n" * 501}), "at most 500"),
    (qwen(model="qwen-image-edit-plus"), "takes 1-3 reference"),
    (qwen(images=(png_url(100, 100),), model="qwen-image-edit-plus"), "384-3072"),
    ({"model": "dall-e-3", "prompt": "x"}, "not offered by MixRoute"),
]


@pytest.mark.parametrize(("body", "fragment"), STRICT)
def test_the_emulator_refuses_what_the_gateway_would(emu, body, fragment):
    response = post(emu, body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize(("prompt", "made"), [("x", 1), ("a set of 3 posters", 3), ("4 seasons", 4)])
def test_the_emulators_group_mode_lets_the_model_choose_one_to_four_images(emu, prompt, made):
    response = post(emu, {**SEEDREAM, "prompt": prompt, "sequential_image_generation": "auto"})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == made


def test_a_wrapped_key_gets_the_envelope_on_success_and_on_error(emu):
    ok = post(emu, GPT, key=WRAPPED_KEY).json()
    assert (ok["code"], ok["msg"]) == (200, "操作成功")
    (item,) = ok["data"]["data"]
    assert item["url"] == "" and item["revised_prompt"] == "" and item["b64_json"]
    refused = post(emu, {**GPT, "n": 11}, key=WRAPPED_KEY)
    assert refused.status_code == 400
    assert refused.json() == {"code": 400, "msg": "Invalid n 11: expected 1-10.", "data": None}
