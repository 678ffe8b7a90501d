"""Gemini API protocol, pure parts: request bodies, replies, errors (shared/providers/gemini.md, imagen.md).

Fixtures in tests/fixtures/gemini/ are the docs' own examples, their elided base64 ("iVBORw0KGgo...")
replaced by whole tiny images; request_edit.json is gemini.md §2 without `candidateCount` (imagegate never
asks for more than one candidate); error_api_key_invalid.json is the observed reply to a wrong key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from imagegate.catalog import ResolvedSize, Route, load_catalog
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.gemini import build_request, classify_error, parse_predictions, parse_reply, run
from imagegate.providers.http import ProviderClient, ProviderProfile

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini"
KEY = "test-sentinel-key-gemini-unit"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(model: str) -> Route:
    return next(r for r in load_catalog().routes if r.provider == "gemini" and r.model == model)


NO_SIZE = ResolvedSize()


def job(model: str, size: ResolvedSize = NO_SIZE, **kw: Any) -> Batch:
    fields: dict[str, Any] = {"prompt": "a red fox", "count": 1, "knobs": {}, **kw}
    return Batch(tool="edit" if fields.get("images") else "generate", route=route(model), size=size, **fields)


def image_from(part: dict[str, Any], name: str) -> InputImage:
    blob = part["inlineData"]
    return InputImage(
        name=name, mime=blob["mimeType"], width=0, height=0, data=base64.b64decode(blob["data"])
    )


# ---- requests


def test_edit_body_is_the_docs_request_example_field_for_field_and_in_order():
    expected = fixture("request_edit")
    parts = expected["contents"][0]["parts"]
    request = build_request(
        job(
            "gemini-3-pro-image",
            ResolvedSize(2752, 1536, "16:9", "2K"),
            prompt=parts[0]["text"],
            images=(image_from(parts[1], "images[0]"), image_from(parts[2], "images[1]")),
            knobs={"seed": 42},
            extra={"safetySettings": expected["safetySettings"]},
        )
    )

    assert request.path == "/models/gemini-3-pro-image:generateContent"
    assert request.json == expected
    assert list(request.json) == list(expected)
    assert list(request.json["generationConfig"]) == list(expected["generationConfig"])


@pytest.mark.parametrize(
    ("model", "size", "image_config"),
    [
        # gemini-2.5-flash-image has no imageSize: its table's "1K" is never sent (gemini.md §6.2)
        ("gemini-2.5-flash-image", ResolvedSize(1344, 768, "16:9", "1K"), {"aspectRatio": "16:9"}),
        ("gemini-2.5-flash-image", ResolvedSize(1536, 672, "21:9", "1K"), {"aspectRatio": "21:9"}),
        (
            "gemini-3-pro-image",
            ResolvedSize(1024, 1024, "1:1", "1K"),
            {"aspectRatio": "1:1", "imageSize": "1K"},
        ),
        (
            "gemini-3-pro-image",
            ResolvedSize(6336, 2688, "21:9", "4K"),
            {"aspectRatio": "21:9", "imageSize": "4K"},
        ),
        ("gemini-3-pro-image", ResolvedSize(tier="2K"), {"imageSize": "2K"}),
        (
            "gemini-3.1-flash-image",
            ResolvedSize(768, 1376, "9:16", "1K"),
            {"aspectRatio": "9:16", "imageSize": "1K"},
        ),
    ],
)
def test_image_config_carries_the_ratio_and_only_tiers_the_model_accepts(model, size, image_config):
    config = build_request(job(model, size)).json["generationConfig"]

    assert config == {"responseModalities": ["IMAGE"], "imageConfig": image_config}


def test_no_size_sends_no_image_config_so_the_aspect_follows_the_input():
    body = build_request(job("gemini-2.5-flash-image")).json

    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "a red fox"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"]},
    }


def test_extra_fields_merge_into_the_body_and_generation_fields_into_generation_config():
    extra = {
        "temperature": 0.4,
        "responseModalities": ["TEXT", "IMAGE"],
        "generationConfig": {"topP": 0.9, "imageConfig": {"aspectRatio": "3:2"}},
        "systemInstruction": {"parts": [{"text": "photorealistic"}]},
    }
    body = build_request(
        job("gemini-2.5-flash-image", ResolvedSize(1344, 768, "16:9", "1K"), extra=extra)
    ).json

    assert body["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "3:2"},
        "temperature": 0.4,
        "topP": 0.9,
    }
    assert body["systemInstruction"] == extra["systemInstruction"]


def test_imagen_body_is_the_docs_request_example():
    expected = fixture("imagen_request")
    request = build_request(
        job(
            "imagen-4",
            ResolvedSize(ratio="16:9", tier="2K"),
            prompt=expected["instances"][0]["prompt"],
            count=2,
            knobs={"output_format": "jpeg", "output_compression": 80},
            extra={"personGeneration": "allow_adult"},
        )
    )

    assert request.path == "/models/imagen-4.0-generate-001:predict"
    assert request.json == expected


@pytest.mark.parametrize(
    ("model", "size", "parameters"),
    [
        (
            "imagen-4-fast",
            ResolvedSize(ratio="9:16"),
            {"aspectRatio": "9:16"},
        ),  # Fast has no tiers (imagen.md §3)
        ("imagen-4", ResolvedSize(ratio="1:1", tier="1K"), {"aspectRatio": "1:1", "sampleImageSize": "1K"}),
        ("imagen-4-ultra", ResolvedSize(), {}),
    ],
)
def test_imagen_always_sends_sample_count_and_only_tiers_the_model_has(model, size, parameters):
    body = build_request(job(model, size, count=3)).json

    assert body["parameters"] == {"sampleCount": 3, "includeRaiReason": True, **parameters}


def test_a_knob_the_protocol_cannot_express_is_a_warning_not_a_silent_drop():
    request = build_request(job("gemini-2.5-flash-image", knobs={"quality": "high"}))

    assert [w.feature for w in request.warnings] == ["quality"]
    assert "quality" not in json.dumps(request.json)


# ---- replies


def test_image_reply_gives_the_image_the_models_text_and_usage():
    body = fixture("reply_image")
    reply = parse_reply(body, "gemini")

    [artifact] = reply.artifacts
    assert artifact.decoded() == base64.b64decode(
        body["candidates"][0]["content"]["parts"][1]["inlineData"]["data"]
    )
    assert artifact.mime == "image/png"
    assert reply.note == "Here is the edited scene."
    assert reply.usage == body["usageMetadata"]


def test_thought_drafts_are_skipped_and_the_last_image_is_the_result():
    body = fixture("reply_thoughts")
    reply = parse_reply(body, "gemini")

    [artifact] = reply.artifacts
    assert artifact.decoded() == base64.b64decode(
        body["candidates"][0]["content"]["parts"][3]["inlineData"]["data"]
    )
    assert reply.note is None
    assert reply.usage is not None and reply.usage["thoughtsTokenCount"] == 212


def test_snake_case_parts_are_read_too():
    body = fixture("reply_image")
    part = body["candidates"][0]["content"]["parts"][1]
    part["inline_data"] = {"mime_type": "image/png", "data": part.pop("inlineData")["data"]}

    assert len(parse_reply(body, "gemini").artifacts) == 1


def test_blocked_prompt_is_content_refused_naming_the_reason():
    with pytest.raises(ContentRefused, match="PROHIBITED_CONTENT"):
        parse_reply(fixture("reply_blocked"), "gemini")


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("IMAGE_SAFETY", ContentRefused),
        ("IMAGE_PROHIBITED_CONTENT", ContentRefused),
        ("IMAGE_RECITATION", ContentRefused),
        ("SAFETY", ContentRefused),
        ("PROHIBITED_CONTENT", ContentRefused),
        ("RECITATION", ContentRefused),
        ("SPII", ContentRefused),
        ("NO_IMAGE", NoImagesReturned),
        ("IMAGE_OTHER", NoImagesReturned),
        ("OTHER", NoImagesReturned),
        ("MAX_TOKENS", NoImagesReturned),
    ],
)
def test_a_candidate_without_image_maps_its_finish_reason(reason, error):
    body = fixture("reply_image_safety")
    body["candidates"][0]["finishReason"] = reason

    with pytest.raises(error, match=reason) as raised:
        parse_reply(body, "gemini")
    assert type(raised.value) is error


def test_text_only_stop_is_no_images_with_the_models_words():
    body = fixture("reply_text_only")

    with pytest.raises(NoImagesReturned) as raised:
        parse_reply(body, "gemini")
    assert raised.value.upstream_message == body["candidates"][0]["content"]["parts"][0]["text"]


def test_finish_message_is_the_upstream_message():
    body = fixture("reply_image_safety")
    body["candidates"][0]["finishMessage"] = "The generated image was blocked."

    with pytest.raises(ContentRefused) as raised:
        parse_reply(body, "gemini")
    assert raised.value.upstream_message == "The generated image was blocked."


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (fixture("error_429"), RateLimited),  # a proxy's 200 carrying Google's envelope
        (fixture("error_invalid_argument"), UpstreamError),
        ([], UpstreamError),
        ({"candidates": "nope"}, UpstreamError),
        ({}, NoImagesReturned),
        (
            {
                "candidates": [
                    {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "*"}}]}}
                ]
            },
            UpstreamError,
        ),
    ],
)
def test_unusable_replies_raise_errors_of_the_tree(body, error):
    with pytest.raises(error):
        [
            artifact.decoded() for artifact in parse_reply(body, "gemini").artifacts
        ]  # base64 decodes in the core


def test_imagen_reply_keeps_images_and_counts_filtered_ones_as_failures():
    body = fixture("imagen_reply")
    reply = parse_predictions(body, "gemini")

    [artifact] = reply.artifacts
    assert artifact.decoded() == base64.b64decode(body["predictions"][0]["bytesBase64Encoded"])
    assert artifact.mime == "image/png"
    assert reply.failures == (body["predictions"][1]["raiFilteredReason"],)


def test_imagen_all_filtered_is_content_refused_with_the_reason():
    with pytest.raises(ContentRefused) as raised:
        parse_predictions(fixture("imagen_all_filtered"), "gemini")
    assert raised.value.upstream_message is not None and "safety filter" in raised.value.upstream_message


def test_imagen_without_predictions_is_no_images():
    with pytest.raises(NoImagesReturned, match="safety filters"):
        parse_predictions({}, "gemini")


def test_imagen_enhanced_prompt_is_the_revised_prompt():
    body = {
        "predictions": [{**fixture("imagen_reply")["predictions"][0], "prompt": "A lighthouse, dusk, oils"}]
    }

    assert parse_predictions(body, "gemini").artifacts[0].revised_prompt == "A lighthouse, dusk, oils"


# ---- errors


@pytest.mark.parametrize(
    ("status", "name", "error"),
    [
        (429, "error_429", RateLimited),
        (400, "error_api_key_invalid", AuthFailed),
        (403, "error_permission_denied", AuthFailed),
        (400, "error_invalid_argument", UpstreamError),
        (404, "error_not_found", UpstreamError),
        (503, "error_503", UpstreamError),
        (400, "imagen_error_policy", ContentRefused),
    ],
)
def test_google_error_envelope_maps_to_the_tree_with_the_upstream_message(status, name, error):
    body = fixture(name)
    classified = classify_error(status, body, "gemini")

    assert type(classified) is error
    assert classified.upstream_message == body["error"]["message"]


def test_rate_limit_carries_retry_info_delay():
    classified = classify_error(429, fixture("error_429"), "gemini")

    assert isinstance(classified, RateLimited)
    assert classified.retry_after == 41.0
    assert "41 s" in classified.message


def test_fractional_retry_delay_and_missing_retry_info():
    body = fixture("error_429")
    body["error"]["details"][1]["retryDelay"] = "1.5s"
    assert classify_error(429, body, "gemini").retry_after == 1.5  # type: ignore[attr-defined]

    body["error"]["details"] = []
    assert classify_error(429, body, "gemini").retry_after is None  # type: ignore[attr-defined]


def test_invalid_argument_keeps_status_and_is_not_retryable():
    classified = classify_error(400, fixture("error_invalid_argument"), "gemini")

    assert isinstance(classified, UpstreamError)
    assert (classified.status, classified.retryable) == (400, False)
    assert "INVALID_ARGUMENT" in classified.message


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (503, fixture("error_503"), UpstreamError),
        (
            504,
            {"error": {"code": 504, "message": "Deadline expired", "status": "DEADLINE_EXCEEDED"}},
            UpstreamTimeout,
        ),
        (502, "<html>Bad Gateway</html>", UpstreamError),
        (401, {"detail": "no"}, AuthFailed),
    ],
)
def test_other_failures_fall_back_on_the_status(status, body, error):
    classified = classify_error(status, body, "gemini")

    assert type(classified) is error


# ---- run, over a mock transport


async def _run(body: Any, seen: list[httpx2.Request]) -> Any:
    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=body)

    profile = ProviderProfile(
        "gemini", "https://generativelanguage.googleapis.com/v1beta", SecretStr(KEY), "x-goog-api-key"
    )
    client = ProviderClient(profile, timeout=10, max_retries=0, transport=httpx2.MockTransport(answer))
    try:
        return await run(job("gemini-2.5-flash-image", ResolvedSize(1344, 768, "16:9", "1K")), client)
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_run_posts_to_generate_content_with_the_key_header():
    seen: list[httpx2.Request] = []
    reply = await _run(fixture("reply_image"), seen)

    [request] = seen
    assert (
        str(request.url)
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash-image:generateContent"
    )
    assert request.headers["x-goog-api-key"] == KEY
    assert "authorization" not in request.headers
    assert json.loads(request.content)["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9"}
    assert len(reply.artifacts) == 1
