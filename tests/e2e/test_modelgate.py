"""ModelGate end to end: the real server (in memory; one test over stdio) against the emulator's
ModelGate (seeds/000_04e54511d4d1ae45.txt): generation and reference images on all three models, the
size tables at their edges, each documented error code and the doc's retry guidance (is_retry on 429;
500/503/508 "请稍后重试", as a status or inside a 200 body; waits on VirtualTime), usage in the result
and the sidecar. The last section drives the emulator directly to show it is as strict as the doc.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image
from tests.support import VirtualTime, metadata, provider_env, serve, sizes_of, text_of, write_image
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = "test-sentinel-key-modelgate-5b1e"
PROVIDER = "modelgate"


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
async def test_seedream_makes_n_images_in_one_call_with_the_doubao_body(tmp_path, emu):
    args = {"model": "seedream-4.0", "prompt": "a cat in a spacesuit", "size": "16:9", "n": 3}
    async with serve(env(tmp_path, emu), stdio=True) as client:
        result = await client.call_tool("generate_image", {**args, "provider": PROVIDER})

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert meta["calls"] == 1 and meta["provider"] == PROVIDER
    assert sizes_of(meta) == [(2560, 1440)] * 3
    assert {entry["mime_type"] for entry in meta["images"]} == {"image/jpeg"}
    (body,) = bodies(emu)
    # the doc's Doubao order, without output_format (a field of the Google models only)
    assert list(body) == ["output_type", "number_results", "model", "prompt", "size"]
    assert body == {
        "output_type": "base64",
        "number_results": 3,
        "model": "volcengine/doubao-seedream-4-0",
        "prompt": "a cat in a spacesuit",
        "size": "2560x1440",
    }
    assert "authorization" in emu.requests(PROVIDER)[0]["headers"]
    no_secret_anywhere(tmp_path, text_of(result))


async def test_usage_and_task_ids_reach_the_result_and_the_sidecar(tmp_path, emu):
    args = {"model": "seedream-4.0", "prompt": "usage", "n": 2, "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    meta = metadata(result)
    (usage,) = meta["usage"]
    assert usage["usage"] == [{"quality": "default", "size": "2048x2048"}] * 2
    assert usage["model"] == "volcengine/doubao-seedream-4-0"  # the model the reply says served it
    assert len(usage["task_id"]) == 32 and usage["request_id"].isdigit()
    for entry in meta["images"]:
        sidecar = json.loads(Path(entry["path"]).with_suffix(".json").read_text())
        assert sidecar["usage"] == usage
        assert sidecar["upstream_model"] == "volcengine/doubao-seedream-4-0"


async def test_nano_banana_fans_out_one_image_per_call_in_the_google_order(tmp_path, emu):
    args = {"model": "nano-banana", "prompt": "a fox", "size": "21:9", "n": 2, "output_format": "jpeg"}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", {**args, "provider": PROVIDER})

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert meta["calls"] == 2
    assert sizes_of(meta) == [(1536, 672)] * 2
    assert {entry["mime_type"] for entry in meta["images"]} == {"image/jpeg"}
    for body in bodies(emu):
        assert list(body) == ["model", "prompt", "size", "output_type", "output_format"]
        assert body["model"] == "google/nano-banana" and body["output_format"] == "jpeg"


EDGE_SIZES = [
    ({"model": "nano-banana-pro", "size": "16:9", "resolution": "4K"}, (5504, 3072)),
    ({"model": "nano-banana-pro", "size": "21:9", "resolution": "2K"}, (3168, 1344)),
    ({"model": "nano-banana-pro", "size": "768x1376"}, (768, 1376)),
    ({"model": "seedream-4.0", "size": "3024x1296"}, (3024, 1296)),
    ({"model": "seedream-4.0", "size": "9:16"}, (1440, 2560)),
    ({"model": "nano-banana", "size": "1344x768"}, (1344, 768)),
]


async def test_sizes_at_the_edges_of_each_table_are_sent_and_delivered(tmp_path, emu):
    async with serve(env(tmp_path, emu)) as client:
        for args, size in EDGE_SIZES:
            result = await client.call_tool(
                "generate_image", {**args, "prompt": "edge", "provider": PROVIDER}
            )
            assert not result.is_error, text_of(result)
            assert sizes_of(metadata(result)) == [size], args
    assert [body["size"] for body in bodies(emu)] == [f"{w}x{h}" for _, (w, h) in EDGE_SIZES]


async def test_sizes_outside_the_tables_are_refused_before_any_upstream_call(tmp_path, emu):
    cases = [
        ({"model": "seedream-4.0", "size": "1024x1024"}, "2048x2048"),
        ({"model": "nano-banana", "size": "1584x672"}, "1536x672"),
        ({"model": "nano-banana-pro", "size": "1584x672", "resolution": "2K"}, "3168x1344"),
        ({"model": "seedream-4.0", "n": 16}, "1 to 15"),
    ]
    async with serve(env(tmp_path, emu)) as client:
        for args, allowed in cases:
            result = await client.call_tool("generate_image", {**args, "prompt": "x", "provider": PROVIDER})
            assert result.is_error, args
            assert result.meta["io.imagegate/error"]["kind"] == "invalid_argument"
            assert allowed in text_of(result), text_of(result)
    assert bodies(emu) == []


async def test_a_url_reply_is_downloaded_and_saved(tmp_path, emu):
    args = {"model": "nano-banana", "prompt": "u", "provider": PROVIDER, "extra": {"output_type": "url"}}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    assert not result.is_error, text_of(result)
    assert sizes_of(metadata(result)) == [(1024, 1024)]
    assert bodies(emu)[0]["output_type"] == "url"
    assert emu.files()["downloads"] == 1


# ---- reference images


async def test_seedream_edit_sends_a_local_file_as_a_data_url_and_a_url_as_is(tmp_path, emu):
    image = Path(write_image(tmp_path / "ref.png", (64, 48)))
    args = {
        "model": "seedream-4.0",
        "prompt": "make it night",
        "images": [str(image), "https://example.com/style.jpg"],
        "size": "4:3",
        "provider": PROVIDER,
    }
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("edit_image", args)

    assert not result.is_error, text_of(result)
    assert sizes_of(metadata(result)) == [(2304, 1728)]
    (body,) = bodies(emu)
    first, second = body["seed_images"]
    assert first == "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    assert second == "https://example.com/style.jpg"
    assert list(body)[-1] == "seed_images"


async def test_nano_banana_pro_edit_takes_urls_and_its_reference_size_list(tmp_path, emu):
    refs = ["https://example.com/a.png", "https://example.com/b.png"]
    args = {"model": "nano-banana-pro", "prompt": "blend", "images": refs, "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        ratio = await client.call_tool("edit_image", {**args, "size": "3:2", "resolution": "2K"})
        square = await client.call_tool("edit_image", {**args, "size": "1:1"})

    assert not ratio.is_error, text_of(ratio)
    assert sizes_of(metadata(ratio)) == [(2528, 1696)]
    assert square.is_error and square.meta["io.imagegate/error"]["kind"] == "invalid_argument"
    assert "1200x896" in text_of(square)
    (body,) = bodies(emu)
    assert body["seed_images"] == refs and body["size"] == "2528x1696"


async def test_no_size_is_invented_for_several_references_one_reference_keeps_the_docs_default(tmp_path, emu):
    refs = ["https://example.com/a.png", "https://example.com/b.png"]
    args = {"model": "nano-banana-pro", "prompt": "blend", "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        one = await client.call_tool("edit_image", {**args, "images": refs[:1]})
        several = await client.call_tool("edit_image", {**args, "images": refs})

    assert sizes_of(metadata(one)) == [(1024, 1024)]  # "单图输入": the full list, the doc's default
    first, second = bodies(emu)
    assert first["size"] == "1024x1024"
    assert "size" not in second  # "多图输入" has no documented default: ModelGate decides
    assert several.is_error, text_of(several)  # this emulator applies 1024x1024 and refuses it
    assert "invalid Size for nano-banana-pro" in text_of(several)


async def test_google_routes_refuse_local_files_and_nano_banana_takes_up_to_ten_urls(tmp_path, emu):
    image = write_image(tmp_path / "ref.png", (64, 48))
    urls = [f"https://example.com/{k}.png" for k in range(11)]
    args = {"model": "nano-banana", "prompt": "x", "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        local = await client.call_tool("edit_image", {**args, "images": [image]})
        eleven = await client.call_tool("edit_image", {**args, "images": urls})
        ten = await client.call_tool("edit_image", {**args, "images": urls[:10]})

    assert local.is_error and local.meta["io.imagegate/error"]["kind"] == "invalid_argument"
    assert "takes only http(s) URLs" in text_of(local)
    assert eleven.is_error and eleven.meta["io.imagegate/error"]["kind"] == "invalid_argument"
    # "最大输入图像数: 10" read over "支持单图输入" (UNCONFIRMED): sent, without a warning
    assert not ten.is_error, text_of(ten)
    assert metadata(ten)["warnings"] == []
    (body,) = bodies(emu)
    assert body["seed_images"] == urls[:10]


# ---- errors


ERROR_CASES = [
    # (fault kind, params, expected kind, text the agent must see)
    ("status", {"status": 401}, "auth_failed", "unauthorized: invalid API key"),
    ("error_in_200", {"status": 401}, "auth_failed", "unauthorized: invalid API key"),
    ("status", {"status": 402}, "insufficient_balance", "insufficient balance, please recharge"),
    ("error_in_200", {"status": 402}, "insufficient_balance", "insufficient balance, please recharge"),
    ("status", {"status": 429}, "rate_limited", "too many requests, please retry later"),
    ("error_in_200", {"status": 429}, "rate_limited", "too many requests, please retry later"),
    ("status", {"status": 500}, "upstream_error", "internal server error, please retry later"),
    ("error_in_200", {"status": 503}, "upstream_error", "service unavailable, please retry later"),
    ("status", {"status": 508}, "upstream_error", "upstream task failed, please retry later"),
    (
        "error_in_200",
        {"status": 400, "message": "failed to validate request: prompt blocked by content moderation"},
        "content_refused",
        "prompt blocked by content moderation",
    ),
    (
        "status",
        {"status": 400, "message": "failed to validate request: unsupported parameter"},
        "upstream_error",
        "failed to validate request: unsupported parameter",
    ),
]


async def test_each_documented_error_code_maps_to_its_kind_with_the_upstream_message(tmp_path, emu):
    args = {"model": "nano-banana", "prompt": "x", "provider": PROVIDER}
    async with serve(env(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0")) as client:
        for kind, params, expected, message in ERROR_CASES:
            emu.fault(PROVIDER, "generations", kind, **params)
            result = await client.call_tool("generate_image", args)
            assert result.is_error, (kind, params)
            assert result.meta["io.imagegate/error"]["kind"] == expected, (kind, params, text_of(result))
            assert message in text_of(result), text_of(result)
            no_secret_anywhere(tmp_path, text_of(result))


async def test_a_wrong_key_is_auth_failed_and_the_key_is_never_echoed(tmp_path, emu):
    emu.configure(PROVIDER, keys=["test-the-right-one"])
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "nano-banana", "prompt": "x", "provider": PROVIDER}
        )

    assert result.meta["io.imagegate/error"]["kind"] == "auth_failed"
    assert "rejected the API key" in text_of(result)
    no_secret_anywhere(tmp_path, text_of(result))


# The doc's retry guidance: "if (data.is_retry) { … return generateImage(payload) }" for 429, and
# "服务器错误,请稍后重试" for 500/503/508; each as an HTTP status and inside a 200 body.
RETRIED = [(kind, code) for code in (429, 500, 503, 508) for kind in ("status", "error_in_200")]


@pytest.mark.parametrize(("kind", "code"), RETRIED)
async def test_the_docs_retryable_codes_are_retried_and_the_call_then_succeeds(tmp_path, emu, kind, code):
    emu.fault(PROVIDER, "generations", kind, status=code)
    clock = VirtualTime()
    async with serve(env(tmp_path, emu), **clock.hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "nano-banana", "prompt": "x", "provider": PROVIDER}
        )

    assert not result.is_error, text_of(result)
    first_status = 200 if kind == "error_in_200" else code
    assert [record["status"] for record in emu.requests(PROVIDER)] == [first_status, 200]
    assert len(clock.sleeps) == 1  # one backoff, waited on virtual time


async def test_a_retryable_code_that_persists_ends_after_the_retries_with_its_kind(tmp_path, emu):
    emu.fault(PROVIDER, "generations", "error_in_200", status=508, count=3)
    clock = VirtualTime()
    async with serve(env(tmp_path, emu, IMAGEGATE_MAX_RETRIES="2"), **clock.hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "nano-banana", "prompt": "x", "provider": PROVIDER}
        )

    assert result.meta["io.imagegate/error"]["kind"] == "upstream_error"
    assert "upstream task failed, please retry later" in text_of(result)
    assert len(emu.requests(PROVIDER)) == 3 and len(clock.sleeps) == 2


async def test_a_partial_seedream_batch_keeps_what_arrived_and_says_so(tmp_path, emu):
    emu.fault(PROVIDER, "generations", "partial", keep=2)
    args = {"model": "seedream-4.0", "prompt": "x", "n": 4, "provider": PROVIDER}
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", args)

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert len(meta["images"]) == 2
    assert any("2 of 4 images" in warning for warning in meta["warnings"])


async def test_undecodable_image_data_is_an_upstream_error(tmp_path, emu):
    emu.fault(PROVIDER, "generations", "bad_base64")
    async with serve(env(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "nano-banana", "prompt": "x", "provider": PROVIDER}
        )

    assert result.meta["io.imagegate/error"]["kind"] == "upstream_error"
    assert "does not decode" in text_of(result)


# ---- the emulator's own strictness, over plain HTTP


def png_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


URL = "https://example.com/a.png"
STRICT_CASES = [
    (
        {"model": "google/nano-banana-pro", "size": "1024x10214"},
        "failed to validate request: invalid Size for nano-banana-pro model: 1024x10214. "
        "Must be a valid NxN format from supported resolutions",
    ),
    (
        {"model": "volcengine/doubao-seedream-4-0", "size": "1024x1024"},
        "invalid Size for doubao-seedream-4-0",
    ),
    ({"model": "google/nano-banana", "size": "1024x1024", "number_results": 2}, "invalid number_results"),
    (
        {"model": "volcengine/doubao-seedream-4-0", "size": "2048x2048", "number_results": 16},
        "number_results",
    ),
    (
        {"model": "google/nano-banana", "seed_images": ["data:image/png;base64," + png_b64()]},
        "only image URLs",
    ),
    ({"model": "google/nano-banana", "seed_images": [URL] * 11}, "too many seed_images for nano-banana"),
    ({"model": "google/nano-banana-pro", "seed_images": [URL, URL]}, "invalid Size for nano-banana-pro"),
    (
        {"model": "volcengine/doubao-seedream-4-0", "size": "2048x2048", "seed_images": ["bm90IGFuIGltYWdl"]},
        "base64",
    ),
    (
        {"model": "volcengine/doubao-seedream-4-0", "size": "2048x2048", "seed_images": [URL] * 11},
        "At most 10",
    ),
    ({"model": "google/nano-banana", "output_type": "b64_json"}, "invalid output_type"),
    ({"model": "google/nano-banana", "output_format": "webp"}, "invalid output_format"),
    ({"model": "google/imagen-4"}, "unsupported model: google/imagen-4"),
    ({"model": "google/nano-banana", "prompt": ""}, "prompt is required"),
]


def post(emulator: EmulatorClient, body: dict[str, Any], key: str = KEY) -> httpx2.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with httpx2.Client(trust_env=False, verify=False, timeout=30) as http:
        return http.post(emulator.base_url(PROVIDER) + "/images/generations", json=body, headers=headers)


@pytest.mark.parametrize(("fields", "message"), STRICT_CASES)
def test_the_emulator_rejects_what_the_doc_rules_out_in_the_docs_error_shape(emu, fields, message):
    response = post(emu, {"prompt": "x", **fields})

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["code"] == 400
    assert body["message"]["status"] == "failed"
    assert message in body["message"]["error"]["message"]


def test_the_emulator_accepts_one_seed_image_with_the_full_nano_banana_pro_list(emu):
    body = {"model": "google/nano-banana-pro", "prompt": "x", "size": "1024x1024", "seed_images": [URL]}
    reply = post(emu, body).json()

    assert reply["status"] == "completed"
    (item,) = reply["data"]
    assert item["content"].startswith("data:image/png;base64,")


def test_the_emulator_answers_seedream_base64_as_b64_json_with_a_usage_list(emu):
    body = {
        "model": "volcengine/doubao-seedream-4-0",
        "prompt": "x",
        "size": "2048x2048",
        "number_results": 2,
    }
    reply = post(emu, {**body, "seed_images": ["data:image/png;base64," + png_b64(), png_b64()]}).json()

    assert [set(item) for item in reply["data"]] == [{"b64_json"}] * 2
    assert reply["usage"] == [{"quality": "default", "size": "2048x2048"}] * 2
    assert set(reply) == {"task_id", "status", "model", "created", "data", "usage", "request_id"}


def test_the_emulator_refuses_a_missing_key_with_code_401(emu):
    response = post(emu, {"model": "google/nano-banana", "prompt": "x"}, key="")

    assert response.status_code == 401 and response.json()["code"] == 401


def test_the_emulators_429_says_is_retry(emu):
    emu.fault(PROVIDER, "generations", "error_in_200", status=429)
    response = post(emu, {"model": "google/nano-banana", "prompt": "x"})

    assert response.status_code == 200
    assert response.json()["is_retry"] is True and response.json()["code"] == 429
