"""AtalkAI protocol, pure parts: request bodies, replies and errors (seeds/004_f817f0b0c340ea4a.txt).

Fixtures in tests/fixtures/atalk/ are the doc's own examples: the two request bodies (image-to-image with
Flux options, multi-reference), the URL (Flux) and base64 (Gemini) replies and the two error bodies.
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
    ImagegateError,
    InsufficientBalance,
    NoImagesReturned,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from imagegate.providers.atalk import build_request, classify_error, parse_reply, run
from imagegate.providers.base import Artifact, Batch, InputImage
from imagegate.providers.http import ProviderClient, ProviderProfile

FIXTURES = Path(__file__).parent.parent / "fixtures" / "atalk"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG = base64.b64decode(PNG_B64)
PROMPT = "一只可爱的小猫在阳光下玩耍,摄影风格,柔和光线"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(model: str) -> Route:
    return next(r for r in load_catalog().routes if r.provider == "atalk" and r.model == model)


def job(model: str, size: ResolvedSize | None = None, prompt: str = PROMPT, **kw: Any) -> Batch:
    fields: dict[str, Any] = {"knobs": {}, **kw}
    return Batch(
        tool="edit" if fields.get("images") else "generate",
        route=route(model),
        prompt=prompt,
        count=1,
        size=size or ResolvedSize(),
        **fields,
    )


def url_image(url: str) -> InputImage:
    return InputImage(name="images[0]", mime="", width=0, height=0, url=url)


def png_image(name: str = "images[0]") -> InputImage:
    return InputImage(name=name, mime="image/png", width=1, height=1, data=PNG)


# ---- requests


def test_text_to_image_body_is_the_docs_basic_example():
    body = build_request(job("flux-2-pro", ResolvedSize(ratio="16:9"))).json

    assert body == {"model": "flux-2-pro", "prompt": PROMPT, "aspect_ratio": "16:9"}


def test_the_request_goes_to_images_generate():
    assert build_request(job("flux-2-pro")).path == "/images/generate"


def test_image_to_image_body_is_the_docs_flux_example_field_for_field_and_in_order():
    expected = fixture("request_flux_edit")
    knobs = {"seed": 42, "output_format": "png", "safety_tolerance": 3}
    request = build_request(
        job(
            "flux-2-pro",
            ResolvedSize(ratio="2:3"),
            prompt=expected["prompt"],
            knobs=knobs,
            images=(url_image("https://example.com/input.jpg"),),
        )
    )

    assert list(request.json.items()) == list(expected.items())


def test_multi_reference_body_is_the_docs_example_field_for_field_and_in_order():
    expected = fixture("request_multi_reference")
    refs = tuple(url_image(f"https://example.com/ref{k}.jpg") for k in (1, 2, 3))
    request = build_request(
        job("flux-2-pro", ResolvedSize(ratio="16:9"), prompt=expected["prompt"], images=refs)
    )

    assert list(request.json.items()) == list(expected.items())


def test_eight_references_fill_input_image_to_input_image_8_and_bytes_go_as_bare_base64():
    refs = tuple(png_image(f"images[{k}]") for k in range(8))
    body = build_request(job("flux-2-pro", images=refs)).json

    names = [k for k in body if k.startswith("input_image")]
    assert names == ["input_image", *(f"input_image_{k}" for k in range(2, 9))]
    assert all(body[name] == PNG_B64 for name in names)  # no data: prefix (seeds/004: "Base64 字符串")


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        ("flux-2-pro", ResolvedSize(1344, 768, "16:9"), {"width": 1344, "height": 768}),
        ("flux-2-pro", ResolvedSize(64, 64, "1:1"), {"width": 64, "height": 64}),
        ("flux-1.1-pro", ResolvedSize(1440, 1440, "1:1"), {"width": 1440, "height": 1440}),
        ("flux-2-pro", ResolvedSize(ratio="21:9"), {"aspect_ratio": "21:9"}),
        ("flux-1.1-pro", ResolvedSize(ratio="9:16"), {"aspect_ratio": "9:16"}),
        ("flux-2-pro", ResolvedSize(), {}),  # the upstream default, 1:1
        ("gemini-2.5-flash-image", ResolvedSize(ratio="4:5"), {"aspect_ratio": "4:5"}),
        # width/height are Flux-only: a pixel size on a Gemini route still goes as its ratio
        ("gemini-2.5-flash-image", ResolvedSize(1344, 768, "16:9"), {"aspect_ratio": "16:9"}),
        ("gemini-2.5-flash-image", ResolvedSize(), {}),
    ],
)
def test_pixels_go_as_width_height_on_flux_and_everything_else_as_aspect_ratio(model, size, expected):
    body = build_request(job(model, size)).json

    assert {k: v for k, v in body.items() if k not in ("model", "prompt")} == expected


def test_extra_is_merged_as_given_and_the_upstream_model_id_is_sent():
    body = build_request(job("gemini-2.5-flash-image", extra={"webhook": "x"})).json

    assert body == {"model": "gemini-2.5-flash-image", "prompt": PROMPT, "webhook": "x"}


# ---- replies


def test_the_flux_url_reply_gives_a_url_artifact_with_its_revised_prompt_and_cost_in_cny():
    reply = parse_reply(fixture("url_reply"), "atalk")

    assert reply.artifacts == (
        Artifact(
            url="https://example.com/generated-image.png",
            revised_prompt="A cute kitten playing in sunlight, photography style, soft lighting",
        ),
    )
    assert reply.usage == {
        "cost": 0.04,
        "images_generated": 1,
        "images_failed": 0,
        "currency": "CNY",
        "model": "flux-2-pro",
        "provider": "flux",
    }
    assert reply.failures == ()


def test_the_replys_model_and_provider_travel_even_without_a_usage_object():
    body = {k: v for k, v in fixture("base64_reply").items() if k != "usage"}

    reply = parse_reply(body, "atalk")

    assert reply.usage == {"model": "gemini-2.5-flash-image", "provider": "gemini"}


def test_the_gemini_base64_reply_gives_decoded_bytes_and_their_mime():
    reply = parse_reply(fixture("base64_reply"), "atalk")

    (artifact,) = reply.artifacts
    assert artifact.decoded() == PNG and artifact.mime == "image/png"
    assert reply.usage is not None and reply.usage["cost"] == 0.02


def test_failed_images_are_reported_next_to_the_ones_that_arrived():
    body = fixture("url_reply") | {"usage": {"cost": 0.04, "images_generated": 1, "images_failed": 1}}

    reply = parse_reply(body, "atalk")

    assert len(reply.artifacts) == 1
    assert reply.failures == ("the upstream reports 1 image(s) failed (usage.images_failed)",)


def test_a_reply_with_only_failed_images_is_no_images_and_says_so():
    body = {"code": 0, "data": [], "usage": {"cost": 0, "images_generated": 0, "images_failed": 1}}

    with pytest.raises(NoImagesReturned, match=r"1 image\(s\) failed"):
        parse_reply(body, "atalk")


def test_an_unknown_image_type_is_ignored_and_counted():
    body = fixture("url_reply")
    body["data"].append({"type": "svg", "image": "<svg/>", "mimeType": "image/svg+xml"})

    reply = parse_reply(body, "atalk")

    assert len(reply.artifacts) == 1
    assert reply.failures == ("1 item(s) of an unknown image type were ignored",)


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (
            {"code": 0, "data": [{"type": "base64", "image": "*not base64*"}]},
            UpstreamError,
            "does not decode",
        ),
        ({"code": 0, "data": []}, NoImagesReturned, "without any image"),
        ({"code": 0, "data": "nope"}, UpstreamError, "not an image reply"),
        (["not", "an", "object"], UpstreamError, "not an image reply"),
    ],
)
def test_unusable_replies_raise(body, error, fragment):
    with pytest.raises(error, match=fragment):
        [
            artifact.decoded() for artifact in parse_reply(body, "atalk").artifacts
        ]  # base64 decodes in the core


@pytest.mark.parametrize(
    ("name", "error"),
    [("error_invalid_key", AuthFailed), ("error_aspect_ratio", UpstreamError)],
)
def test_the_docs_error_bodies_in_a_200_reply_raise_with_the_upstreams_message(name, error):
    body = fixture(name)

    with pytest.raises(error) as raised:
        parse_reply(body, "atalk")

    assert type(raised.value) is error
    assert raised.value.upstream_message == body["msg"]
    assert raised.value.provider == "atalk"


# ---- errors

KEY_MSG = {"code": -1, "msg": "API key is invalid or expired"}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, KEY_MSG, AuthFailed),
        (200, KEY_MSG, AuthFailed),
        (403, {"code": -1, "msg": "Forbidden"}, AuthFailed),
        (200, {"code": -1, "msg": "无效的API密钥"}, AuthFailed),
        (402, {"code": -1, "msg": "Payment required"}, InsufficientBalance),
        (200, {"code": -1, "msg": "Insufficient balance, please recharge"}, InsufficientBalance),
        (200, {"code": -1, "msg": "账户余额不足"}, InsufficientBalance),
        (429, {"code": -1, "msg": "Too many requests"}, RateLimited),
        (429, {"code": -1, "msg": "Daily quota exceeded"}, RateLimited),  # a telling status beats the words
        (200, {"code": 429, "msg": "slow down"}, RateLimited),  # the doc's retry sample reads 429 from `code`
        (200, {"code": -1, "msg": "请求过于频繁"}, RateLimited),
        (400, {"code": -1, "msg": "Content rejected by the safety system"}, ContentRefused),
        (200, {"code": -1, "msg": "Request Moderated"}, ContentRefused),
        (200, {"code": -1, "msg": "提示词包含敏感内容"}, ContentRefused),
        (
            400,
            {"code": -1, "msg": "Invalid safety_tolerance parameter: 6. Must be between 0 and 5"},
            UpstreamError,
        ),
        (400, fixture("error_aspect_ratio"), UpstreamError),
        (200, {"code": -1, "message": "Max retries exceeded"}, UpstreamError),
        (500, "<html>Internal Server Error</html>", UpstreamError),
        (504, {"code": -1, "msg": "Upstream timeout"}, UpstreamTimeout),
    ],
)
def test_errors_map_by_status_code_and_message(status: int, body: Any, error: type[ImagegateError]):
    result = classify_error(status, body, "atalk")

    assert type(result) is error
    assert result.provider == "atalk"
    if isinstance(body, dict):
        assert result.upstream_message == (body.get("msg") or body.get("message"))


@pytest.mark.parametrize("code", [500, 503])
@pytest.mark.parametrize("where", ["body", "status"])
def test_the_docs_retryable_server_codes_are_retryable_in_the_body_or_as_the_status(code, where):
    # seeds/004 错误重试策略: `elif result.get("code") in [429, 500, 503]: # 可重试的错误`
    body = {"code": code if where == "body" else -1, "msg": "Service temporarily unavailable"}
    result = classify_error(200 if where == "body" else code, body, "atalk")

    assert type(result) is UpstreamError
    assert result.retryable and result.status == code


@pytest.mark.parametrize("status", [400, 502, 504])
def test_other_failures_keep_their_own_retry_rule(status):
    assert classify_error(200, {"code": -1, "msg": "Request failed"}, "atalk").retryable is False
    assert classify_error(status, {"code": -1, "msg": "Request failed"}, "atalk").retryable is (status != 400)


def test_a_refusal_with_code_500_is_still_a_refusal_and_never_retried():
    result = classify_error(200, {"code": 500, "msg": "账户余额不足"}, "atalk")

    assert type(result) is InsufficientBalance and not result.retryable


def test_a_bad_parameter_names_the_status_and_keeps_the_upstream_text():
    result = classify_error(400, fixture("error_aspect_ratio"), "atalk")

    assert "HTTP 400" in result.agent_text()
    assert "Supported ratios: 1:1, 2:3" in result.agent_text()


# ---- run, over a mock transport


async def _run(handler: Any, key: str = "sk-atalk-secret-1234", max_retries: int = 0) -> Any:
    profile = ProviderProfile(id="atalk", base_url="https://api.atalk-ai.com", key=SecretStr(key))
    client = ProviderClient(
        profile,
        timeout=5,
        max_retries=max_retries,
        transport=httpx2.MockTransport(handler),
        sleep=_no_wait,
    )
    try:
        return await run(job("flux-2-pro", ResolvedSize(ratio="1:1")), client)
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_run_posts_the_body_with_the_bearer_key_and_returns_the_reply():
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=fixture("url_reply"))

    reply = await _run(handler)

    assert str(seen[0].url) == "https://api.atalk-ai.com/images/generate"
    assert seen[0].headers["authorization"] == "Bearer sk-atalk-secret-1234"
    assert json.loads(seen[0].content) == {"model": "flux-2-pro", "prompt": PROMPT, "aspect_ratio": "1:1"}
    assert reply.artifacts[0].url == "https://example.com/generated-image.png"


async def _no_wait(_: float) -> None:
    return None


@pytest.mark.anyio
@pytest.mark.parametrize("code", [429, 500, 503])
async def test_run_retries_the_codes_the_docs_sample_retries_then_returns_the_images(code):
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        reply = {"code": code, "msg": "try again"} if len(sent) == 1 else fixture("url_reply")
        return httpx2.Response(200, json=reply)

    reply = await _run(handler, max_retries=3)

    assert len(sent) == 2 and reply.artifacts[0].url


@pytest.mark.anyio
async def test_run_does_not_retry_a_code_minus_one():
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, json=fixture("error_aspect_ratio"))

    with pytest.raises(UpstreamError):
        await _run(handler, max_retries=3)
    assert len(sent) == 1
