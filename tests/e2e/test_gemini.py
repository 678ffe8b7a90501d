"""The real server over stdio against the emulated Gemini API: Nano Banana and Nano Banana Pro through
`:generateContent`, Imagen through `:predict`, edits with references, the size rules at their edges, every
documented failure mapped to its error kind with Google's own message, usage in the result and the sidecar,
and the key kept out of every result, sidecar and log line.

The last section drives the emulator directly: it must be as strict as the references say Google is.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image
from tests.support import (
    base_env,
    error_of,
    metadata,
    open_image,
    provider_env,
    serve,
    sidecar_of,
    text_of,
    write_image,
)
from tools.emulator import ControlError, EmulatorClient

pytestmark = pytest.mark.anyio

KEY = "test-sentinel-key-gemini-e2e"
GENERATE = "generateContent"


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    return provider_env(tmp_path, emulator, "gemini", KEY, **extra)


def outcome(emulator: EmulatorClient, **scenario: Any) -> dict[str, Any]:
    """Queue an outcome through the Gemini emulator's own control route."""
    return dict(emulator.control("gemini", "outcomes", **scenario))


def sent(emulator: EmulatorClient, endpoint: str = GENERATE) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("gemini") if r["endpoint"] == endpoint]


def sizes(result: Any) -> list[tuple[int, int]]:
    return [open_image(image["path"]).size for image in metadata(result)["images"]]


# --- text to image ----------------------------------------------------------------------------------


async def test_nano_banana_generates_the_ratio_asked_with_usage_in_result_and_sidecar(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "nano-banana", "prompt": "a fox", "size": "16:9", "n": 2}
        )

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert (meta["model"], meta["provider"], meta["calls"]) == ("gemini-2.5-flash-image", "gemini", 2)
    assert sizes(result) == [(1344, 768)] * 2
    assert meta["usage"][0]["candidatesTokenCount"] == 1290
    assert sidecar_of(meta["images"][0]["path"])["usage"] == meta["usage"][0]
    [first, _] = sent(emu)
    assert first["path"].endswith("/v1beta/models/gemini-2.5-flash-image:generateContent")
    assert first["json"]["generationConfig"] == {
        "responseModalities": ["IMAGE"],
        "imageConfig": {"aspectRatio": "16:9"},
    }
    assert "x-goog-api-key" in first["headers"] and "authorization" not in first["headers"]


async def test_nano_banana_pro_tiers_at_their_edges_and_the_final_image_not_the_drafts(tmp_path, emu):
    calls = [
        ({"size": "21:9", "resolution": "4K"}, (6336, 2688), {"aspectRatio": "21:9", "imageSize": "4K"}),
        ({"size": "2752x1536"}, (2752, 1536), {"aspectRatio": "16:9", "imageSize": "2K"}),
        ({"size": "9:16"}, (768, 1376), {"aspectRatio": "9:16", "imageSize": "1K"}),
        ({}, (1024, 1024), None),
    ]
    async with serve(env_for(tmp_path, emu)) as client:
        for args, size, image_config in calls:
            result = await client.call_tool(
                "generate_image", {"model": "nano-banana-pro", "prompt": "a fox", **args}
            )
            assert not result.is_error, text_of(result)
            assert sizes(result) == [size]  # the thought drafts are half of 1K: never saved
            assert sent(emu)[-1]["json"]["generationConfig"].get("imageConfig") == image_config
            assert metadata(result)["usage"][0]["thoughtsTokenCount"] > 0


async def test_sizes_outside_the_rules_are_refused_before_anything_is_sent(tmp_path, emu):
    cases = [
        ({"model": "nano-banana", "size": "16:9", "resolution": "2K"}, "resolution"),
        ({"model": "nano-banana", "size": "1376x768"}, "size"),
        ({"model": "nano-banana-pro", "size": "1:4"}, "size"),
        ({"model": "imagen-4-fast", "size": "16:9", "resolution": "2K"}, "resolution"),
        ({"model": "imagen-4", "size": "1408x768"}, "size"),
    ]
    async with serve(env_for(tmp_path, emu)) as client:
        for args, argument in cases:
            result = await client.call_tool("generate_image", {"prompt": "a fox", **args})
            assert error_of(result)["kind"] == "invalid_argument", args
            assert error_of(result)["argument"] == argument
    assert emu.requests("gemini") == []


async def test_extra_reaches_generation_config_and_the_models_text_becomes_a_note(tmp_path, emu):
    extra = {"responseModalities": ["TEXT", "IMAGE"], "temperature": 0.5}
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "nano-banana", "prompt": "a fox", "seed": 7, "extra": extra}
        )

    assert not result.is_error, text_of(result)
    assert metadata(result)["notes"] == ["Here is the image: a fox"]
    config = sent(emu)[0]["json"]["generationConfig"]
    assert (config["responseModalities"], config["temperature"], config["seed"]) == (
        ["TEXT", "IMAGE"],
        0.5,
        7,
    )


async def test_google_api_key_is_the_alias(tmp_path, emu):
    env = base_env(tmp_path, GOOGLE_API_KEY=KEY, GEMINI_BASE_URL=emu.base_url("gemini"))
    async with serve(env) as client:
        result = await client.call_tool("generate_image", {"model": "nano-banana", "prompt": "a fox"})

    assert not result.is_error, text_of(result)


# --- editing with references -------------------------------------------------------------------------


async def test_edit_sends_references_as_inline_data_and_follows_the_last_inputs_aspect(tmp_path, emu):
    first = write_image(tmp_path / "cat.png", (640, 640))
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 900), "blue").save(buffer, "JPEG")
    second = f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()}"
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "edit_image", {"model": "nano-banana", "prompt": "cat on the sofa", "images": [first, second]}
        )

    assert not result.is_error, text_of(result)
    assert sizes(result) == [(1184, 864)]  # no size: the aspect of the last input, 4:3 (gemini.md §2)
    parts = sent(emu)[0]["json"]["contents"][0]["parts"]
    assert parts[0] == {"text": "cat on the sofa"}
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["image/png", "image/jpeg"]
    assert base64.b64decode(parts[2]["inlineData"]["data"]) == buffer.getvalue()
    assert metadata(result)["usage"][0]["promptTokensDetails"][1] == {"modality": "IMAGE", "tokenCount": 516}


async def test_edit_input_limits_are_checked_before_sending(tmp_path, emu):
    image = write_image(tmp_path / "a.png", (64, 64))
    gif = tmp_path / "a.gif"
    Image.new("RGB", (64, 64)).save(gif, "GIF")
    cases = [
        ({"model": "nano-banana", "images": [image] * 4}, "images"),  # at most 3 (gemini.md §3)
        ({"model": "nano-banana", "images": [str(gif)]}, "images[0]"),
        ({"model": "nano-banana", "images": [image], "mask": image}, "mask"),
        ({"model": "imagen-4", "images": [image]}, "model"),
    ]
    async with serve(env_for(tmp_path, emu)) as client:
        for args, argument in cases:
            result = await client.call_tool("edit_image", {"prompt": "edit", **args})
            assert error_of(result)["kind"] == "invalid_argument", (args, text_of(result))
            assert error_of(result).get("argument") == argument, text_of(result)
        ok = await client.call_tool(
            "edit_image", {"model": "nano-banana-pro", "prompt": "x", "images": [image] * 14}
        )
        assert not ok.is_error, text_of(ok)
    assert len(sent(emu)[0]["json"]["contents"][0]["parts"]) == 15


# --- Imagen ------------------------------------------------------------------------------------------


async def test_imagen_makes_n_in_one_predict_call_at_the_tier_and_format_asked(tmp_path, emu):
    args = {"model": "imagen-4", "prompt": "a lighthouse", "size": "16:9", "resolution": "2K", "n": 3}
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", {**args, "output_format": "jpeg"})
        fast = await client.call_tool(
            "generate_image", {"model": "imagen-4-fast", "prompt": "x", "size": "3:4"}
        )

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert meta["calls"] == 1 and sizes(result) == [(2816, 1536)] * 3
    assert {image["mime_type"] for image in meta["images"]} == {"image/jpeg"}
    first, second = sent(emu, "predict")
    assert first["path"].endswith("/models/imagen-4.0-generate-001:predict")
    assert first["json"]["parameters"] == {
        "sampleCount": 3,
        "includeRaiReason": True,
        "aspectRatio": "16:9",
        "sampleImageSize": "2K",
        "outputOptions": {"mimeType": "image/jpeg"},
    }
    assert not fast.is_error and sizes(fast) == [(896, 1280)]
    assert "sampleImageSize" not in second["json"]["parameters"]


async def test_imagen_filtered_images_leave_fewer_with_a_warning(tmp_path, emu):
    outcome(emu, outcome="filtered", images=1)
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", {"model": "imagen-4", "prompt": "a crowd", "n": 3})

    assert not result.is_error, text_of(result)
    assert len(metadata(result)["images"]) == 2
    assert any("2 of 3 images" in warning for warning in metadata(result)["warnings"])


# --- failures ----------------------------------------------------------------------------------------


FAILURES: list[tuple[str, dict[str, Any], str, str]] = [
    # (how, arranged, error kind, a fragment of the agent text)
    ("outcome", {"outcome": "blocked"}, "content_refused", "PROHIBITED_CONTENT"),
    ("outcome", {"outcome": "finish", "reason": "IMAGE_SAFETY"}, "content_refused", "IMAGE_SAFETY"),
    ("outcome", {"outcome": "finish", "reason": "NO_IMAGE"}, "no_images", "NO_IMAGE"),
    (
        "outcome",
        {"outcome": "text_only", "text": "I can only describe it."},
        "no_images",
        "I can only describe it.",
    ),
    (
        "fault",
        {"kind": "status", "status": 429, "count": 1},
        "rate_limited",
        "You exceeded your current quota",
    ),
    (
        "fault",
        {"kind": "status", "status": 403, "count": 1},
        "auth_failed",
        "The caller does not have permission",
    ),
    (
        "fault",
        {"kind": "status", "status": 400, "message": "Unsupported MIME type: x"},
        "upstream_error",
        "Unsupported MIME",
    ),
    ("fault", {"kind": "status", "status": 404}, "upstream_error", "Requested entity was not found"),
    ("fault", {"kind": "status", "status": 503}, "upstream_error", "The model is overloaded"),
    ("fault", {"kind": "status", "status": 500}, "upstream_error", "An internal error has occurred"),
    ("fault", {"kind": "error_in_200", "status": 429}, "rate_limited", "You exceeded your current quota"),
    ("fault", {"kind": "bad_base64"}, "upstream_error", "does not decode"),
    ("fault", {"kind": "malformed_json"}, "upstream_error", "malformed JSON"),
    ("fault", {"kind": "partial"}, "no_images", "NO_IMAGE"),
]


async def test_each_documented_failure_maps_to_its_kind_with_googles_message(tmp_path, emu):
    env = env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0")
    async with serve(env) as client:
        for how, arranged, kind, fragment in FAILURES:
            if how == "outcome":
                outcome(emu, **arranged)
            else:
                emu.fault("gemini", GENERATE, **arranged)
            result = await client.call_tool("generate_image", {"model": "nano-banana", "prompt": "a fox"})
            assert error_of(result)["kind"] == kind, (arranged, text_of(result))
            assert fragment in text_of(result), (arranged, text_of(result))
            assert error_of(result)["provider"] == "gemini"


async def test_rate_limit_says_when_google_asks_to_retry(tmp_path, emu):
    emu.fault("gemini", GENERATE, "status", status=429, count=2)
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="1")) as client:
        result = await client.call_tool("generate_image", {"model": "nano-banana", "prompt": "a fox"})

    assert error_of(result)["kind"] == "rate_limited"
    assert "retrying in 41 s" in text_of(result)
    assert len(sent(emu)) == 2  # the HTTP layer retried once


async def test_imagen_failures(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0")) as client:
        outcome(emu, outcome="policy")
        policy = await client.call_tool("generate_image", {"model": "imagen-4", "prompt": "a fox"})
        outcome(emu, outcome="filtered", images=4)
        filtered = await client.call_tool("generate_image", {"model": "imagen-4", "prompt": "a fox", "n": 2})
        emu.fault("gemini", "predict", "partial", keep=0)
        dropped = await client.call_tool("generate_image", {"model": "imagen-4", "prompt": "a fox"})

    assert error_of(policy)["kind"] == "content_refused" and "may violate our policies" in text_of(policy)
    assert error_of(filtered)["kind"] == "content_refused" and "safety filter threshold" in text_of(filtered)
    assert error_of(dropped)["kind"] == "no_images"


@pytest.mark.slow  # waits out a one-second timeout
async def test_a_slow_upstream_is_a_timeout(tmp_path, emu):
    emu.fault("gemini", GENERATE, "slow", seconds=3)
    async with serve(env_for(tmp_path, emu, IMAGEGATE_TIMEOUT="1", IMAGEGATE_MAX_RETRIES="0")) as client:
        result = await client.call_tool("generate_image", {"model": "nano-banana", "prompt": "a fox"})

    assert error_of(result)["kind"] == "timeout"


@pytest.mark.slow
async def test_a_wrong_key_is_auth_failed_and_the_key_is_nowhere(tmp_path, emu):
    emu.configure("gemini", keys=["test-the-right-one"])
    log = tmp_path / "stderr.log"
    with log.open("w") as errlog:
        async with serve(env_for(tmp_path, emu), errlog, stdio=True) as client:
            wrong = await client.call_tool("generate_image", {"model": "nano-banana", "prompt": "a fox"})
            emu.configure("gemini", keys=[KEY])
            right = await client.call_tool("generate_image", {"model": "nano-banana", "prompt": "a fox"})

    assert error_of(wrong)["kind"] == "auth_failed"
    assert "API key not valid" in text_of(wrong)
    assert not right.is_error, text_of(right)
    texts = [text_of(wrong), text_of(right), log.read_text()]
    texts += [p.read_text() for p in (tmp_path / "out").rglob("*.json")]
    assert all(KEY not in text for text in texts)


# --- the emulator's own strictness -----------------------------------------------------------------------


@pytest.fixture
def http(emu: EmulatorClient) -> Iterator[httpx2.Client]:
    headers = {"x-goog-api-key": KEY}
    with httpx2.Client(
        base_url=emu.base_url("gemini"), headers=headers, trust_env=False, verify=False, timeout=30
    ) as client:
        yield client


def png_b64(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def ask(
    http: httpx2.Client, model: str, config: dict[str, Any] | None = None, **body: Any
) -> httpx2.Response:
    contents = body.pop("contents", [{"parts": [{"text": "a fox"}]}])
    payload = {"contents": contents, **({"generationConfig": config} if config is not None else {}), **body}
    return http.post(f"/models/{model}:generateContent", json=payload)


def google_error(response: httpx2.Response, status: int, name: str) -> str:
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (status, name)
    return str(error["message"])


def final_image(response: httpx2.Response) -> Image.Image:
    parts = response.json()["candidates"][0]["content"]["parts"]
    final = [p for p in parts if "inlineData" in p and not p.get("thought")][-1]
    return Image.open(io.BytesIO(base64.b64decode(final["inlineData"]["data"])))


@pytest.mark.parametrize(
    ("model", "config", "status", "name"),
    [
        ("gemini-2.5-flash-image", {"imageConfig": {"imageSize": "1K"}}, 400, "INVALID_ARGUMENT"),
        ("gemini-2.5-flash-image", {"imageConfig": {"aspectRatio": "7:3"}}, 400, "INVALID_ARGUMENT"),
        ("gemini-3-pro-image-preview", {"imageConfig": {"imageSize": "2k"}}, 400, "INVALID_ARGUMENT"),
        (
            "gemini-3-pro-image-preview",
            {"imageConfig": {"personGeneration": "ALLOW_ALL"}},
            400,
            "INVALID_ARGUMENT",
        ),
        ("gemini-3-pro-image-preview", {"candidateCount": 2}, 400, "INVALID_ARGUMENT"),
        ("gemini-3-pro-image-preview", {"responseModalities": ["PICTURE"]}, 400, "INVALID_ARGUMENT"),
        ("gemini-3-pro-image-preview", {"sampleCount": 2}, 400, "INVALID_ARGUMENT"),
        ("gemini-2.5-flash-image-preview", {}, 404, "NOT_FOUND"),  # retired 2025-10-31 (gemini.md §5)
        ("imagen-4.0-generate-001", {}, 404, "NOT_FOUND"),
    ],
)
def test_emulator_refuses_what_google_refuses(http, model, config, status, name):
    google_error(ask(http, model, config), status, name)


def test_emulator_accepts_snake_case_and_answers_camel_case(http):
    contents = [
        {
            "role": "user",
            "parts": [
                {"text": "a fox"},
                {"inline_data": {"mime_type": "image/png", "data": png_b64((90, 160))}},
            ],
        }
    ]
    response = ask(
        http,
        "gemini-2.5-flash-image",
        None,
        contents=contents,
        generation_config={"response_modalities": ["IMAGE"]},
    )

    assert response.status_code == 200, response.text[:300]
    assert final_image(response).size == (768, 1344)  # 9:16 like the input
    assert "usageMetadata" in response.json() and "usage_metadata" not in response.json()


@pytest.mark.parametrize(
    ("parts", "fragment"),
    [
        ([{"inlineData": {"mimeType": "image/gif", "data": png_b64((8, 8))}}], "Unsupported MIME type"),
        ([{"inlineData": {"mimeType": "image/png", "data": "*not base64*"}}], "TYPE_BYTES"),
        (
            [{"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"text").decode()}}],
            "Unable to process",
        ),
        ([{"inlineData": {"mimeType": "image/png", "data": png_b64((8, 8))}}] * 4, "at most 3"),
        ([{}], "required oneof field 'data'"),
    ],
)
def test_emulator_checks_input_images(http, parts, fragment):
    response = ask(http, "gemini-2.5-flash-image", None, contents=[{"parts": [{"text": "edit"}, *parts]}])

    assert fragment in google_error(response, 400, "INVALID_ARGUMENT")


def test_emulator_pro_sends_two_thought_drafts_before_the_final_image(http):
    response = ask(
        http, "gemini-3-pro-image-preview", {"imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}}
    )

    parts = response.json()["candidates"][0]["content"]["parts"]
    drafts = [p for p in parts if p.get("thought") and "inlineData" in p]
    assert len(drafts) == 2 and "thoughtSignature" in parts[-1]
    assert final_image(response).size == (2752, 1536)


def test_emulator_auth_missing_wrong_and_query_key(emu, http):
    plain = httpx2.Client(base_url=emu.base_url("gemini"), trust_env=False, verify=False, timeout=30)
    with plain:
        payload = {"contents": [{"parts": [{"text": "x"}]}]}
        google_error(
            plain.post("/models/gemini-2.5-flash-image:generateContent", json=payload),
            403,
            "PERMISSION_DENIED",
        )
        wrong = plain.post(
            "/models/gemini-2.5-flash-image:generateContent", json=payload, headers={"x-goog-api-key": "bad"}
        )
        assert (
            google_error(wrong, 400, "INVALID_ARGUMENT") == "API key not valid. Please pass a valid API key."
        )
        assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        by_query = plain.post(f"/models/gemini-2.5-flash-image:generateContent?key={KEY}", json=payload)
        assert by_query.status_code == 200


def test_emulator_rate_limit_carries_retry_info(emu, http):
    emu.fault("gemini", GENERATE, "status", status=429, retry_after=3)
    response = ask(http, "gemini-2.5-flash-image")

    google_error(response, 429, "RESOURCE_EXHAUSTED")
    retry = [d for d in response.json()["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]


@pytest.mark.parametrize(
    ("model", "parameters", "fragment"),
    [
        ("imagen-4.0-fast-generate-001", {"sampleImageSize": "2K"}, "sampleImageSize"),
        ("imagen-4.0-generate-001", {"sampleCount": 5}, "between 1 and 4"),
        ("imagen-4.0-generate-001", {"aspectRatio": "2:3"}, "aspect ratio"),
        ("imagen-4.0-generate-001", {"negativePrompt": "x"}, "not supported in Gemini API"),
        ("imagen-4.0-generate-001", {"seed": 1}, "not supported in Gemini API"),
        ("imagen-4.0-generate-001", {"outputOptions": {"mimeType": "image/webp"}}, "output mime type"),
    ],
)
def test_emulator_imagen_refuses_what_the_developer_api_refuses(http, model, parameters, fragment):
    response = http.post(
        f"/models/{model}:predict", json={"instances": [{"prompt": "x"}], "parameters": parameters}
    )

    assert fragment in google_error(response, 400, "INVALID_ARGUMENT")


def test_emulator_imagen_defaults_to_four_images_and_reports_filtered_ones(emu, http):
    default = http.post("/models/imagen-4.0-generate-001:predict", json={"instances": [{"prompt": "x"}]})
    outcome(emu, outcome="filtered", images=1)
    filtered = http.post(
        "/models/imagen-4.0-generate-001:predict",
        json={"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 2, "includeRaiReason": True}},
    )

    assert len(default.json()["predictions"]) == 4  # sampleCount defaults to 4 (imagen.md §6.3)
    assert [sorted(p) for p in filtered.json()["predictions"]] == [
        ["bytesBase64Encoded", "mimeType"],
        ["raiFilteredReason"],
    ]
    google_error(
        http.post("/models/gemini-2.5-flash-image:predict", json={"instances": [{"prompt": "x"}]}),
        404,
        "NOT_FOUND",
    )


def test_emulator_outcome_control_rejects_nonsense(emu):
    with pytest.raises(ControlError):  # the emulator answered with an HTTP error
        outcome(emu, outcome="explode")
