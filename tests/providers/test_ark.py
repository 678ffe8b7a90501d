"""The Ark adapter's pure parts: request building, reply parsing and error classification, against
the reply examples of shared/providers/ark-seedream.md §4–§5 (tests/fixtures/ark/); plus one call
through a MockTransport for what `run` adds (scrubbing texts that arrive in a 200 body)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from imagegate.catalog import ResolvedSize, Route, load_catalog
from imagegate.catalog.spec import KnobRule
from imagegate.errors import (
    AuthFailed,
    ContentRefused,
    ImagegateError,
    InsufficientBalance,
    ModelNotFound,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
)
from imagegate.providers.ark import build_request, classify_error, parse_reply, run, with_seed
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.http import ProviderClient, ProviderProfile

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ark"
JPEG = b"\xff\xd8\xff\xe0 fake jpeg bytes"
KEY = "test-sentinel-ark-key"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(model: str) -> Route:
    return next(r for r in load_catalog().routes_for(model) if r.provider == "ark")


def job(model: str = "seedream-4.0", **kw: Any) -> Batch:
    fields: dict[str, Any] = {
        "tool": "generate",
        "route": route(model),
        "prompt": "a red fox",
        "count": 1,
        "size": ResolvedSize(2048, 2048, "1:1", "2K"),
        "knobs": {},
    }
    return Batch(**{**fields, **kw})


def image(mime: str = "image/jpeg", url: str | None = None) -> InputImage:
    if url:
        return InputImage(name="ref", mime="", width=0, height=0, url=url)
    return InputImage(name="ref", mime=mime, width=64, height=64, data=JPEG)


DATA_URL = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()


# ---- build_request


@pytest.mark.parametrize(
    ("model", "size", "wire_size"),
    [
        ("seedream-4.0", ResolvedSize(2048, 2048, "1:1", "2K"), "2048x2048"),
        ("seedream-4.0", ResolvedSize(tier="1K"), "1K"),  # a tier alone: the model picks the pixels
        ("seedream-4.5", ResolvedSize(tier="4K"), "4K"),
        ("seedream-4.5", ResolvedSize(2848, 1600, "16:9", "2K"), "2848x1600"),
        ("seedream-3.0", ResolvedSize(1512, 648, "21:9", "1K"), "1512x648"),
    ],
)
def test_size_goes_as_a_tier_alone_or_as_pixels_never_both(model, size, wire_size):
    request = build_request(job(model, size=size))

    assert request.path == "/images/generations"
    assert request.json == {
        "model": route(model).upstream,
        "prompt": "a red fox",
        "size": wire_size,
        "response_format": "b64_json",
    }
    assert request.warnings == ()


@pytest.mark.parametrize("size", [ResolvedSize(), ResolvedSize(auto=True)])
def test_seededit_sends_its_one_image_as_a_string_and_size_adaptive(size):
    request = build_request(job("seededit-3.0", tool="edit", size=size, images=(image(),)))

    assert request.json["image"] == DATA_URL
    assert request.json["size"] == "adaptive"


def test_several_references_go_as_a_list_urls_as_given_bytes_as_lowercase_data_urls():
    refs = (image(), image(url="https://example.com/cat.png"), image("image/PNG"))
    body = build_request(job(tool="edit", images=refs)).json

    png_url = "data:image/png;base64," + base64.b64encode(JPEG).decode()
    assert body["image"] == [DATA_URL, "https://example.com/cat.png", png_url]


def test_a_text_to_image_call_sends_no_image_field():
    assert "image" not in build_request(job("seedream-3.0")).json


def test_knobs_keep_their_names_and_extra_is_merged_as_is():
    knobs = {"seed": 42, "guidance_scale": 2.5, "watermark": False}
    extra = {"optimize_prompt_options": {"mode": "fast"}}
    body = build_request(job("seedream-3.0", knobs=knobs, extra=extra, size=ResolvedSize(1024, 1024))).json

    assert body == {
        "model": "doubao-seedream-3-0-t2i-250415",
        "prompt": "a red fox",
        "size": "1024x1024",
        "seed": 42,
        "guidance_scale": 2.5,
        "watermark": False,
        "response_format": "b64_json",
        "optimize_prompt_options": {"mode": "fast"},
    }


def test_watermark_is_left_to_ark_unless_asked_or_defaulted_by_the_catalog():
    assert "watermark" not in build_request(job()).json  # Ark's own default (on) applies: gotcha 7

    knobs = {**route("seedream-4.0").knobs, "watermark": KnobRule(default=False)}
    defaulted = replace(route("seedream-4.0"), knobs=knobs)
    assert build_request(job(route=defaulted)).json["watermark"] is False
    assert build_request(job(route=defaulted, knobs={"watermark": True})).json["watermark"] is True


def test_several_images_in_one_call_use_group_mode_only_where_the_route_has_it():
    group = build_request(job(count=3, images=(image(),), tool="edit")).json
    single = build_request(job()).json
    no_group = build_request(job("seedream-3.0", count=3)).json

    assert group["sequential_image_generation"] == "auto"
    assert group["sequential_image_generation_options"] == {"max_images": 3}
    assert "sequential_image_generation" not in single  # disabled is Ark's default; 5.0 pro rejects the field
    assert "sequential_image_generation" not in no_group


def test_a_ratio_without_pixels_is_not_dropped_silently():
    request = build_request(job(size=ResolvedSize(ratio="5:4", tier="2K")))

    assert request.json["size"] == "2K"
    assert [w.feature for w in request.warnings] == ["size"]


# ---- parse_reply


def test_url_reply_from_the_docs_gives_each_url_and_passes_usage_through():
    reply = parse_reply(fixture("reply_urls"), "ark")

    assert [a.url for a in reply.artifacts] == [item["url"] for item in fixture("reply_urls")["data"]]
    assert reply.usage == {"generated_images": 2, "output_tokens": 32768, "total_tokens": 32768}
    assert reply.warnings == () and reply.failures == ()


def test_b64_json_items_are_decoded_and_the_asked_seed_is_recorded():
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(JPEG).decode(), "size": "1024x1024"}]}
    reply = with_seed(parse_reply(body, "ark"), 42)

    assert reply.artifacts[0].decoded() == JPEG
    assert reply.artifacts[0].seed == 42


def test_partial_failure_keeps_the_images_and_reports_each_failed_one():
    reply = parse_reply(fixture("reply_partial"), "ark")

    assert len(reply.artifacts) == 1
    assert reply.failures == (
        "OutputImageSensitiveContentDetected: The request failed because the output image may contain "
        "sensitive information.",
    )
    assert reply.warnings == ()  # the core turns each failure into a warning
    assert reply.usage == fixture("reply_partial")["usage"]


@pytest.mark.parametrize(
    ("body", "kind", "fragment"),
    [
        (fixture("reply_all_refused"), ContentRefused, "the generated image"),
        (
            fixture("error_output_sensitive"),
            ContentRefused,
            "the generated image",
        ),  # gotcha 5: error in a 200
        ({"error": {"code": "InternalServiceError", "message": "boom"}}, UpstreamError, "failed internally"),
        ({"error": {"code": "Weird", "message": "odd"}, "data": []}, UpstreamError, "Weird"),
        ({"created": 1, "data": []}, NoImagesReturned, "without any image"),
        ({"created": 1}, NoImagesReturned, "without any image"),
        ({"data": [{"b64_json": "*not base64*"}]}, UpstreamError, "does not decode"),
        ([1, 2], UpstreamError, "not an Ark images reply"),
    ],
)
def test_a_reply_without_images_raises_the_right_error(body, kind, fragment):
    with pytest.raises(ImagegateError) as raised:
        [artifact.decoded() for artifact in parse_reply(body, "ark").artifacts]  # base64 decodes in the core

    assert type(raised.value) is kind
    assert fragment in raised.value.agent_text()


# ---- classify_error


def ark_error(code: str, message: str = "upstream words. Request id: 0217") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "param": "", "type": ""}}


@pytest.mark.parametrize(
    ("status", "body", "kind", "fragment"),
    [
        (400, ark_error("InputTextSensitiveContentDetected"), ContentRefused, "refused the prompt"),
        (400, ark_error("InputImageSensitiveContentDetected"), ContentRefused, "refused a reference image"),
        (
            400,
            ark_error("OutputImageSensitiveContentDetected"),
            ContentRefused,
            "refused the generated image",
        ),
        (400, ark_error("SensitiveContentDetected"), ContentRefused, "refused the request"),
        (
            400,
            fixture("error_invalid_size"),
            UpstreamError,
            "refused the request (InvalidParameter, HTTP 400)",
        ),
        (400, ark_error("MissingParameter"), UpstreamError, "MissingParameter"),
        (401, ark_error("AuthenticationError"), AuthFailed, "rejected the API key"),
        (403, ark_error("AccountOverdueError"), InsufficientBalance, "overdue"),
        (403, ark_error("AccessDenied"), AuthFailed, "activate the model"),
        (403, ark_error("InvalidEndpointOrModel.ModelIDAccessDisabled"), AuthFailed, "activate the model"),
        (404, ark_error("InvalidEndpointOrModel.NotFound"), ModelNotFound, "InvalidEndpointOrModel.NotFound"),
        (429, ark_error("RateLimitExceeded.EndpointRPMExceeded"), RateLimited, "rate limiting"),
        (429, ark_error("QuotaExceeded"), RateLimited, "QuotaExceeded"),
        (429, ark_error("ServerOverloaded"), RateLimited, "ServerOverloaded"),
        (503, ark_error("ServerOverloaded"), RateLimited, "overloaded"),
        (500, ark_error("InternalServiceError"), UpstreamError, "failed internally"),
        (401, {"code": "AuthenticationError", "message": "bare"}, AuthFailed, "bare"),  # SDK-rendered shape
        (502, "<html>Bad Gateway</html>", UpstreamError, "HTTP 502"),
        (401, {}, AuthFailed, "HTTP 401"),
    ],
)
def test_each_documented_error_maps_to_its_kind_with_the_upstream_message(status, body, kind, fragment):
    error = classify_error(status, body, "ark")

    assert type(error) is kind
    assert fragment in error.agent_text()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        assert error.upstream_message == body["error"]["message"]


def test_only_internal_errors_are_marked_retryable():
    assert classify_error(500, ark_error("InternalServiceError"), "ark").retryable
    assert not classify_error(400, ark_error("InvalidParameter"), "ark").retryable


# ---- run


async def call(reply: Any, **kw: Any) -> tuple[Any, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(
            {
                "url": str(request.url),
                "auth": request.headers.get("authorization"),
                **json.loads(request.content),
            }
        )
        return httpx2.Response(200, json=reply)

    profile = ProviderProfile(id="ark", base_url="https://ark.example/api/v3", key=SecretStr(KEY))
    client = ProviderClient(profile, timeout=10, max_retries=0, transport=httpx2.MockTransport(answer))
    try:
        return await run(job(**kw), client), sent
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_run_posts_to_the_generations_path_and_returns_the_images():
    reply, sent = await call(fixture("reply_urls"))

    assert len(reply.artifacts) == 2
    assert sent[0]["url"] == "https://ark.example/api/v3/images/generations"
    assert sent[0]["auth"] == f"Bearer {KEY}"
    assert sent[0]["model"] == "doubao-seedream-4-0-250828"
