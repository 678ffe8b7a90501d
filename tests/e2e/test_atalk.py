"""AtalkAI end to end: the real server (in memory; one test over stdio) against the emulator's AtalkAI
(seeds/004_f817f0b0c340ea4a.txt): Flux (URL replies, width/height or aspect_ratio) and Gemini
(base64 replies, aspect_ratio only), reference images as URL and bare base64 (up to 8 on every model:
input_image..input_image_8 are general parameters), the size rules at their edges (the doc's
multiples of 16), each error shape (HTTP status or `code` in a 200) mapped to its kind with the
upstream's message, the doc's retry sample (codes 429, 500, 503), and usage/cost with the reply's
model and provider in the result and the sidecar. The last section drives the emulator directly
to show it is as strict as the doc.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image
from tests.support import (
    ERROR_META,
    VirtualTime,
    kind_of,
    metadata,
    provider_env,
    serve,
    sizes_of,
    text_of,
    write_image,
)
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = "test-sentinel-key-atalk-9d42"
PROVIDER = "atalk"


def env(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    return provider_env(tmp_path, emulator, PROVIDER, KEY, **extra)


def bodies(emulator: EmulatorClient) -> list[dict[str, Any]]:
    return [record["json"] for record in emulator.requests(PROVIDER)]


def no_secret_anywhere(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert KEY not in text
    for path in (tmp_path / "out").rglob("*.json"):
        assert KEY not in path.read_text()


# ---- generation


@pytest.mark.slow
async def test_flux_text_to_image_sends_the_docs_basic_body_and_downloads_the_url(tmp_path, emu):
    args = {"model": "flux-2-pro", "prompt": "一只可爱的小猫", "size": "16:9", "provider": PROVIDER}
    async with serve(env(tmp_path, emu), stdio=True) as client:
        result = await client.call_tool("generate_image", args)

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert meta["provider"] == PROVIDER and meta["calls"] == 1
    assert sizes_of(meta) == [(1360, 768)]  # the emulator's ~1 MP for a bare ratio
    assert meta["images"][0]["mime_type"] == "image/jpeg"  # Flux's default output_format
    assert meta["images"][0]["revised_prompt"] == "A detailed image of: 一只可爱的小猫"
    assert bodies(emu) == [{"model": "flux-2-pro", "prompt": "一只可爱的小猫", "aspect_ratio": "16:9"}]
    assert emu.files()["downloads"] == 1
    no_secret_anywhere(tmp_path, text_of(result))


async def test_flux_pixels_go_as_width_height_with_the_flux_options(tmp_path, emu):
    args = {
        "model": "flux-2-pro",
        "prompt": "a lighthouse",
        "size": "1344x768",
        "seed": 42,
        "safety_tolerance": 3,
        "output_format": "png",
        "provider": PROVIDER,
    }
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    meta = metadata(result)
    assert sizes_of(meta) == [(1344, 768)]
    assert meta["images"][0]["mime_type"] == "image/png"
    (body,) = bodies(emu)
    assert body == {
        "model": "flux-2-pro",
        "prompt": "a lighthouse",
        "width": 1344,
        "height": 768,
        "seed": 42,
        "safety_tolerance": 3,
        "output_format": "png",
    }


async def test_gemini_answers_base64_of_its_ratio_and_gets_aspect_ratio_only(tmp_path, emu):
    args = {"model": "nano-banana", "prompt": "a fox", "size": "21:9", "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    meta = metadata(result)
    assert sizes_of(meta) == [(1536, 672)]
    assert meta["images"][0]["mime_type"] == "image/png"
    assert bodies(emu) == [{"model": "gemini-2.5-flash-image", "prompt": "a fox", "aspect_ratio": "21:9"}]
    assert emu.files()["downloads"] == 0


async def test_n_fans_out_one_image_per_call_and_usage_reaches_the_result_and_sidecars(tmp_path, emu):
    args = {"model": "flux-1.1-pro", "prompt": "usage", "size": "3:2", "n": 3, "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    meta = metadata(result)
    assert meta["calls"] == 3 and len(meta["images"]) == 3
    assert len(bodies(emu)) == 3
    usage = {
        "cost": 0.04,
        "images_generated": 1,
        "images_failed": 0,
        "currency": "CNY",
        "model": "flux-1.1-pro",  # the reply's model ("实际使用的模型名称") and provider
        "provider": "flux",
    }
    assert meta["usage"] == [usage] * 3
    for entry in meta["images"]:
        sidecar = json.loads(Path(entry["path"]).with_suffix(".json").read_text())
        assert sidecar["usage"] == usage
        assert sidecar["provider"] == PROVIDER and sidecar["upstream_model"] == "flux-1.1-pro"
    no_secret_anywhere(tmp_path, text_of(result))


# ---- editing with references


async def test_flux_edit_sends_files_and_data_urls_as_bare_base64_and_urls_as_urls(tmp_path, emu):
    first = Path(write_image(tmp_path / "a.png", (64, 48)))
    second = Path(write_image(tmp_path / "b.png", (40, 40)))
    data_url = "data:image/png;base64," + base64.b64encode(second.read_bytes()).decode()
    url = "https://example.com/ref3.jpg"
    args = {
        "model": "flux-2-pro",
        "prompt": "结合这些参考图像的风格",
        "images": [str(first), data_url, url],
        "size": "2:3",
        "provider": PROVIDER,
    }
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("edit_image", args)

    assert not result.is_error, text_of(result)
    (body,) = bodies(emu)
    assert list(body) == ["model", "prompt", "input_image", "input_image_2", "input_image_3", "aspect_ratio"]
    assert base64.b64decode(body["input_image"]) == first.read_bytes()
    assert base64.b64decode(body["input_image_2"]) == second.read_bytes()
    assert body["input_image_3"] == url
    assert sizes_of(metadata(result)) == [(832, 1248)]


async def test_eight_references_fill_every_input_image_field(tmp_path, emu):
    refs = [write_image(tmp_path / f"r{k}.png", (32 + k, 32)) for k in range(8)]
    args = {"model": "flux-2-pro", "prompt": "eight", "images": refs, "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("edit_image", args)

    assert not result.is_error, text_of(result)
    (body,) = bodies(emu)
    assert [k for k in body if k.startswith("input_image")] == [
        "input_image",
        *(f"input_image_{k}" for k in range(2, 9)),
    ]


async def test_gemini_edit_with_a_reference(tmp_path, emu):
    ref = Path(write_image(tmp_path / "ref.png", (64, 48)))
    args = {"model": "nano-banana", "prompt": "add a hat", "images": [str(ref)], "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("edit_image", args)

    assert sizes_of(metadata(result)) == [(1024, 1024)]
    (body,) = bodies(emu)
    assert body == {
        "model": "gemini-2.5-flash-image",
        "prompt": "add a hat",
        "input_image": base64.b64encode(ref.read_bytes()).decode(),
    }


# ---- size rules and limits at their edges

ACCEPTED = [
    ("flux-2-pro", "2048x2048", (2048, 2048)),  # exactly 4 MP
    ("flux-2-pro", "64x64", (64, 64)),
    ("flux-2-pro", "1:1", (1024, 1024)),
    ("flux-2-pro", "9:16", (768, 1360)),
    ("flux-1.1-pro", "1920x1088", (1920, 1088)),  # doc-valid (multiples of 16), past BFL's 1440
    ("flux-1.1-pro", "272x256", (272, 256)),  # a multiple of 16, not of BFL's 32
    ("flux-1.1-pro", "16x16", (16, 16)),
    ("gemini-2.5-flash-image", "16:9", (1344, 768)),
    ("gemini-2.5-flash-image", "32:18", (1344, 768)),  # the same ratio, another spelling
]

REFUSED = [
    ({"model": "flux-2-pro", "size": "2064x2048"}, "more than 4194304 pixels"),
    ({"model": "flux-2-pro", "size": "1000x1008"}, "not a multiple of 16"),
    ({"model": "flux-2-pro", "size": "48x64"}, "narrower than 64"),
    ({"model": "flux-2-pro", "size": "4:3"}, "a ratio 1:1, 2:3, 3:2, 3:4, 4:5, 5:4, 9:16, 16:9, 21:9"),
    ({"model": "flux-1.1-pro", "size": "1928x1088"}, "not a multiple of 16"),
    ({"model": "flux-1.1-pro", "size": "4112x4096"}, "more than 16777216 pixels"),
    ({"model": "gemini-2.5-flash-image", "size": "1024x1024"}, "takes only aspect ratios"),
    ({"model": "gemini-2.5-flash-image", "size": "4:3"}, "4:3"),
    ({"model": "flux-2-pro", "safety_tolerance": 6}, "safety_tolerance"),
    ({"model": "flux-2-pro", "output_format": "webp"}, "output_format"),
    ({"model": "gemini-2.5-flash-image", "seed": 1}, "seed"),
    ({"model": "flux-1.1-pro", "prompt_extend": True}, "prompt_extend"),
]


async def test_sizes_at_the_edges_are_served_and_past_them_refused_before_any_request(tmp_path, emu):
    async with serve(env(tmp_path, emu)) as client:
        for model, size, expected in ACCEPTED:
            args = {"model": model, "prompt": "edge", "size": size, "provider": PROVIDER}
            result = await client.call_tool("generate_image", args)
            assert not result.is_error, (size, text_of(result))
            assert sizes_of(metadata(result)) == [expected], size
        served = len(emu.requests(PROVIDER))
        for args, fragment in REFUSED:
            result = await client.call_tool("generate_image", {"prompt": "x", "provider": PROVIDER, **args})
            assert kind_of(result) == "invalid_argument", args
            assert fragment in text_of(result), (args, text_of(result))

    assert served == len(ACCEPTED)
    assert len(emu.requests(PROVIDER)) == served  # nothing refused reached the upstream


@pytest.mark.parametrize("model", ["flux-2-pro", "flux-1.1-pro", "nano-banana"])
async def test_every_model_takes_eight_references_without_a_warning_and_refuses_a_ninth(tmp_path, emu, model):
    # "API 最多支持 8 张图片(1 张主图 + 7 张额外图片)"; input_image is a general parameter (seeds/004)
    refs = [write_image(tmp_path / f"r{k}.png", (64, 48)) for k in range(9)]
    args = {"model": model, "prompt": "x", "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        nine = await client.call_tool("edit_image", {**args, "images": refs})
        eight = await client.call_tool("edit_image", {**args, "images": refs[:8]})

    assert kind_of(nine) == "invalid_argument" and "8" in text_of(nine)
    assert not eight.is_error, text_of(eight)
    assert metadata(eight)["warnings"] == []
    (body,) = bodies(emu)  # the ninth never reached the upstream
    assert [k for k in body if k.startswith("input_image")][-1] == "input_image_8"


# ---- failures: each shape mapped to its kind, with the upstream's own message

FAULTS: list[tuple[dict[str, Any], str, str | None]] = [
    ({"kind": "status", "status": 401}, "auth_failed", "API key is invalid or expired"),
    ({"kind": "error_in_200", "status": 401}, "auth_failed", "API key is invalid or expired"),
    ({"kind": "status", "status": 402}, "insufficient_balance", "Insufficient balance, please recharge"),
    ({"kind": "error_in_200", "message": "账户余额不足,请充值"}, "insufficient_balance", "账户余额不足"),
    ({"kind": "status", "status": 429, "count": 2}, "rate_limited", "Too many requests"),
    (  # code 429 in a 200 body is retried, as the doc's retry sample does (seeds/004): twice, it stays
        {"kind": "error_in_200", "code": 429, "message": "Too many requests", "count": 2},
        "rate_limited",
        "Too many requests",
    ),
    (
        {"kind": "status", "status": 400, "message": "Content rejected by the safety system"},
        "content_refused",
        "Content rejected by the safety system",
    ),
    ({"kind": "error_in_200", "message": "提示词包含敏感内容"}, "content_refused", "提示词包含敏感内容"),
    ({"kind": "status", "status": 400}, "upstream_error", "Invalid request parameters"),
    ({"kind": "error_in_200"}, "upstream_error", "Invalid request parameters"),
    ({"kind": "status", "status": 500, "count": 2}, "upstream_error", "Internal server error"),
    ({"kind": "status", "status": 503, "count": 2}, "upstream_error", "Service temporarily unavailable"),
    ({"kind": "status", "status": 504, "count": 2}, "timeout", "Upstream timeout"),
    ({"kind": "malformed_json"}, "upstream_error", "malformed JSON"),
    ({"kind": "partial"}, "no_images", "1 image(s) failed"),
    ({"kind": "expired_url"}, "upstream_error", "expired"),
]


async def test_each_error_shape_maps_to_its_kind_with_the_upstream_message(tmp_path, emu):
    async with serve(env(tmp_path, emu, IMAGEGATE_MAX_RETRIES="1"), **VirtualTime().hooks) as client:
        for fault, kind, fragment in FAULTS:
            emu.reset()
            emu.fault(PROVIDER, "generate", **fault)
            args = {"model": "flux-2-pro", "prompt": "x", "provider": PROVIDER}
            result = await client.call_tool("generate_image", args)
            assert kind_of(result) == kind, (fault, text_of(result))
            assert fragment is None or fragment in text_of(result), (fault, text_of(result))
            assert result.meta[ERROR_META]["provider"] == PROVIDER
            no_secret_anywhere(tmp_path, text_of(result))


# The doc's retry sample: `elif result.get("code") in [429, 500, 503]: # 可重试的错误` (seeds/004).
@pytest.mark.parametrize("code", [429, 500, 503])
@pytest.mark.parametrize("kind", ["error_in_200", "status"])
async def test_the_docs_retryable_codes_are_retried_and_the_call_then_succeeds(tmp_path, emu, kind, code):
    fault = {"code": code} if kind == "error_in_200" else {"status": code}
    emu.fault(PROVIDER, "generate", kind, **fault)
    clock = VirtualTime()
    async with serve(env(tmp_path, emu), **clock.hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "prompt": "x", "provider": PROVIDER}
        )

    assert not result.is_error, text_of(result)
    first = emu.requests(PROVIDER)[0]
    assert first["fault"] == kind and first["status"] == (200 if kind == "error_in_200" else code)
    assert len(emu.requests(PROVIDER)) == 2 and len(clock.sleeps) == 1


async def test_a_code_minus_one_is_not_retried(tmp_path, emu):
    emu.fault(PROVIDER, "generate", "error_in_200", status=400, count=2)
    clock = VirtualTime()
    async with serve(env(tmp_path, emu), **clock.hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "prompt": "x", "provider": PROVIDER}
        )

    assert kind_of(result) == "upstream_error" and "Invalid request parameters" in text_of(result)
    assert len(emu.requests(PROVIDER)) == 1 and clock.sleeps == []


async def test_bad_base64_from_gemini_is_an_upstream_error(tmp_path, emu):
    emu.fault(PROVIDER, "generate", "bad_base64")
    args = {"model": "nano-banana", "prompt": "x", "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    assert kind_of(result) == "upstream_error" and "does not decode" in text_of(result)


async def test_a_wrong_key_is_auth_failed_and_never_echoed(tmp_path, emu):
    emu.configure(PROVIDER, keys=["test-some-other-key"])
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "prompt": "x", "provider": PROVIDER}
        )

    assert kind_of(result) == "auth_failed"
    assert "API key is invalid or expired" in text_of(result)
    no_secret_anywhere(tmp_path, text_of(result))


@pytest.mark.slow  # waits out a one-second timeout
async def test_a_slow_upstream_is_a_timeout(tmp_path, emu):
    emu.fault(PROVIDER, "generate", "slow", seconds=4)
    async with serve(env(tmp_path, emu, IMAGEGATE_TIMEOUT="1")) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "prompt": "x", "provider": PROVIDER}
        )

    assert kind_of(result) == "timeout"


async def test_a_partial_fan_out_keeps_what_arrived_and_says_what_did_not(tmp_path, emu):
    emu.fault(PROVIDER, "generate", "error_in_200", message="Request Moderated")
    args = {"model": "flux-2-pro", "prompt": "x", "n": 2, "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert len(meta["images"]) == 1
    assert any("1 of 2 images were made" in w and "Request Moderated" in w for w in meta["warnings"])


# ---- the emulator itself, driven directly


@pytest.fixture
def http(emu: EmulatorClient) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=emu.base_url(PROVIDER), trust_env=False, verify=False, timeout=20) as client:
        yield client


def post(http: httpx2.Client, auth: str | None = f"Bearer {KEY}", **body: Any) -> httpx2.Response:
    headers = {"authorization": auth} if auth is not None else {}
    return http.post(
        "/images/generate", json={"model": "flux-2-pro", "prompt": "cat", **body}, headers=headers
    )


@pytest.mark.parametrize("auth", [f"Bearer {KEY}", KEY, f"bearer {KEY}"])
def test_emulator_takes_the_key_bare_or_as_bearer(http, auth):
    reply = post(http, auth)

    assert reply.status_code == 200 and reply.json()["code"] == 0


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "wrong"])
def test_emulator_refuses_a_missing_or_wrong_key_in_the_docs_shape(http, auth):
    reply = post(http, auth)

    assert reply.status_code == 401
    assert reply.json() == {"code": -1, "msg": "API key is invalid or expired"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {"aspect_ratio": "4:3"},
            "Invalid aspect_ratio parameter. Supported ratios: 1:1, 2:3, 3:2, 3:4, 4:5",
        ),
        ({"width": 1000, "height": 1024}, "Invalid width parameter: 1000"),
        ({"width": 4112, "height": 4096}, "more than 16777216 pixels"),
        ({"width": 1024, "height": 0}, "Invalid height parameter: 0"),
        ({"width": "1024"}, "Invalid width parameter: expected an integer"),
        ({"safety_tolerance": 6}, "Invalid safety_tolerance parameter: 6"),
        ({"safety_tolerance": -1}, "Invalid safety_tolerance parameter: -1"),
        ({"output_format": "webp"}, "Invalid output_format parameter: webp"),
        ({"seed": 1.5}, "Invalid seed parameter"),
        ({"model": "dall-e-3"}, "Unsupported model: dall-e-3"),
        ({"model": None}, "Missing required parameter: model"),
        ({"prompt": ""}, "Missing required parameter: prompt"),
        ({"input_image_2": "https://example.com/a.png"}, "input_image_2 requires input_image"),
        ({"input_image": "https://x/a.png", "input_image_9": "https://x/b.png"}, "at most 8 images"),
        ({"input_image": "not base64 at all!"}, "Invalid input_image"),
        ({"input_image": base64.b64encode(b"not an image").decode()}, "could not be decoded as an image"),
        ({"model": "gemini-2.5-flash-image", "width": 1024, "height": 1024}, "only supported by Flux models"),
        ({"model": "gemini-2.5-flash-image", "output_format": "png"}, "only supported by Flux models"),
    ],
)
def test_emulator_checks_fields_as_the_doc_states(http, body, fragment):
    reply = post(http, **body)

    assert reply.status_code == 400
    assert reply.json()["code"] == -1 and fragment in reply.json()["msg"]


def test_emulator_answers_flux_with_a_url_image_and_width_alone_keeps_the_ratio(http):
    reply = post(http, width=512, aspect_ratio="16:9", output_format="png").json()

    (item,) = reply["data"]
    assert item["type"] == "url" and item["mimeType"] is None
    assert reply["model"] == "flux-2-pro" and reply["provider"] == "flux"
    assert reply["usage"] == {"cost": 0.04, "images_generated": 1, "images_failed": 0}
    with Image.open(io.BytesIO(http.get(item["image"]).content)) as image:
        assert (image.format, image.size) == ("PNG", (512, 288))


def test_emulator_answers_gemini_with_base64_png(http):
    reply = post(http, model="gemini-2.5-flash-image", aspect_ratio="9:16").json()

    (item,) = reply["data"]
    assert (item["type"], item["mimeType"], item["revised_prompt"]) == ("base64", "image/png", None)
    assert reply["provider"] == "gemini" and reply["usage"]["cost"] == 0.02
    with Image.open(io.BytesIO(base64.b64decode(item["image"]))) as image:
        assert image.size == (768, 1344)


def test_emulator_takes_any_positive_multiple_of_16_for_any_flux_model(http):
    reply = post(http, model="flux-1.1-pro", width=1920, height=1088).json()

    assert reply["code"] == 0 and reply["model"] == "flux-1.1-pro"
    with Image.open(io.BytesIO(http.get(reply["data"][0]["image"]).content)) as image:
        assert image.size == (1920, 1088)


def test_emulator_refuses_a_reference_over_20_megapixels(http):
    buffer = io.BytesIO()
    Image.new("1", (5000, 4001)).save(buffer, format="PNG")
    reply = post(
        http, model="gemini-2.5-flash-image", input_image=base64.b64encode(buffer.getvalue()).decode()
    )

    assert reply.status_code == 400 and "20MP" in reply.json()["msg"]


def test_emulator_takes_eight_base64_or_data_url_references(http):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    raw = base64.b64encode(buffer.getvalue()).decode()
    refs = {"input_image": raw, **{f"input_image_{k}": f"data:image/png;base64,{raw}" for k in range(2, 9)}}

    assert post(http, **refs).json()["code"] == 0


async def test_a_key_echoed_in_an_error_inside_a_200_body_is_scrubbed(tmp_path, emu):
    # Errors raised from a 200 body never pass the HTTP client's scrubbing; the generator scrubs them.
    emu.fault(PROVIDER, "*", "error_in_200", status=401, message=f"API key {KEY} is invalid or expired")
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "provider": PROVIDER, "prompt": "x"}
        )
    assert result.is_error and KEY not in text_of(result) and "API key *** is invalid" in text_of(result)
