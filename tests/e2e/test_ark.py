"""The real server over stdio against the emulated Volcengine Ark: Seedream text-to-image, edits with
references and SeedEdit, the size rules at their edges, group mode on a route that allows it, every
documented failure mapped to its error kind with Ark's own message, and usage carried into the result and
the sidecar.

The last section drives the emulator directly: it must be as strict as ark-seedream.md says Ark is.
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
    base_env,
    data_url,
    image_file,
    kind_of,
    metadata,
    pixels,
    serve,
    sidecar_of,
    text_of,
)
from tools.emulator import EmulatorClient
from tools.emulator.ark import URL_TTL, _ArkProvider, routes
from tools.emulator.core import Provider
from tools.emulator.state import EmulatorState

pytestmark = pytest.mark.anyio

KEY = "test-sentinel-key-ark"
REFUSED_OUTPUT = "The request failed because the output image may contain sensitive information."


GROUP_CONFIG = """
[providers.arkgroup]
protocol = "ark"
base_url = "{base_url}"
key_env = "ARKGROUP_API_KEY"

[[providers.arkgroup.offerings]]
model = "seedream-4.0"
upstream = "doubao-seedream-4-0-250828"
per_call = 3
inputs = {{ forms = ["url", "base64"] }}
wire = {{ response_format = "url", sequential = true }}
"""


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    """Ark pointed at the emulator, plus `arkgroup`: a config-defined Ark route that allows group mode."""
    config = tmp_path / "imagegate.toml"
    config.write_text(GROUP_CONFIG.format(base_url=emulator.base_url("ark")))
    settings = {
        "ARK_API_KEY": KEY,
        "ARK_BASE_URL": emulator.base_url("ark"),
        "ARKGROUP_API_KEY": KEY,
        "IMAGEGATE_CONFIG": str(config),
    }
    return base_env(tmp_path, **settings, **extra)


def sent(emulator: EmulatorClient) -> list[dict[str, Any]]:
    return [r["json"] for r in emulator.requests("ark")]


# --- text to image ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_seedream_4_generates_the_ratio_preset_with_usage_in_result_and_sidecar(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), stdio=True) as client:
        result = await client.call_tool(
            "generate_image", {"model": "seedream-4.0", "prompt": "a fox", "size": "16:9"}
        )
        assert not result.is_error, text_of(result)
    meta = metadata(result)
    (image,) = meta["images"]
    assert (image["width"], image["height"], image["mime_type"]) == (2560, 1440, "image/jpeg")
    assert pixels(image) == (2560, 1440)
    usage = {"generated_images": 1, "output_tokens": 2560 * 1440 // 256, "total_tokens": 2560 * 1440 // 256}
    assert meta["usage"] == [usage]
    assert sidecar_of(image)["usage"] == usage
    assert sidecar_of(image)["upstream_model"] == "doubao-seedream-4-0-250828"
    assert sent(emu) == [
        {
            "model": "doubao-seedream-4-0-250828",
            "prompt": "a fox",
            "size": "2560x1440",
            "response_format": "b64_json",
        }
    ]
    assert KEY not in text_of(result) + json.dumps(sidecar_of(image))


@pytest.mark.parametrize(
    ("model", "resolution", "wire", "size"),
    [("seedream-4.0", "1K", "1K", (1024, 1024)), ("seedream-4.5", "2K", "2K", (2048, 2048))],
)
async def test_a_bare_resolution_goes_as_the_tier_and_seedream_picks_the_pixels(
    tmp_path, emu, model, resolution, wire, size
):
    async with serve(env_for(tmp_path, emu)) as client:
        args = {"model": model, "prompt": "a fox", "resolution": resolution}
        result = await client.call_tool("generate_image", args)
        assert not result.is_error, text_of(result)
    assert pixels(metadata(result)["images"][0]) == size
    assert sent(emu)[0]["size"] == wire


async def test_size_rules_hold_at_their_edges_before_anything_is_sent(tmp_path, emu):
    accepted = [
        ("seedream-4.5", {"size": "2560x1440"}),  # exactly the 3,686,400-pixel minimum
        ("seedream-4.0", {"size": "1280x720"}),  # exactly the 921,600-pixel minimum
        ("seedream-3.0", {"size": "512x2048"}),  # each side within 512..2048
    ]
    refused = [
        ("seedream-4.5", {"size": "2559x1440"}),
        ("seedream-4.5", {"resolution": "1K"}),  # 4.5 has no 1K tier
        ("seedream-4.0", {"size": "1279x720"}),
        ("seedream-3.0", {"size": "2049x1024"}),
    ]
    async with serve(env_for(tmp_path, emu)) as client:
        for model, args in accepted:
            result = await client.call_tool("generate_image", {"model": model, "prompt": "x", **args})
            assert not result.is_error, (model, args, text_of(result))
            assert tuple(map(int, args["size"].split("x"))) == pixels(metadata(result)["images"][0])
        for model, args in refused:
            result = await client.call_tool("generate_image", {"model": model, "prompt": "x", **args})
            assert kind_of(result) == "invalid_argument", (model, args)
        edit = {"model": "seededit-3.0", "prompt": "x", "images": [image_file(tmp_path / "a.png", 64, 64)]}
        result = await client.call_tool("edit_image", {**edit, "size": "1024x1024"})
        assert kind_of(result) == "invalid_argument"
        assert "follows the input image" in text_of(result)
    assert [body["size"] for body in sent(emu)] == ["2560x1440", "1280x720", "512x2048"]


async def test_n_fans_out_over_single_image_calls_without_group_mode(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "seedream-4.0", "prompt": "two foxes", "n": 2}
        )
        assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert meta["calls"] == 2 and len(meta["images"]) == 2
    assert all("sequential_image_generation" not in body for body in sent(emu))


# --- editing ----------------------------------------------------------------------------------------


async def test_seedream_edit_sends_every_reference_in_one_image_list(tmp_path, emu):
    png = image_file(tmp_path / "a.png", 96, 64)
    jpeg = image_file(tmp_path / "b.jpg", 64, 96, "JPEG")
    url = "https://example.com/cat.png"  # the route takes URLs: Ark fetches it, imagegate does not
    async with serve(env_for(tmp_path, emu)) as client:
        args = {"model": "seedream-4.0", "prompt": "put them together", "images": [png, jpeg, url]}
        result = await client.call_tool("edit_image", args)
        assert not result.is_error, text_of(result)
    (body,) = sent(emu)
    assert body["image"] == [data_url(png), data_url(jpeg, "image/jpeg"), url]
    assert body["size"] == "2048x2048"
    assert pixels(metadata(result)["images"][0]) == (2048, 2048)


async def test_seededit_follows_the_input_image_and_sends_its_knobs(tmp_path, emu):
    source = image_file(tmp_path / "room.png", 640, 480)
    args = {
        "model": "seededit-3.0",
        "prompt": "make it night",
        "images": [source],
        "seed": 42,
        "guidance_scale": 6.5,
        "watermark": False,
    }
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("edit_image", args)
        assert not result.is_error, text_of(result)
    (image,) = metadata(result)["images"]
    assert pixels(image) == (640, 480)
    assert image["seed"] == 42 and sidecar_of(image)["seed"] == 42
    assert sent(emu) == [
        {
            "model": "doubao-seededit-3-0-i2i-250628",
            "prompt": "make it night",
            "image": data_url(source),
            "size": "adaptive",
            "seed": 42,
            "guidance_scale": 6.5,
            "watermark": False,
            "response_format": "b64_json",
        }
    ]


# --- group mode -------------------------------------------------------------------------------------


async def test_a_group_route_makes_n_images_in_one_call_and_downloads_their_urls(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        args = {"model": "seedream-4.0", "provider": "arkgroup", "prompt": "a comic in three panels", "n": 3}
        result = await client.call_tool("generate_image", args)
        assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert meta["calls"] == 1 and len(meta["images"]) == 3
    assert meta["usage"][0]["generated_images"] == 3
    (body,) = sent(emu)
    assert body["sequential_image_generation"] == "auto"
    assert body["sequential_image_generation_options"] == {"max_images": 3}
    assert body["response_format"] == "url"
    assert emu.files()["downloads"] == 3


async def test_a_group_call_with_refused_images_keeps_the_rest_and_says_why(tmp_path, emu):
    emu.fault("ark", "generations", "partial", keep=1)
    async with serve(env_for(tmp_path, emu)) as client:
        args = {"model": "seedream-4.0", "provider": "arkgroup", "prompt": "three panels", "n": 3}
        result = await client.call_tool("generate_image", args)
        assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert len(meta["images"]) == 1
    warnings = " ".join(meta["warnings"])
    assert warnings.count(f"arkgroup: OutputImageSensitiveContentDetected: {REFUSED_OUTPUT}") == 2
    assert "1 of 3 images were made" in warnings
    assert meta["usage"][0]["generated_images"] == 1


# --- failures ---------------------------------------------------------------------------------------

FAILURES = [
    ("status", {"status": 400}, "content_refused", "the input text may contain sensitive information"),
    (
        "status",
        {
            "status": 400,
            "code": "InputImageSensitiveContentDetected",
            "message": "The request failed because the input image may contain sensitive information.",
        },
        "content_refused",
        "the input image may contain sensitive information",
    ),
    (
        "status",
        {
            "status": 400,
            "code": "InvalidParameter",
            "message": "The parameter `prompt` is not valid: too long.",
        },
        "upstream_error",
        "too long",
    ),
    ("status", {"status": 401}, "auth_failed", "missing or invalid"),
    (
        "status",
        {
            "status": 403,
            "code": "AccountOverdueError",
            "message": "The request failed because your account has an overdue balance.",
        },
        "insufficient_balance",
        "overdue balance",
    ),
    ("status", {"status": 403}, "auth_failed", "do not have access"),
    ("status", {"status": 404}, "model_not_found", "does not exist"),
    ("status", {"status": 429}, "rate_limited", "exceeded the rate limit"),
    (
        "status",
        {"status": 429, "code": "QuotaExceeded", "message": "Quota exceeded."},
        "rate_limited",
        "Quota",
    ),
    (
        "status",
        {"status": 429, "code": "ServerOverloaded", "message": "Server overload."},
        "rate_limited",
        "Server overload",
    ),
    ("status", {"status": 500}, "upstream_error", "unexpected internal error"),
    (
        "error_in_200",
        {"status": 400, "code": "OutputImageSensitiveContentDetected", "message": REFUSED_OUTPUT},
        "content_refused",
        REFUSED_OUTPUT,
    ),
    ("partial", {"keep": 0}, "content_refused", REFUSED_OUTPUT),  # the only image came back as an error item
    ("malformed_json", {}, "upstream_error", "malformed JSON"),
    ("bad_base64", {}, "upstream_error", "does not decode"),
]


async def test_each_documented_failure_maps_to_its_error_kind_with_arks_own_message(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0")) as client:
        for kind, params, expected, fragment in FAILURES:
            emu.fault("ark", "generations", kind, **params)
            result = await client.call_tool("generate_image", {"model": "seedream-4.0", "prompt": "x"})
            assert kind_of(result) == expected, (kind, params, text_of(result))
            assert fragment in text_of(result), (kind, params, text_of(result))
            assert KEY not in text_of(result)
        assert not list((tmp_path / "out").rglob("*.jpeg"))


async def test_a_rate_limited_call_is_retried_and_then_served(tmp_path, emu):
    emu.fault("ark", "generations", "status", status=429, retry_after="0")
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", {"model": "seedream-4.0", "prompt": "x"})
        assert not result.is_error, text_of(result)
    assert [r["status"] for r in emu.requests("ark")] == [429, 200]


# --- the emulator itself ----------------------------------------------------------------------------


@pytest.fixture
def http(emu: EmulatorClient) -> Iterator[httpx2.Client]:
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx2.Client(
        base_url=emu.base_url("ark"), headers=headers, trust_env=False, verify=False, timeout=30
    ) as client:
        yield client


def inline(width: int, height: int, token: str = "png") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return f"data:image/{token};base64,{base64.b64encode(buffer.getvalue()).decode()}"


S40, S45, S30, EDIT = (
    "doubao-seedream-4-0-250828",
    "doubao-seedream-4-5-251128",
    "doubao-seedream-3-0-t2i-250415",
    "doubao-seededit-3-0-i2i-250628",
)


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        (
            {"model": S45, "size": "1K"},
            400,
            "InvalidParameter",
            "not supported for model doubao-seedream-4-5",
        ),
        ({"model": S45, "size": "2048x1024"}, 400, "InvalidParameter", "at least 3686400 pixels"),
        ({"model": S40, "size": "4097x4096"}, 400, "InvalidParameter", "at most 16777216 pixels"),
        ({"model": S40, "size": "4080x240"}, 400, "InvalidParameter", "aspect ratio"),
        (
            {"model": S40, "size": "2K", "guidance_scale": 5},
            400,
            "InvalidParameter",
            "`guidance_scale` is not",
        ),
        ({"model": S30, "size": "2K"}, 400, "InvalidParameter", "not supported for model"),
        ({"model": S30, "size": "2049x1024"}, 400, "InvalidParameter", "between 512 and 2048"),
        ({"model": S30, "image": inline(64, 64)}, 400, "InvalidParameter", "`image` is not supported"),
        ({"model": S30, "sequential_image_generation": "auto"}, 400, "InvalidParameter", "not supported"),
        ({"model": EDIT}, 400, "MissingParameter", "`image`"),
        ({"model": EDIT, "image": inline(64, 64), "size": "1024x1024"}, 400, "InvalidParameter", "size"),
        ({"model": EDIT, "image": [inline(64, 64)] * 2}, 400, "InvalidParameter", "exactly one"),
        ({"model": S40, "image": inline(64, 64, "PNG")}, 400, "InvalidParameter", "lower case"),
        ({"model": S40, "image": inline(256, 64)}, 400, "InvalidParameter", "ratio in 1/3..3"),
        ({"model": S40, "image": inline(14, 64)}, 400, "InvalidParameter", "sides > 14 px"),
        ({"model": S40, "image": [inline(16, 16)] * 15}, 400, "InvalidParameter", "at most 14 reference"),
        (
            {
                "model": S40,
                "image": [inline(16, 16)] * 10,
                "sequential_image_generation": "auto",
                "sequential_image_generation_options": {"max_images": 6},
            },
            400,
            "InvalidParameter",
            "must not exceed 15",
        ),
        ({"model": S45, "optimize_prompt_options": {"mode": "fast"}}, 400, "InvalidParameter", "standard"),
        ({"model": S40, "seed": 2147483648}, 400, "InvalidParameter", "seed"),
        ({"model": "doubao-seedream-9"}, 404, "InvalidEndpointOrModel.NotFound", "does not exist"),
        ({"model": S40, "prompt": None}, 400, "MissingParameter", "`prompt`"),
    ],
)
def test_emulator_refuses_what_ark_refuses_in_arks_error_shape(http, body, status, code, fragment):
    payload = {k: v for k, v in {"prompt": "a fox", **body}.items() if v is not None}
    response = http.post("/images/generations", json=payload)

    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "param", "type"}
    assert error["code"] == code and fragment in error["message"]
    assert error["message"].endswith(f"Request id: {response.headers['x-request-id']}")


def test_emulator_group_mode_streams_each_image_then_completed(http):
    body = {
        "model": S40,
        "prompt": "a comic",
        "size": "1K",
        "stream": True,
        "response_format": "b64_json",
        "sequential_image_generation": "auto",
        "sequential_image_generation_options": {"max_images": 2},
    }
    response = http.post("/images/generations", json=body)

    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    events = [json.loads(line) for line in lines[:-1]]
    assert [e["type"] for e in events] == ["image_generation.partial_succeeded"] * 2 + [
        "image_generation.completed"
    ]
    assert [e["image_index"] for e in events[:2]] == [0, 1]
    assert events[-1]["usage"] == {"generated_images": 2, "output_tokens": 8192, "total_tokens": 8192}
    with Image.open(io.BytesIO(base64.b64decode(events[0]["b64_json"]))) as first:
        assert (first.format, first.size) == ("JPEG", (1024, 1024))


def test_emulator_links_live_a_day_unless_a_test_sets_another_ttl():
    state = EmulatorState(["ark"])
    (route,) = routes(Provider("ark", state))
    assert route.path == "/api/v3/images/generations"

    ark = _ArkProvider("ark", state)
    assert ark.settings.url_ttl == URL_TTL == 86400
    state.configure("ark", {"url_ttl": 5})
    assert ark.settings.url_ttl == 5


@pytest.mark.parametrize(("model", "size"), [("seedream-4.0", (400, 100)), ("seededit-3.0", (100, 400))])
async def test_an_input_outside_the_models_aspect_span_is_refused_before_any_request(
    tmp_path, emu, model, size
):
    path = image_file(tmp_path / "banner.png", *size)
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("edit_image", {"model": model, "prompt": "tidy", "images": [path]})
    assert kind_of(result) == "invalid_argument"
    assert f"is {size[0]}x{size[1]}" in text_of(result) and "width:height from 1:3 to 3:1" in text_of(result)
    assert sent(emu) == []
